// The CNN model of Ecker et al. 2019 / Klindt et al. 2017 (reference-models.md §1.3, §2):
//   core:    L layers of  conv (no bias, stride 1) -> batch norm (TF decay convention) -> nonlinearity
//   readout: h[b,n] = sum_c F[n,c] sum_{y,x} |M~[n,y,x]| X[b,c,y,x] + bias[n]    (F = |F~| if positive)
//   output:  yhat = softplus(h);  loss = mean_b sum_n (yhat - y log(yhat + 1e-5)) + regularisers
// Every parameter, the batch-norm running statistics (as non-trainable buffers) and the Adam moments live
// in one ParamArena. Activations, caches and workspaces for one batch capacity are allocated once in a
// ModelWorkspace; forward/backward run on any batch b <= capacity without allocating (views of the first b
// images of each buffer).
//
// Rotation-equivariant core (core.kind roteq, layers/hermite.hpp): layer i holds Hermite coefficients
// instead of a weight; its filters [R*F, C_in, k, k] are synthesised from them once per forward (i.e. once per
// training step, not per image) into model-owned buffers and then run through the same conv2d; the
// regularisers act on these synthesised filters of all rotations, and the filter gradient (conv + regularisers)
// flows back into the coefficients. Batch norm has F groups (statistics, beta, gamma per feature, shared by
// its R rotations) when core.batchnorm_shared_rotations, else R*F (per channel).
//
// Slot names (also the dataset names of params/ in the checkpoint):
//   core/layer{i}/weight [C_out, C_in, k, k] (cnn)   core/layer{i}/coeffs [Q, C_in, F] (roteq, Q = k(k+1)/2)
//   core/layer{i}/bn_gamma [G] (only where batchnorm_scale; G = C_out, or F for rotation-shared batch norm)
//   core/layer{i}/bn_beta [G]                  core/layer{i}/bn_running_mean, bn_running_var [G] (buffers)
//   readout/mask [N, H', W'] (raw M~)          readout/features [N, C_L] (raw F~)      readout/bias [N]
//
// Initialisation (initialize()): conv weights (Hermite coefficients: sd core.coeff_init_sd, 0.1 in the
// reference), mask and features truncated normal (sd 0.01, cut at 2 sd,
// SplitMix64 stream 3 of the seed); gamma 1, beta 0, running mean 0, running variance 1 (TF's initialisers);
// readout bias b_n = 0.5 * softplus^-1(max(mean_n, 1e-3)) where mean_n is the mean preprocessed training
// response of neuron n. The clamp keeps the bias finite for silent neurons: softplus^-1(1e-3) = -6.9, so the
// initial prediction of a silent neuron is softplus(-3.45) = 0.031 instead of -infinity in the log.
#pragma once

#include "core/types.hpp"
#include "layers/batchnorm.hpp"
#include "layers/conv2d.hpp"
#include "layers/factorized_readout.hpp"
#include "layers/hermite.hpp"
#include "layers/poisson_loss.hpp"
#include "model/model_config.hpp"
#include "model/param_arena.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace v1sysid {

// Activations, caches and scratch of one Model for up to `capacity` images. Allocated once by
// Model::make_workspace; the training step and evaluation only write into it.
template <class T>
struct ModelWorkspace {
  int capacity = 0;
  View1<T> images;                 // (capacity * 1 * H * W), the model input, filled by the caller
  View1<T> responses;              // (capacity * N), targets, filled by the caller for loss/backward
  std::vector<View1<T>> conv_out;  // per layer (capacity * C_l * H_l * W_l): conv output = BN input
  std::vector<View1<T>> act_out;   // per layer: BN + nonlinearity output = next layer's input
  std::vector<View1<T>> bn_mean;   // per layer (batch-norm groups: C_l, or F_l when shared by rotations)
  std::vector<View1<T>> bn_rstd;   // per layer (C_l)
  View1<T> readout_h;              // (capacity * N), pre-activation; overwritten by d_h in backward
  View1<T> prediction;             // (capacity * N), yhat = softplus(h)
  View1<T> readout_cache;          // factorized_readout_cache_size
  View1<T> readout_scratch;        // factorized_readout_workspace_size
  View1<T> conv_scratch;           // max conv2d_workspace_size over layers
  View1<T> grad_a, grad_b;         // ping-pong activation gradients (capacity * max_l C_l * H_l * W_l)
};

