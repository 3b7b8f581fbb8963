// The core of a model (reference-models.md §1.3, §2, §5.1): L layers of
//   conv (no bias, stride 1) -> batch norm (TF decay convention) -> nonlinearity
// images [B, 1, H, W] -> core_out [B, C_L, H_L, W_L], read by every readout of the model.
// The layer loop, batch norm and the filter regularisers are shared (core.cpp); what a kind owns is its
// convolution: the slots it adds, their initialisation, its forward and backward, the filters the regularisers act
// on, and its export/ entries. The kinds are registered in core.cpp (make_core):
//   cnn        core_cnn.cpp        a dense conv per layer (Ecker et al. 2019's CNN; SAME or VALID padding)
//   roteq      core_roteq.cpp      filters synthesised from Hermite coefficients at R rotations (Ecker et al. 2019)
//   stacked2d  core_stacked2d.cpp  a dense first layer, then depth-separable layers (Lurz et al. 2021)
// A new kind is one file with its class and factory, one CoreKind value (model_config.hpp) with its spelling,
// and one line in make_core.
//
// Slot names (also the dataset names of params/ in the checkpoint), per layer l, in this order: the kind's
// convolution slots (core/layer{l}/weight, coeffs, or pointwise_in, depthwise, weight), then
//   core/layer{l}/bn_gamma [G] (only where batchnorm_scale)   core/layer{l}/bn_beta [G]
//   core/layer{l}/bn_running_mean, bn_running_var [G] (buffers), G = C_out or the kind's batch-norm groups.
// Initialisation draws each layer's convolution slots in layer order from one stream (then gamma 1, beta 0,
// running mean 0, running variance 1, TF's initialisers; no draws).
#pragma once

#include "core/param_arena.hpp"
#include "core/random.hpp"
#include "core/types.hpp"
#include "layers/batchnorm.hpp"
#include "layers/conv2d.hpp"
#include "model/model_config.hpp"
#include "model/readout.hpp"

#include <memory>
#include <string>
#include <vector>

namespace v1sysid {

// One core layer's shapes: input C_in x H_in x W_in, output C_out x H_out x W_out, filters k x k.
struct CoreLayerGeometry {
  int c_in = 0, c_out = 0, k = 0, h_in = 0, w_in = 0, h_out = 0, w_out = 0;
  bool separable = false;  // 1x1 -> depthwise k x k -> 1x1 (set by the stacked2d kind for its hidden layers)
  bool valid = false;      // VALID padding
};

// The batch-norm slots of one layer (gamma -1: no scale).
struct BatchNormSlots {
  int gamma = -1, beta = -1, running_mean = -1, running_var = -1;
};

// Activations, caches and scratch of the core for up to `capacity` images (Core::make_workspace).
template <class T>
struct CoreWorkspace {
  std::vector<View1<T>> conv_out;  // per layer (capacity * C_l * H_l * W_l): conv output = BN input
  std::vector<View1<T>> act_out;   // per layer: BN + nonlinearity output = next layer's input
  std::vector<View1<T>> bn_mean;   // per layer (batch-norm groups)
  std::vector<View1<T>> bn_rstd;
  View1<T> conv_scratch;           // the largest convolution workspace over the layers
  View1<T> grad_a, grad_b;         // ping-pong activation gradients (capacity * max_l C_l * H_l * W_l)
  std::vector<View1<T>> kind_buffers;  // the kind's own buffers (Core::kind_buffer_sizes)
};

template <class T>
class Core {
 public:
  using Workspace = CoreWorkspace<T>;
  virtual ~Core() = default;
  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;

  const CoreConfig& config() const { return m_config; }
  int num_layers() const { return static_cast<int>(m_geometry.size()); }
  const CoreLayerGeometry& geometry(int l) const { return m_geometry[static_cast<size_t>(l)]; }
  const CoreLayerGeometry& output_geometry() const { return m_geometry.back(); }
  const BatchNormSlots& batchnorm_slots(int l) const { return m_batchnorm[static_cast<size_t>(l)]; }
  // The arena slot core/layer{l}/<name> (e.g. "weight", "coeffs", "bn_beta"), -1 when the layer has none.
  int slot(const ParamArena<T>& arena, int l, const std::string& name) const;

  // Registers every slot in the arena (before it is allocated); then, once it is, allocate_buffers().
  void add_slots(ParamArena<T>& arena);
  virtual void allocate_buffers() {}
  void initialize(ParamArena<T>& arena, SplitMix64& rng) const;
  Workspace make_workspace(int capacity, layers::ConvAlgorithm algorithm) const;

  // ws.act_out[l] for every layer from `images` (batch, 1, H, W). batchnorm_train: batch statistics (and the
  // running statistics updated), else the running statistics.
  void forward(ExecSpace const& space, const ParamArena<T>& arena, Workspace& ws, int batch, bool batchnorm_train,
               layers::ConvAlgorithm algorithm, const T* images) const;
  // Backward from the last layer's output gradient in ws.grad_a: parameter gradients accumulated (the filter
  // gradient of a synthesising kind is held until regularization(with_grad) carries it into its parameters).
  // eval_batchnorm: through evaluation-mode batch norm (running statistics), else the batch statistics of a
  // training forward. d_images (batch, 1, H, W), assigned where it has data.
  void backward(ExecSpace const& space, const ParamArena<T>& arena, Workspace& ws, int batch, bool eval_batchnorm,
                layers::ConvAlgorithm algorithm, const T* images, model_views::U4<T> d_images) const;
  // Smoothness, group sparsity and Laplace penalties on every layer's filters; with_grad: their gradient added to
  // the filter gradient and the whole filter gradient carried into the kind's parameters.
  double regularization(ExecSpace const& space, const ParamArena<T>& arena, bool with_grad) const;

