// A model (reference-models.md §1.3, §2, §5): Core + Readout(s) + Encoder, as neuralpredictors' FiringRateEncoder:
//   core:    images [B, 1, H, W] -> core_out [B, C, H', W']   (model/core.hpp: cnn, roteq, stacked2d)
//   readout: core_out -> h [B, N], one per dataset ("data_key") (model/readout.hpp: factorized, gaussian)
//   encoder: yhat = the readout kind's output nonlinearity of h; loss = Poisson (model/encoder.hpp)
//   objective = loss + the core's and the readout's regularisers
// Each part owns its parameter slots, initialisation, forward, backward, regulariser and export/ entries; the model
// only calls them in order and never asks which kind a part is. Every parameter, the batch-norm running statistics
// (as non-trainable buffers) and the Adam moments live in one ParamArena: the core's slots first (core/layer{l}/...),
// then each readout's (readout/[<key>/]...), in the order the readouts were given. Activations, caches and
// workspaces for one batch capacity are allocated once in a ModelWorkspace; forward/backward run on any batch
// b <= capacity without allocating (views of the first b images of each buffer).
//
// Initialisation (initialize()): one SplitMix64 stream (stream 3 of the seed) draws the core's slots, then each
// readout's, in order; Adam starts fresh. A readout that draws noise in training forwards (gaussian) gets the
// seed (train.seed, count of training forwards so far) from the model. A frozen core (set_core_frozen) runs its
// batch norm in evaluation mode also in training forwards, gets no gradient and no regulariser (transfer with
// --freeze-core).
#pragma once

#include "core/param_arena.hpp"
#include "core/types.hpp"
#include "layers/conv2d.hpp"
#include "layers/poisson_loss.hpp"
#include "model/core.hpp"
#include "model/encoder.hpp"
#include "model/model_config.hpp"
#include "model/readout.hpp"

#include <cstdint>
#include <memory>
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
  CoreWorkspace<T> core;           // the core's activations (core.act_out[l]: layer l's output), caches, scratch
  View1<T> readout_h;              // (capacity * N), pre-activation; overwritten by d_h in backward
  View1<T> prediction;             // (capacity * N), yhat = output nonlinearity of h
  std::vector<View1<T>> readout_buffers;  // the readouts' own buffers (Readout::buffer_sizes, largest readout)
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
  // Builds the parts for images of height x width and n_neurons neurons and allocates the arena (zeroed; call
  // initialize()). Throws ShapeError when a VALID core shrinks the image to nothing.
  Model(ModelConfig config, int height, int width, int n_neurons);
  // Several readouts on one core (keys must be distinct and non-empty when there are several).
  Model(ModelConfig config, int height, int width, std::vector<ReadoutSpec> readouts);

  const ModelConfig& config() const { return m_config; }
  int height() const { return m_height; }
  int width() const { return m_width; }
  int n_neurons() const { return m_readout_specs.front().n_neurons; }  // of readout 0
  int num_readouts() const { return static_cast<int>(m_readout_specs.size()); }
  const ReadoutSpec& readout_spec(int r) const { return m_readout_specs[static_cast<size_t>(r)]; }
  int readout_index(const std::string& key) const;  // ShapeError when absent
  // The arena slot `name` (e.g. "bias", "mu") of readout r, -1 when that readout has none.
  int readout_slot(int r, const std::string& name) const;
  const Core<T>& core() const { return *m_core; }
  int num_layers() const { return m_core->num_layers(); }
  const CoreLayerGeometry& geometry(int layer) const { return m_core->geometry(layer); }
  // The arena slot core/layer{layer}/<name> (e.g. "weight", "coeffs", "bn_gamma"), -1 when the layer has none.
  int core_slot(int layer, const std::string& name) const { return m_core->slot(m_arena, layer, name); }
  layers::OutputNonlinearity output_nonlinearity() const { return m_encoder.nonlinearity; }
  // The eps inside the Poisson loss's log: 1e-5 (Ecker), 1e-12 under the lurz schedule (neuralpredictors).
  double poisson_eps() const { return m_encoder.loss.eps; }
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
  // The export/ entries of the core (one per convolution) and the export/ group of readout r
  // (train/checkpoint.cpp writes them).
  std::vector<ExportGroup> core_export() const { return m_core->export_layers(m_arena); }
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

  // Runs the core, readout and encoder on the first `batch` images of ws.images and writes ws.prediction.
  // training: batch-norm batch statistics (and running statistics updated); else running statistics.
  void forward(ModelWorkspace<T>& ws, int batch, bool training, int readout = 0);
  // Poisson loss of ws.prediction against ws.responses (first `batch` rows); call after forward.
  double poisson_loss(ModelWorkspace<T>& ws, int batch, int readout = 0) const;
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
  View4<T> conv_filters(int layer) const { return m_core->filters(m_arena, layer); }

 private:
  void check_readout(int r, int batch, const ModelWorkspace<T>& ws, const char* where) const;
  void init_readout(SplitMix64& rng, int r, const ReadoutInit& init);
  // Readout `r` backward from d_h in ws.readout_h: parameter grads accumulated, the gradient with respect to
  // the core output assigned to ws.core.grad_a unless the core is frozen and !force_d_core. training: as the
  // forward it follows.
  void readout_backward(ModelWorkspace<T>& ws, int batch, int r, bool training, bool force_d_core);

  ModelConfig m_config;
  int m_height, m_width;
  std::vector<ReadoutSpec> m_readout_specs;
  std::unique_ptr<Core<T>> m_core;
  std::vector<std::unique_ptr<Readout<T>>> m_readouts;  // one per dataset
  Encoder m_encoder;
  ParamArena<T> m_arena;
  bool m_core_frozen = false;
  layers::ConvAlgorithm m_conv_algorithm = layers::ConvAlgorithm::automatic;
  uint64_t m_sample_counter = 0;
};

}  // namespace v1sysid
