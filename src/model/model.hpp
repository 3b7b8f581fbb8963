// The model of Ecker et al. 2019 / Klindt et al. 2017 / Lurz et al. 2021 (reference-models.md §1.3, §2, §5):
//   core:    L layers of  conv (no bias, stride 1) -> batch norm (TF decay convention) -> nonlinearity
//   readout: one per dataset, a Readout of config.readout.kind (model/readout.hpp: factorized, gaussian)
//   output:  yhat = the readout's output nonlinearity of h;  loss = Poisson + regularisers
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
//   readout/... : the readout's own slots (model/readout_factorized.cpp, readout_gaussian.cpp)
//
// Initialisation (initialize()): conv weights truncated normal (sd 0.01, cut at 2 sd; Hermite coefficients: sd
// core.coeff_init_sd, 0.1 in the reference), SplitMix64 stream 3 of the seed; gamma 1, beta 0, running mean 0,
// running variance 1 (TF's initialisers); then each readout draws its own from the same stream, in order.
//
// Lurz et al. 2021 (reference-models.md §5.1), selected by core.kind = stacked2d:
//   stacked2d: layer 0 is a dense conv; each hidden layer l >= 1 is depth-separable,
//              core/layer{l}/pointwise_in [C, C_in, 1, 1] -> core/layer{l}/depthwise [C, 1, k, k] ->
//              core/layer{l}/weight [C, C, 1, 1], then BN + ELU. Conv weights xavier-normal
//              (sd sqrt(2 / (fan_in + fan_out)), PyTorch's fans), BN as above. laplace_weight x LaplaceL2 on
//              layer 0's weight.
// A readout that draws noise in training forwards (gaussian) gets the seed (train.seed, count of training
// forwards so far) from the model.
// Several readouts (one per dataset, "data_key") share one core: their slots are readout/<key>/..., forward
// and backward take the readout index. A frozen core (set_core_frozen) runs its batch norm in evaluation
// mode also in training forwards, gets no gradient and no regulariser (transfer with --freeze-core).
#pragma once

#include "core/types.hpp"
#include "layers/batchnorm.hpp"
#include "layers/conv2d.hpp"
#include "layers/hermite.hpp"
#include "layers/poisson_loss.hpp"
#include "model/model_config.hpp"
#include "model/readout.hpp"
#include "core/param_arena.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace v1sysid {

class SplitMix64;

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
  View1<T> prediction;             // (capacity * N), yhat = output nonlinearity of h
  std::vector<View1<T>> readout_buffers;  // the readouts' own buffers (Readout::buffer_sizes, largest readout)
  View1<T> conv_scratch;           // max conv2d_workspace_size over layers
  View1<T> grad_a, grad_b;         // ping-pong activation gradients (capacity * max_l C_l * H_l * W_l)
  // depth-separable layers: outputs of the first 1x1 and of the depthwise conv, and their gradients
  std::vector<View1<T>> sep_a, sep_b;
  View1<T> grad_c, grad_d;
  int max_neurons = 0;
};

// One readout of a model: its data_key and neuron count.
struct ReadoutSpec {
  std::string key;  // "" for the single readout of a one-dataset model (slot names readout/...)
  int n_neurons = 0;
};

template <class T>
class Model {
 public:
  struct LayerSlots {
    int weight = -1, gamma = -1, beta = -1, running_mean = -1, running_var = -1;  // gamma -1: no scale
    int pointwise_in = -1, depthwise = -1;  // depth-separable layers (weight is then the last 1x1)
    int coeffs = -1;  // roteq: Hermite coefficients (then weight is -1)
  };
  struct LayerGeometry {
    int c_in = 0, c_out = 0, k = 0, h_in = 0, w_in = 0, h_out = 0, w_out = 0;
    bool separable = false;  // 1x1 -> depthwise k x k -> 1x1 (stacked2d hidden layers)
    bool valid = false;      // VALID padding
  };

  // Builds the slot table for images of height x width and n_neurons neurons and allocates the arena
  // (zeroed; call initialize()). Throws ConfigError when a VALID core shrinks the image to nothing.
  Model(ModelConfig config, int height, int width, int n_neurons);
  // Several readouts on one core (keys must be distinct and non-empty when there are several).
  Model(ModelConfig config, int height, int width, std::vector<ReadoutSpec> readouts);

  const ModelConfig& config() const { return m_config; }
  int height() const { return m_height; }
  int width() const { return m_width; }
  int n_neurons() const { return m_neurons; }  // of readout 0
  int num_readouts() const { return static_cast<int>(m_readout_specs.size()); }
  const ReadoutSpec& readout_spec(int r) const { return m_readout_specs[static_cast<size_t>(r)]; }
  int readout_index(const std::string& key) const;  // ShapeError when absent
  // The arena slot `name` (e.g. "bias", "mu") of readout r, -1 when that readout has none.
  int readout_slot(int r, const std::string& name) const;
  int num_layers() const { return static_cast<int>(m_layers.size()); }
  const LayerGeometry& geometry(int layer) const { return m_geometry[static_cast<size_t>(layer)]; }
  const LayerSlots& layer_slots(int layer) const { return m_layers[static_cast<size_t>(layer)]; }
  layers::OutputNonlinearity output_nonlinearity() const;
  // Core frozen: BN in evaluation mode in every forward, no core gradients or regularisers.
  void set_core_frozen(bool frozen) { m_core_frozen = frozen; }
  bool core_frozen() const { return m_core_frozen; }
  // Algorithm of the dense convolutions (automatic: Winograd for the 5x5 SAME layers with enough channels).
  // Set it before make_workspace: workspaces are sized for the algorithm in force when they are made.
  void set_conv_algorithm(layers::ConvAlgorithm a) { m_conv_algorithm = a; }
  layers::ConvAlgorithm conv_algorithm() const { return m_conv_algorithm; }
  // Host copy of the receptive-field positions [N, 2] of readout r (gaussian: mu, from the grid predictor when
  // there is one; empty for a readout without positions).
  std::vector<float> readout_positions(int r) const;
  // The export/ group of readout r (train/checkpoint.cpp writes it).
  ExportGroup readout_export(int r) const;
  ParamArena<T>& arena() { return m_arena; }
  const ParamArena<T>& arena() const { return m_arena; }