  // The convolution filters (C_out, C_in, k, k) of layer l at the current parameters, in PyTorch order (valid
  // until the next call that synthesises: forward, regularization, filters).
  View4<T> filters(const ParamArena<T>& arena, int l) const;
  // The export/ entries of the core, in order (one per convolution; docs/formats.md).
  std::vector<ExportGroup> export_layers(const ParamArena<T>& arena) const;

 protected:
  Core(const CoreConfig& config, int height, int width);
  // The kind's convolution slots of layer l (registered in their fixed order).
  virtual void add_conv_slots(ParamArena<T>& arena, int l) = 0;
  // Batch-norm groups of layer l (C_out, or fewer when channels share statistics) and the rotations per group.
  virtual int batchnorm_groups(int l) const { return geometry(l).c_out; }
  virtual int batchnorm_rotations() const { return 1; }
  virtual bool batchnorm_shared_rotations() const { return false; }
  virtual void initialize_conv(ParamArena<T>& arena, SplitMix64& rng, int l) const = 0;
  // Makes the filters of every layer current (a synthesising kind computes them here; once per forward).
  virtual void prepare_filters(ExecSpace const& space, const ParamArena<T>& arena) const { (void)space, (void)arena; }
  virtual View4<T> filter_view(const ParamArena<T>& arena, int l) const = 0;    // no synthesis
  virtual View4<T> d_filter_view(const ParamArena<T>& arena, int l) const = 0;  // conv backward adds here
  // Sizes of the kind's own workspace buffers for `capacity` images.
  virtual std::vector<size_t> kind_buffer_sizes(int capacity) const { (void)capacity; return {}; }
  // The convolution of layer l: a dense conv with filter_view unless the kind overrides it.
  virtual size_t conv_workspace_size(int l, int capacity, layers::ConvAlgorithm algorithm) const;
  virtual void conv_forward(ExecSpace const& space, const ParamArena<T>& arena, Workspace& ws, int l, int batch,
                            layers::ConvAlgorithm algorithm,
                            model_views::U4<const T> in,    // (batch, C_in, H_in, W_in)
                            model_views::U4<T> out) const;  // (batch, C_out, H_out, W_out)
  virtual void conv_backward(ExecSpace const& space, const ParamArena<T>& arena, Workspace& ws, int l, int batch,
                             layers::ConvAlgorithm algorithm, model_views::U4<const T> in,
                             model_views::U4<const T> d_out,
                             model_views::U4<T> d_in) const;  // assigned where it has data
  // Called before a backward (a synthesising kind zeroes its filter gradients) and, per layer, once the filter
  // gradient of layer l is complete (it carries it into its parameters).
  virtual void begin_filter_gradient(ExecSpace const& space) const { (void)space; }
  virtual void finish_filter_gradient(ExecSpace const& space, const ParamArena<T>& arena, int l,
                                      View4<T> d_filters) const {
    (void)space, (void)arena, (void)l, (void)d_filters;
  }
  // Extra export/ entries before layer l's main convolution (stacked2d: the 1x1 and depthwise of a separable layer).
  virtual void export_before(const ParamArena<T>& arena, int l, std::vector<ExportGroup>& out) const {
    (void)arena, (void)l, (void)out;
  }
  // The dense conv shape of layer l (the model's algorithm where it applies, else im2col).
  layers::Conv2dShape dense_shape(int l, int batch, layers::ConvAlgorithm algorithm) const;
  std::string slot_prefix(int l) const { return "core/layer" + std::to_string(l) + "/"; }
  void set_separable(int l) { m_geometry[static_cast<size_t>(l)].separable = true; }

 private:
  layers::BatchNormShape bn_shape(int l, int batch) const;
  layers::BatchNormOptions bn_options(int l) const;

  CoreConfig m_config;
  std::vector<CoreLayerGeometry> m_geometry;
  std::vector<BatchNormSlots> m_batchnorm;
};

// The core of `config.kind` for images of height x width (the registry). Throws ConfigError when a VALID core
// shrinks the image to nothing.
template <class T>
std::unique_ptr<Core<T>> make_core(const CoreConfig& config, int height, int width);

// ---- helpers of the core kinds ----------------------------------------------------------------------------
template <class T>
View1<T> model_buffer(const std::string& name, size_t n) {
  return View1<T>(Kokkos::view_alloc(Kokkos::WithoutInitializing, "v1sysid::model::" + name), n);
}

// PyTorch's xavier_normal_: sd = sqrt(2 / (fan_in + fan_out)), fan_in = size(1) k k, fan_out = size(0) k k.
template <class T>
void fill_xavier_normal(ParamArena<T>& arena, int slot, SplitMix64& rng) {
  const auto& e = arena.slot(slot).extents;
  const double receptive = double(e[2] * e[3]);
  const double sd = std::sqrt(2.0 / (double(e[1]) * receptive + double(e[0]) * receptive));
  fill_with(arena, slot, [&](size_t) { return rng.normal() * sd; });
}

// An export/ entry holding one convolution weight (C_out, C_in / groups, k, k).
template <class T>
ExportGroup conv_export(const ParamArena<T>& arena, int slot, const std::string& padding, std::int64_t groups) {
  ExportGroup g;
  g.tensors.push_back({"weight", slot_values_host(arena, slot), slot_shape_of(arena, slot)});
  g.text_attributes.push_back({"padding", padding});
  g.int_attributes.push_back({"groups", groups});
  return g;
}

}  // namespace v1sysid
