// The layer loop of every core kind (model/core.hpp): geometry, batch norm, nonlinearity, filter regularisers,
// workspace and export/; and the registry of kinds.
#include "model/core.hpp"

#include "core/error.hpp"
#include "core/profiling.hpp"
#include "layers/regularizers.hpp"
#include "layers/winograd.hpp"

#include <algorithm>

namespace v1sysid {

namespace {

using namespace model_views;

layers::Activation to_activation(Nonlinearity n) {
  switch (n) {
    case Nonlinearity::softplus: return layers::Activation::softplus;
    case Nonlinearity::elu: return layers::Activation::elu;
    case Nonlinearity::none: break;
  }
  return layers::Activation::none;
}

template <class T>
void fill_constant(ParamArena<T>& arena, int slot, T value) {
  if (slot >= 0) Kokkos::deep_copy(arena.param_flat(slot), value);
}

// Batch-norm vectors of a rotation-shared layer hold one entry per feature f; export/ has one per channel
// c = r*F + f, so a plain framework's per-channel BatchNorm reproduces the layer.
std::vector<float> per_channel(std::vector<float> v, size_t channels) {
  if (v.empty() || v.size() == channels) return v;
  std::vector<float> out(channels);
  for (size_t c = 0; c < channels; ++c) out[c] = v[c % v.size()];
  return out;
}

}  // namespace

template <class T>
Core<T>::Core(const CoreConfig& config, int height, int width) : m_config(config) {
  int c_in = 1, h = height, w = width;
  for (int l = 0; l < config.num_layers(); ++l) {
    CoreLayerGeometry g;
    g.c_in = c_in;
    g.c_out = config.channels[static_cast<size_t>(l)];
    g.k = config.filter_sizes[static_cast<size_t>(l)];
    g.h_in = h;
    g.w_in = w;
    g.valid = config.layer_padding(l) == "valid";
    const int shrink = g.valid ? g.k - 1 : 0;
    g.h_out = h - shrink;
    g.w_out = w - shrink;
    if (g.h_out < 1 || g.w_out < 1)
      throw ShapeError("core layer " + std::to_string(l) + " (" + std::to_string(g.k) + " x " + std::to_string(g.k) +
                           ", VALID padding) leaves no pixels of the " + std::to_string(height) + " x " +
                           std::to_string(width) + " images",
                       "core.filter_sizes", "use smaller filters or padding: same");
    m_geometry.push_back(g);
    c_in = g.c_out;
    h = g.h_out;
    w = g.w_out;
  }
}

template <class T>
int Core<T>::slot(const ParamArena<T>& arena, int l, const std::string& name) const {
  return arena.find(slot_prefix(l) + name);
}

template <class T>
void Core<T>::add_slots(ParamArena<T>& arena) {
  for (int l = 0; l < num_layers(); ++l) {
    add_conv_slots(arena, l);
    const int groups = batchnorm_groups(l);
    const std::string p = slot_prefix(l);
    BatchNormSlots s;
    if (m_config.batchnorm_scale[static_cast<size_t>(l)]) s.gamma = arena.add(p + "bn_gamma", groups);
    s.beta = arena.add(p + "bn_beta", groups);
    s.running_mean = arena.add_buffer(p + "bn_running_mean", groups);
    s.running_var = arena.add_buffer(p + "bn_running_var", groups);
    m_batchnorm.push_back(s);
  }
}

template <class T>
void Core<T>::initialize(ParamArena<T>& arena, SplitMix64& rng) const {
  for (int l = 0; l < num_layers(); ++l) {
    initialize_conv(arena, rng, l);
    const auto& s = batchnorm_slots(l);
    fill_constant(arena, s.gamma, T(1));
    fill_constant(arena, s.beta, T(0));
    fill_constant(arena, s.running_mean, T(0));
    fill_constant(arena, s.running_var, T(1));
  }
}

template <class T>
layers::Conv2dShape Core<T>::dense_shape(int l, int batch, layers::ConvAlgorithm algorithm) const {
  const auto& g = geometry(l);
  layers::Conv2dShape s;
  s.B = batch;
  s.C_in = g.c_in;
  s.C_out = g.c_out;
  s.H = g.h_in;
  s.W = g.w_in;
  s.K = g.k;
  s.padding = g.valid ? layers::Padding::valid : layers::Padding::same;
  // A forced Winograd applies where it can; the other layers keep im2col.
  s.algorithm = algorithm;
  if (s.algorithm != layers::ConvAlgorithm::im2col && !layers::winograd_supported(s))
    s.algorithm = layers::ConvAlgorithm::im2col;
  return s;
}

template <class T>
layers::BatchNormShape Core<T>::bn_shape(int l, int batch) const {
  const auto& g = geometry(l);
  layers::BatchNormShape s;
  s.B = batch;
  s.R = batchnorm_rotations();
  s.F = g.c_out / s.R;
  s.H = g.h_out;
  s.W = g.w_out;
  return s;
}

template <class T>
layers::BatchNormOptions Core<T>::bn_options(int l) const {
  layers::BatchNormOptions o;
  o.momentum = m_config.batchnorm_decay;
  o.eps = m_config.batchnorm_eps;
  o.scale = batchnorm_slots(l).gamma >= 0;
  o.shared_rotations = batchnorm_shared_rotations();
  return o;
}

template <class T>
size_t Core<T>::conv_workspace_size(int l, int capacity, layers::ConvAlgorithm algorithm) const {
  return layers::conv2d_workspace_size(dense_shape(l, capacity, algorithm));
}

template <class T>
CoreWorkspace<T> Core<T>::make_workspace(int capacity, layers::ConvAlgorithm algorithm) const {
  Workspace ws;
  const auto B = static_cast<size_t>(capacity);
  size_t max_act = 0, conv_scratch = 0;
  for (int l = 0; l < num_layers(); ++l) {
    const auto& g = geometry(l);
    const size_t act = B * static_cast<size_t>(g.c_out) * static_cast<size_t>(g.h_out * g.w_out);
    max_act = std::max(max_act, act);
    const std::string p = "layer" + std::to_string(l) + "::";
    ws.conv_out.push_back(model_buffer<T>(p + "conv_out", act));
    ws.act_out.push_back(model_buffer<T>(p + "act_out", act));
    const auto groups = static_cast<size_t>(layers::batchnorm_groups(bn_shape(l, capacity), bn_options(l)));
    ws.bn_mean.push_back(model_buffer<T>(p + "bn_mean", groups));
    ws.bn_rstd.push_back(model_buffer<T>(p + "bn_rstd", groups));
    conv_scratch = std::max(conv_scratch, conv_workspace_size(l, capacity, algorithm));
  }
  ws.conv_scratch = model_buffer<T>("conv_scratch", std::max<size_t>(conv_scratch, 1));
  ws.grad_a = model_buffer<T>("grad_a", max_act);
  ws.grad_b = model_buffer<T>("grad_b", max_act);
  const auto sizes = kind_buffer_sizes(capacity);
  for (size_t i = 0; i < sizes.size(); ++i)
    ws.kind_buffers.push_back(sizes[i] ? model_buffer<T>("core_buffer" + std::to_string(i), sizes[i]) : View1<T>());
  return ws;
}

template <class T>
void Core<T>::conv_forward(ExecSpace const& space, const ParamArena<T>& arena, Workspace& ws, int l, int batch,
                           layers::ConvAlgorithm algorithm, U4<const T> in, U4<T> out) const {
  layers::conv2d_forward<T>(space, dense_shape(l, batch, algorithm), filter_view(arena, l), in, out, ws.conv_scratch);
}

template <class T>
void Core<T>::conv_backward(ExecSpace const& space, const ParamArena<T>& arena, Workspace& ws, int l, int batch,
                            layers::ConvAlgorithm algorithm, U4<const T> in, U4<const T> d_out, U4<T> d_in) const {
  layers::conv2d_backward<T>(space, dense_shape(l, batch, algorithm), filter_view(arena, l), in, d_out, d_in,
                             d_filter_view(arena, l), ws.conv_scratch);
}

template <class T>
void Core<T>::forward(ExecSpace const& space, const ParamArena<T>& arena, Workspace& ws, int batch,
                      bool batchnorm_train, layers::ConvAlgorithm algorithm, const T* images) const {
  {
    ScopedRegion region("forward/hermite_synthesis");
    prepare_filters(space, arena);  // roteq: once per forward (= per step), for the whole batch
  }
  const T* in = images;
  for (int l = 0; l < num_layers(); ++l) {
    const auto& g = geometry(l);
    const auto& s = batchnorm_slots(l);
    U4<T> conv_out(ws.conv_out[static_cast<size_t>(l)].data(), batch, g.c_out, g.h_out, g.w_out);
    U4<T> act_out(ws.act_out[static_cast<size_t>(l)].data(), batch, g.c_out, g.h_out, g.w_out);
    {
      ScopedRegion region([l] { return layer_region("forward", l, "conv"); });
      conv_forward(space, arena, ws, l, batch, algorithm, U4<const T>(in, batch, g.c_in, g.h_in, g.w_in), conv_out);
    }
    ScopedRegion bn_region([l] { return layer_region("forward", l, "batchnorm_act"); });
    const auto act = to_activation(m_config.nonlinearities[static_cast<size_t>(l)]);
    U1<const T> gamma;
    if (s.gamma >= 0) gamma = arena.param_flat(s.gamma);
    if (batchnorm_train) {
      layers::batchnorm_forward_train<T>(space, bn_shape(l, batch), bn_options(l), act, gamma,
                                         arena.param_flat(s.beta), conv_out, act_out,
                                         ws.bn_mean[static_cast<size_t>(l)], ws.bn_rstd[static_cast<size_t>(l)],
                                         arena.param_flat(s.running_mean), arena.param_flat(s.running_var));
    } else {
      layers::batchnorm_forward_eval<T>(space, bn_shape(l, batch), bn_options(l), act, gamma,
                                        arena.param_flat(s.beta), arena.param_flat(s.running_mean),
                                        arena.param_flat(s.running_var), conv_out, act_out);
    }
    in = act_out.data();
  }
}

template <class T>
void Core<T>::backward(ExecSpace const& space, const ParamArena<T>& arena, Workspace& ws, int batch,
                       bool eval_batchnorm, layers::ConvAlgorithm algorithm, const T* images, U4<T> d_images) const {
  // The activation gradient alternates between grad_a and grad_b; it starts in grad_a.
  T* d_cur = ws.grad_a.data();
  T* d_other = ws.grad_b.data();
  begin_filter_gradient(space);
  for (int l = num_layers() - 1; l >= 0; --l) {
    const auto& g = geometry(l);
    const auto& s = batchnorm_slots(l);
    U4<T> d_act(d_cur, batch, g.c_out, g.h_out, g.w_out);
    U1<const T> gamma;
    U1<T> d_gamma;
    if (s.gamma >= 0) {
      gamma = arena.param_flat(s.gamma);
      d_gamma = arena.grad_flat(s.gamma);
    }
    const auto act = to_activation(m_config.nonlinearities[static_cast<size_t>(l)]);
    // BN backward in place: d_act becomes the gradient of the conv output.
    {
      ScopedRegion region([l] { return layer_region("backward", l, "batchnorm_act"); });
      U4<const T> conv_out(ws.conv_out[static_cast<size_t>(l)].data(), batch, g.c_out, g.h_out, g.w_out);
      U4<const T> act_out(ws.act_out[static_cast<size_t>(l)].data(), batch, g.c_out, g.h_out, g.w_out);
      if (eval_batchnorm)
        layers::batchnorm_backward_eval<T>(space, bn_shape(l, batch), bn_options(l), act, gamma,
                                           arena.param_flat(s.running_mean), arena.param_flat(s.running_var),
                                           conv_out, act_out, d_act, d_act, d_gamma, arena.grad_flat(s.beta));
      else
        layers::batchnorm_backward_train<T>(space, bn_shape(l, batch), bn_options(l), act, gamma, conv_out, act_out,
                                            ws.bn_mean[static_cast<size_t>(l)], ws.bn_rstd[static_cast<size_t>(l)],
                                            d_act, d_act, d_gamma, arena.grad_flat(s.beta));
    }
    ScopedRegion conv_region([l] { return layer_region("backward", l, "conv"); });
    const T* conv_in = l == 0 ? images : ws.act_out[static_cast<size_t>(l - 1)].data();
    // Layer 0's input is the image: a gradient only where d_images is asked for.
    U4<T> d_in = d_images;
    if (l > 0) d_in = U4<T>(d_other, batch, g.c_in, g.h_in, g.w_in);
    conv_backward(space, arena, ws, l, batch, algorithm, U4<const T>(conv_in, batch, g.c_in, g.h_in, g.w_in), d_act,
                  d_in);
    std::swap(d_cur, d_other);
  }
}

template <class T>
double Core<T>::regularization(ExecSpace const& space, const ParamArena<T>& arena, bool with_grad) const {
  double total = 0;
  prepare_filters(space, arena);  // roteq: the regularisers act on the synthesised filters of all rotations
  for (int l = 0; l < num_layers(); ++l) {
    const auto w = filter_view(arena, l);
    const double ws = m_config.smooth_weight * m_config.rel_smooth[static_cast<size_t>(l)];
    const double wg = m_config.sparse_weight * m_config.rel_sparse[static_cast<size_t>(l)];
    const double wl = l == 0 ? m_config.laplace_weight : 0.0;
    if (with_grad) {
      const auto d_w = d_filter_view(arena, l);
      total += layers::conv_smoothness_grad(space, w, ws, d_w);
      total += layers::conv_group_sparsity_grad(space, w, wg, d_w);
      total += layers::laplace_l2_grad(space, w, wl, d_w);
      finish_filter_gradient(space, arena, l, d_w);
    } else {
      total += layers::conv_smoothness_value(space, w, ws);
      total += layers::conv_group_sparsity_value(space, w, wg);
      total += layers::laplace_l2_value(space, w, wl);
    }
  }
  return total;
}

template <class T>
View4<T> Core<T>::filters(const ParamArena<T>& arena, int l) const {
  if (l < 0 || l >= num_layers())
    throw ShapeError("core layer " + std::to_string(l) + " does not exist (the core has " +
                         std::to_string(num_layers()) + ")",
                     "Model::conv_filters", "ask for a layer in [0, num_layers)");
  prepare_filters(ExecSpace(), arena);
  return filter_view(arena, l);
}

template <class T>
std::vector<ExportGroup> Core<T>::export_layers(const ParamArena<T>& arena) const {
  std::vector<ExportGroup> out;
  prepare_filters(ExecSpace(), arena);  // once for every layer
  for (int l = 0; l < num_layers(); ++l) {
    export_before(arena, l, out);
    ExportGroup e;
    // (C_out, C_in, k, k), cross-correlation: the weight slot, or the expanded filters of all rotations.
    const auto w = Kokkos::create_mirror_view_and_copy(HostSpace(), filter_view(arena, l));
    std::vector<float> weight(w.size());
    for (size_t i = 0; i < w.size(); ++i) weight[i] = static_cast<float>(w.data()[i]);
    const auto c_out = static_cast<size_t>(w.extent(0));
    e.tensors.push_back({"weight", std::move(weight), {w.extent(0), w.extent(1), w.extent(2), w.extent(3)}});
    const auto& s = batchnorm_slots(l);
    const std::vector<std::uint64_t> bn_shape{c_out};
    e.tensors.push_back({"bn_mean", per_channel(slot_values_host(arena, s.running_mean), c_out), bn_shape});
    e.tensors.push_back({"bn_var", per_channel(slot_values_host(arena, s.running_var), c_out), bn_shape});
    e.tensors.push_back({"bn_beta", per_channel(slot_values_host(arena, s.beta), c_out), bn_shape});
    std::vector<float> gamma(c_out, 1.0f);
    if (s.gamma >= 0) gamma = per_channel(slot_values_host(arena, s.gamma), c_out);
    e.tensors.push_back({"bn_gamma", std::move(gamma), bn_shape});
    e.text_attributes.push_back({"padding", m_config.layer_padding(l)});
    e.int_attributes.push_back({"groups", 1});
    e.text_attributes.push_back({"nonlinearity", nonlinearity_name(m_config.nonlinearities[static_cast<size_t>(l)])});
    e.real_attributes.push_back({"bn_eps", m_config.batchnorm_eps});
    out.push_back(std::move(e));
  }
  return out;
}

// The kinds' factories, each defined in its own file (core_<kind>.cpp); only this registry calls them.
template <class T>
std::unique_ptr<Core<T>> make_cnn_core(const CoreConfig& config, int height, int width);
template <class T>
std::unique_ptr<Core<T>> make_roteq_core(const CoreConfig& config, int height, int width);
template <class T>
std::unique_ptr<Core<T>> make_stacked2d_core(const CoreConfig& config, int height, int width);

template <class T>
std::unique_ptr<Core<T>> make_core(const CoreConfig& config, int height, int width) {
  switch (config.kind) {
    case CoreKind::cnn: return make_cnn_core<T>(config, height, width);
    case CoreKind::roteq: return make_roteq_core<T>(config, height, width);
    case CoreKind::stacked2d: return make_stacked2d_core<T>(config, height, width);
  }
  throw std::logic_error("make_core: a CoreKind without a core");
}

template class Core<float>;
template class Core<double>;
template std::unique_ptr<Core<float>> make_core<float>(const CoreConfig&, int, int);
template std::unique_ptr<Core<double>> make_core<double>(const CoreConfig&, int, int);

}  // namespace v1sysid