template <class T>
class Model {
 public:
  struct LayerSlots {
    int weight = -1, gamma = -1, beta = -1, running_mean = -1, running_var = -1;  // gamma -1: no scale
    int coeffs = -1;  // roteq: Hermite coefficients (then weight is -1)
  };
  struct ReadoutSlots {
    int mask = -1, features = -1, bias = -1;
  };
  struct LayerGeometry {
    int c_in = 0, c_out = 0, k = 0, h_in = 0, w_in = 0, h_out = 0, w_out = 0;
  };

  // Builds the slot table for images of height x width and n_neurons neurons and allocates the arena
  // (zeroed; call initialize()). Throws ConfigError when a VALID core shrinks the image to nothing.
  Model(ModelConfig config, int height, int width, int n_neurons);

  const ModelConfig& config() const { return m_config; }
  int height() const { return m_height; }
  int width() const { return m_width; }
  int n_neurons() const { return m_neurons; }
  int num_layers() const { return static_cast<int>(m_layers.size()); }
  const LayerGeometry& geometry(int layer) const { return m_geometry[static_cast<size_t>(layer)]; }
  const LayerSlots& layer_slots(int layer) const { return m_layers[static_cast<size_t>(layer)]; }
  const ReadoutSlots& readout_slots() const { return m_readout; }
  ParamArena<T>& arena() { return m_arena; }
  const ParamArena<T>& arena() const { return m_arena; }

  // See the header comment. mean_response: [N] mean preprocessed training response per neuron.
  void initialize(uint64_t seed, const std::vector<double>& mean_response);

  ModelWorkspace<T> make_workspace(int capacity) const;

  // Runs the core and readout on the first `batch` images of ws.images and writes ws.prediction.
  // training: batch-norm batch statistics (and running statistics updated); else running statistics.
  void forward(ModelWorkspace<T>& ws, int batch, bool training);
  // Poisson loss of ws.prediction against ws.responses (first `batch` rows); call after forward.
  double poisson_loss(ModelWorkspace<T>& ws, int batch) const;
  // Sum of the core and readout regularisers at the current parameters.
  double regularization() const;
  // Gradients of poisson_loss + regularization accumulated into the arena's grads (zero them first);
  // requires a training-mode forward of the same batch. Returns the regularisation value.
  double backward(ModelWorkspace<T>& ws, int batch);

  // The convolution filters (C_out, C_in, k, k) of a core layer at the current parameters, in PyTorch order:
  // the weight slot of a cnn core, the freshly synthesised expanded filters of a roteq core (valid until the
  // next call that synthesises: forward, regularization, conv_filters).
  View4<T> conv_filters(int layer) const;
  // roteq: the synthesis shape of a layer (ShapeError for a cnn core).
  const layers::HermiteShape& hermite_shape(int layer) const;

 private:
  bool roteq() const { return m_config.core.rotation_equivariant(); }
  void synthesize_filters() const;  // roteq: every layer's filters from its coefficients; cnn: nothing
  View4<T> filter_view(int layer) const;    // the filters as they are now (no synthesis)
  View4<T> d_filter_view(int layer) const;  // where conv backward and the regularisers put d filters
  layers::Conv2dShape conv_shape(int layer, int batch) const;
  layers::BatchNormShape bn_shape(int layer, int batch) const;
  layers::BatchNormOptions bn_options(int layer) const;
  layers::FactorizedReadoutShape readout_shape(int batch) const;

  ModelConfig m_config;
  int m_height, m_width, m_neurons;
  std::vector<LayerGeometry> m_geometry;
  std::vector<LayerSlots> m_layers;
  ReadoutSlots m_readout;
  ParamArena<T> m_arena;
  // roteq only, per layer: synthesis shape, pooled rotated basis (R*k*k, Q), synthesised filters and their
  // gradient (C_out*C_in*k*k each); and the synthesis GEMM scratch (max hermite_workspace_size).
  std::vector<layers::HermiteShape> m_hermite;
  std::vector<View2<T>> m_pooled_basis;
  std::vector<View1<T>> m_filters;
  std::vector<View1<T>> m_d_filters;
  View1<T> m_synth_scratch;
};

// The inverse of softplus, log(e^y - 1), for y > 0 (computed as y + log(-expm1(-y)) without overflow).
double inverse_softplus(double y);

}  // namespace v1sysid