  // See the header comment. mean_response: [N] mean preprocessed training response per neuron.
  void initialize(uint64_t seed, const std::vector<double>& mean_response);
  // One entry per readout. Throws ConfigError for the cortex predictor without coordinates.
  void initialize(uint64_t seed, const std::vector<ReadoutInit>& readouts);
  // Initialises only readout r (new readouts on a transferred core); Adam state of its slots is zeroed.
  void initialize_readout(uint64_t seed, int r, const ReadoutInit& init);

  ModelWorkspace<T> make_workspace(int capacity) const;

  // Runs the core and readout on the first `batch` images of ws.images and writes ws.prediction.
  // training: batch-norm batch statistics (and running statistics updated); else running statistics.
  void forward(ModelWorkspace<T>& ws, int batch, bool training, int readout = 0);
  // Poisson loss of ws.prediction against ws.responses (first `batch` rows); call after forward.
  double poisson_loss(ModelWorkspace<T>& ws, int batch, int readout = 0) const;
  // The eps inside that loss's log: 1e-5 (Ecker), 1e-12 under the lurz schedule (neuralpredictors).
  double poisson_eps() const;
  // Sum of the core and readout regularisers at the current parameters.
  double regularization(int readout = 0) const;
  // Gradients of loss_weight * poisson_loss + regularization accumulated into the arena's grads (zero them
  // first); requires a training-mode forward of the same batch and readout. Returns the regularisation value.
  double backward(ModelWorkspace<T>& ws, int batch, int readout = 0, double loss_weight = 1.0);
  // Noise seed of the next training forward (the count of training forwards so far); settable for tests.
  uint64_t sample_counter() const { return m_sample_counter; }
  void set_sample_counter(uint64_t c) { m_sample_counter = c; }
  // Gradient of sum_{b,n} d_prediction[b,n] * prediction[b,n] with respect to the model input (preprocessed
  // images) for readout `readout`, through evaluation-mode batch norm and (gaussian readout) the positions at mu:
  // the linear receptive fields of `v1sysid rf` (one-hot rows of d_prediction give one neuron per image).
  // Requires an evaluation-mode forward of the same batch and readout and consumes its caches (run forward
  // again before the next call). Works for every core and readout kind, also with a frozen core. The arena's
  // parameter gradients serve as scratch and are zero on return.
  void input_gradient(ModelWorkspace<T>& ws, int batch,
                      View1<const T> d_prediction,  // (batch * N_readout), d loss / d prediction
                      View1<T> d_images,            // (batch * H * W), assigned
                      int readout = 0);

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
  void build(const std::vector<ReadoutSpec>& readouts);
  void init_readout(SplitMix64& rng, int r, const ReadoutInit& init);
  void core_forward(ModelWorkspace<T>& ws, int batch, bool training);
  // Core backward from the last layer's output gradient in ws.grad_a. eval_batchnorm: through evaluation-mode
  // batch norm (running statistics; input_gradient), else through the batch statistics of a training forward.
  // d_images (batch, 1, H, W), assigned where present: the gradient with respect to the model input.
  void core_backward(ModelWorkspace<T>& ws, int batch, bool eval_batchnorm = false,
                     layers::UView4<T, ExecSpace> d_images = {});
  // Readout `r` backward from d_h in ws.readout_h: parameter grads accumulated, the gradient with respect to
  // the core output assigned to ws.grad_a unless the core is frozen and !force_d_core. training: the gaussian
  // readout's positions were sampled with the noise in ws.noise, else they were mu.
  void readout_backward(ModelWorkspace<T>& ws, int batch, int r, bool training, bool force_d_core);
  double core_regularization(bool with_grad) const;
  double readout_regularization(int r, bool with_grad) const;

  ModelConfig m_config;
  int m_height, m_width, m_neurons;
  std::vector<LayerGeometry> m_geometry;
  std::vector<LayerSlots> m_layers;
  std::vector<ReadoutSpec> m_readout_specs;
  std::vector<std::unique_ptr<Readout<T>>> m_readouts;  // one per dataset
  ParamArena<T> m_arena;
  bool m_core_frozen = false;
  layers::ConvAlgorithm m_conv_algorithm = layers::ConvAlgorithm::automatic;
  uint64_t m_sample_counter = 0;
  // roteq only, per layer: synthesis shape, pooled rotated basis (R*k*k, Q), synthesised filters and their
  // gradient (C_out*C_in*k*k each); and the synthesis GEMM scratch (max hermite_workspace_size).
  std::vector<layers::HermiteShape> m_hermite;
  std::vector<View2<T>> m_pooled_basis;
  std::vector<View1<T>> m_filters;
  std::vector<View1<T>> m_d_filters;
  View1<T> m_synth_scratch;
};

}  // namespace v1sysid
