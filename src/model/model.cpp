#include "model/model.hpp"

#include "core/error.hpp"
#include "core/profiling.hpp"
#include "optim/regularizers.hpp"
#include "train/rng.hpp"

#include <algorithm>
#include <cmath>

namespace v1sysid {

namespace {

constexpr uint64_t kStreamInit = 3;
constexpr double kInitSd = 0.01;
constexpr double kMinMeanResponse = 1e-3;

template <class T>
using U1 = layers::UView1<T, ExecSpace>;
template <class T>
using U2 = layers::UView2<T, ExecSpace>;
template <class T>
using U3 = layers::UView3<T, ExecSpace>;
template <class T>
using U4 = layers::UView4<T, ExecSpace>;

template <class T>
View1<T> alloc(const std::string& name, size_t n) {
  return View1<T>(Kokkos::view_alloc(Kokkos::WithoutInitializing, "v1sysid::model::" + name), n);
}

layers::Activation to_activation(Nonlinearity n) {
  switch (n) {
    case Nonlinearity::softplus: return layers::Activation::softplus;
    case Nonlinearity::elu: return layers::Activation::elu;
    case Nonlinearity::none: break;
  }
  return layers::Activation::none;
}

// Fills a slot with truncated-normal values drawn on the host, in slot element order.
template <class T>
void fill_truncated_normal(ParamArena<T>& arena, int slot, SplitMix64& rng, double sd = kInitSd) {
  auto flat = arena.param_flat(slot);
  auto host = Kokkos::create_mirror_view(flat);
  for (size_t i = 0; i < host.extent(0); ++i) host(i) = static_cast<T>(rng.truncated_normal(sd));
  Kokkos::deep_copy(flat, host);
}

template <class T>
void fill_constant(ParamArena<T>& arena, int slot, T value) {
  if (slot >= 0) Kokkos::deep_copy(arena.param_flat(slot), value);
}

}  // namespace

double inverse_softplus(double y) { return y + std::log(-std::expm1(-y)); }

template <class T>
Model<T>::Model(ModelConfig config, int height, int width, int n_neurons)
    : m_config(std::move(config)), m_height(height), m_width(width), m_neurons(n_neurons),
      m_arena("v1sysid::model::arena") {
  const auto& core = m_config.core;
  if (height < 1 || width < 1 || n_neurons < 1)
    throw ShapeError("the model needs images of at least 1 x 1 pixel and at least one neuron, got " +
                         std::to_string(height) + " x " + std::to_string(width) + " and " +
                         std::to_string(n_neurons) + " neurons",
                     "the dataset", "check the dataset");
  int c_in = 1, h = height, w = width;
  for (int l = 0; l < core.num_layers(); ++l) {
    LayerGeometry g;
    g.c_in = c_in;
    g.c_out = core.channels[static_cast<size_t>(l)];
    g.k = core.filter_sizes[static_cast<size_t>(l)];
    g.h_in = h;
    g.w_in = w;
    const int shrink = core.padding == "valid" ? g.k - 1 : 0;
    g.h_out = h - shrink;
    g.w_out = w - shrink;
    if (g.h_out < 1 || g.w_out < 1)
      throw ShapeError("core layer " + std::to_string(l) + " (" + std::to_string(g.k) + " x " + std::to_string(g.k) +
                           ", VALID padding) leaves no pixels of the " + std::to_string(height) + " x " +
                           std::to_string(width) + " images",
                       "core.filter_sizes", "use smaller filters or padding: same");
    m_geometry.push_back(g);
    const std::string p = "core/layer" + std::to_string(l) + "/";
    LayerSlots s;
    int bn_groups = g.c_out;
    if (core.rotation_equivariant()) {
      layers::HermiteShape hs;
      hs.K = g.k;
      hs.R = core.rotations;
      hs.C_in = g.c_in;
      hs.F = core.features[static_cast<size_t>(l)];
      hs.roll = l == 0 ? 0 : core.features[static_cast<size_t>(l - 1)];
      layers::validate(hs);
      m_hermite.push_back(hs);
      s.coeffs = m_arena.add(p + "coeffs", hs.Q(), hs.C_in, hs.F);
      if (core.batchnorm_shared_rotations) bn_groups = hs.F;
    } else {
      s.weight = m_arena.add(p + "weight", g.c_out, g.c_in, g.k, g.k);
    }
    if (core.batchnorm_scale[static_cast<size_t>(l)]) s.gamma = m_arena.add(p + "bn_gamma", bn_groups);
    s.beta = m_arena.add(p + "bn_beta", bn_groups);
    s.running_mean = m_arena.add_buffer(p + "bn_running_mean", bn_groups);
    s.running_var = m_arena.add_buffer(p + "bn_running_var", bn_groups);
    m_layers.push_back(s);
    c_in = g.c_out;
    h = g.h_out;
    w = g.w_out;
  }
  m_readout.mask = m_arena.add("readout/mask", n_neurons, h, w);
  m_readout.features = m_arena.add("readout/features", n_neurons, c_in);
  m_readout.bias = m_arena.add("readout/bias", n_neurons);
  m_arena.allocate();
  if (core.rotation_equivariant()) {
    size_t scratch = 1;
    for (int l = 0; l < core.num_layers(); ++l) {
      const auto& hs = m_hermite[static_cast<size_t>(l)];
      m_pooled_basis.push_back(layers::make_hermite_pooled_basis<T>(hs.K, hs.R));
      const std::string p = "layer" + std::to_string(l) + "::";
      m_filters.push_back(alloc<T>(p + "filters", hs.filter_size()));
      m_d_filters.push_back(alloc<T>(p + "d_filters", hs.filter_size()));
      scratch = std::max(scratch, layers::hermite_workspace_size(hs));
    }
    m_synth_scratch = alloc<T>("hermite_scratch", scratch);
  }
}

template <class T>
const layers::HermiteShape& Model<T>::hermite_shape(int l) const {
  if (!roteq())
    throw ShapeError("layer " + std::to_string(l) + " of a " + m_config.core.kind + " core has no Hermite synthesis",
                     "Model::hermite_shape", "ask only a roteq core");
  return m_hermite.at(static_cast<size_t>(l));
}

template <class T>
View4<T> Model<T>::filter_view(int l) const {
  const auto& g = m_geometry[static_cast<size_t>(l)];
  if (!roteq()) return m_arena.template param<4>(m_layers[static_cast<size_t>(l)].weight);
  return View4<T>(m_filters[static_cast<size_t>(l)].data(), g.c_out, g.c_in, g.k, g.k);
}

template <class T>
View4<T> Model<T>::d_filter_view(int l) const {
  const auto& g = m_geometry[static_cast<size_t>(l)];
  if (!roteq()) return m_arena.template grad<4>(m_layers[static_cast<size_t>(l)].weight);
  return View4<T>(m_d_filters[static_cast<size_t>(l)].data(), g.c_out, g.c_in, g.k, g.k);
}

template <class T>
void Model<T>::synthesize_filters() const {
  if (!roteq()) return;
  ExecSpace space;
  for (int l = 0; l < num_layers(); ++l) {
    const auto& hs = m_hermite[static_cast<size_t>(l)];
    layers::hermite_synthesize_forward<T>(space, hs, U2<const T>(m_pooled_basis[static_cast<size_t>(l)]),
                                          U3<const T>(m_arena.template param<3>(m_layers[static_cast<size_t>(l)].coeffs)),
                                          U4<T>(filter_view(l)), U1<T>(m_synth_scratch));
  }
}

template <class T>
View4<T> Model<T>::conv_filters(int l) const {
  if (l < 0 || l >= num_layers())
    throw ShapeError("core layer " + std::to_string(l) + " does not exist (the core has " +
                         std::to_string(num_layers()) + ")",
                     "Model::conv_filters", "ask for a layer in [0, num_layers)");
  synthesize_filters();
  return filter_view(l);
}

template <class T>
void Model<T>::initialize(uint64_t seed, const std::vector<double>& mean_response) {
  if (static_cast<int>(mean_response.size()) != m_neurons)
    throw ShapeError("mean_response has " + std::to_string(mean_response.size()) + " entries for " +
                         std::to_string(m_neurons) + " neurons",
                     "Model::initialize", "pass one mean training response per neuron");
  SplitMix64 rng(seed, kStreamInit);
  for (const auto& s : m_layers) {
    if (s.coeffs >= 0) fill_truncated_normal(m_arena, s.coeffs, rng, m_config.core.coeff_init_sd);
    else fill_truncated_normal(m_arena, s.weight, rng);
    fill_constant(m_arena, s.gamma, T(1));
    fill_constant(m_arena, s.beta, T(0));
    fill_constant(m_arena, s.running_mean, T(0));
    fill_constant(m_arena, s.running_var, T(1));
  }
  fill_truncated_normal(m_arena, m_readout.mask, rng);
  fill_truncated_normal(m_arena, m_readout.features, rng);
  auto bias = m_arena.param_flat(m_readout.bias);
  auto host = Kokkos::create_mirror_view(bias);
  for (int n = 0; n < m_neurons; ++n)
    host(n) = static_cast<T>(0.5 * inverse_softplus(std::max(mean_response[static_cast<size_t>(n)], kMinMeanResponse)));
  Kokkos::deep_copy(bias, host);
  // Adam starts fresh.
  Kokkos::deep_copy(m_arena.adam_m(), T(0));
  Kokkos::deep_copy(m_arena.adam_v(), T(0));
  Kokkos::deep_copy(m_arena.grads(), T(0));
  m_arena.set_adam_step(0);
}

template <class T>
layers::Conv2dShape Model<T>::conv_shape(int l, int batch) const {
  const auto& g = m_geometry[static_cast<size_t>(l)];
  layers::Conv2dShape s;
  s.B = batch;
  s.C_in = g.c_in;
  s.C_out = g.c_out;
  s.H = g.h_in;
  s.W = g.w_in;
  s.K = g.k;
  s.padding = m_config.core.padding == "valid" ? layers::Padding::valid : layers::Padding::same;
  return s;
}

template <class T>
layers::BatchNormShape Model<T>::bn_shape(int l, int batch) const {
  const auto& g = m_geometry[static_cast<size_t>(l)];
  layers::BatchNormShape s;
  s.B = batch;
  s.R = roteq() ? m_config.core.rotations : 1;
  s.F = g.c_out / s.R;
  s.H = g.h_out;
  s.W = g.w_out;
  return s;
}

template <class T>
layers::BatchNormOptions Model<T>::bn_options(int l) const {
  layers::BatchNormOptions o;
  o.momentum = m_config.core.batchnorm_decay;
  o.eps = m_config.core.batchnorm_eps;
  o.scale = m_layers[static_cast<size_t>(l)].gamma >= 0;
  o.shared_rotations = roteq() && m_config.core.batchnorm_shared_rotations;
  return o;
}

template <class T>
layers::FactorizedReadoutShape Model<T>::readout_shape(int batch) const {
  const auto& g = m_geometry.back();
  layers::FactorizedReadoutShape s;
  s.B = batch;
  s.C = g.c_out;
  s.H = g.h_out;
  s.W = g.w_out;
  s.N = m_neurons;
  return s;
}

template <class T>
ModelWorkspace<T> Model<T>::make_workspace(int capacity) const {
  if (capacity < 1) throw ShapeError("workspace capacity must be positive", "Model::make_workspace", "");
  ModelWorkspace<T> ws;
  ws.capacity = capacity;
  const auto B = static_cast<size_t>(capacity);
  ws.images = alloc<T>("images", B * static_cast<size_t>(m_height * m_width));
  ws.responses = alloc<T>("responses", B * static_cast<size_t>(m_neurons));
  size_t max_act = 0, conv_scratch = 0;
  for (int l = 0; l < num_layers(); ++l) {
    const auto& g = m_geometry[static_cast<size_t>(l)];
    const size_t act = B * static_cast<size_t>(g.c_out) * static_cast<size_t>(g.h_out * g.w_out);
    max_act = std::max(max_act, act);
    const std::string p = "layer" + std::to_string(l) + "::";
    ws.conv_out.push_back(alloc<T>(p + "conv_out", act));
    ws.act_out.push_back(alloc<T>(p + "act_out", act));
    const auto groups = static_cast<size_t>(layers::batchnorm_groups(bn_shape(l, capacity), bn_options(l)));
    ws.bn_mean.push_back(alloc<T>(p + "bn_mean", groups));
    ws.bn_rstd.push_back(alloc<T>(p + "bn_rstd", groups));
    conv_scratch = std::max(conv_scratch, layers::conv2d_workspace_size(conv_shape(l, capacity)));
  }
  const auto rs = readout_shape(capacity);
  ws.readout_h = alloc<T>("readout_h", B * static_cast<size_t>(m_neurons));
  ws.prediction = alloc<T>("prediction", B * static_cast<size_t>(m_neurons));
  ws.readout_cache = alloc<T>("readout_cache", layers::factorized_readout_cache_size(rs));
  ws.readout_scratch = alloc<T>("readout_scratch", layers::factorized_readout_workspace_size(rs));
  ws.conv_scratch = alloc<T>("conv_scratch", std::max<size_t>(conv_scratch, 1));
  ws.grad_a = alloc<T>("grad_a", max_act);
  ws.grad_b = alloc<T>("grad_b", max_act);
  return ws;
}

template <class T>
void Model<T>::forward(ModelWorkspace<T>& ws, int batch, bool training) {
  if (batch < 1 || batch > ws.capacity)
    throw ShapeError("batch of " + std::to_string(batch) + " images for a workspace of " +
                         std::to_string(ws.capacity),
                     "Model::forward", "make a workspace with a capacity of at least the batch size");
  ExecSpace space;
  {
    ScopedRegion region("forward/hermite_synthesis");
    synthesize_filters();  // roteq: once per forward (= per step), for the whole batch
  }
  const T* in = ws.images.data();
  for (int l = 0; l < num_layers(); ++l) {
    const auto& g = m_geometry[static_cast<size_t>(l)];
    const auto& s = m_layers[static_cast<size_t>(l)];
    const auto cs = conv_shape(l, batch);
    U4<const T> conv_in(in, batch, g.c_in, g.h_in, g.w_in);
    U4<T> conv_out(ws.conv_out[static_cast<size_t>(l)].data(), batch, g.c_out, g.h_out, g.w_out);
    U4<T> act_out(ws.act_out[static_cast<size_t>(l)].data(), batch, g.c_out, g.h_out, g.w_out);
    {
      ScopedRegion region([l] { return layer_region("forward", l, "conv"); });
      layers::conv2d_forward<T>(space, cs, filter_view(l), conv_in, conv_out, ws.conv_scratch);
    }
    ScopedRegion region([l] { return layer_region("forward", l, "batchnorm_act"); });
    const auto act = to_activation(m_config.core.nonlinearities[static_cast<size_t>(l)]);
    U1<const T> gamma;
    if (s.gamma >= 0) gamma = m_arena.param_flat(s.gamma);
    if (training) {
      layers::batchnorm_forward_train<T>(space, bn_shape(l, batch), bn_options(l), act, gamma,
                                         m_arena.param_flat(s.beta), conv_out, act_out,
                                         ws.bn_mean[static_cast<size_t>(l)], ws.bn_rstd[static_cast<size_t>(l)],
                                         m_arena.param_flat(s.running_mean), m_arena.param_flat(s.running_var));
    } else {
      layers::batchnorm_forward_eval<T>(space, bn_shape(l, batch), bn_options(l), act, gamma,
                                        m_arena.param_flat(s.beta), m_arena.param_flat(s.running_mean),
                                        m_arena.param_flat(s.running_var), conv_out, act_out);
    }
    in = act_out.data();
  }
  const auto& g = m_geometry.back();
  ScopedRegion region("forward/readout");
  layers::FactorizedReadoutOptions ro;
  ro.positive_features = m_config.readout.positive_features;
  U4<const T> core_out(in, batch, g.c_out, g.h_out, g.w_out);
  U2<T> h(ws.readout_h.data(), batch, m_neurons);
  layers::factorized_readout_forward<T>(space, readout_shape(batch), ro, m_arena.template param<3>(m_readout.mask),
                                        m_arena.template param<2>(m_readout.features),
                                        m_arena.param_flat(m_readout.bias), core_out, h, ws.readout_cache,
                                        ws.readout_scratch);
  U2<T> yhat(ws.prediction.data(), batch, m_neurons);
  layers::output_nonlinearity_forward<T>(space, layers::OutputNonlinearity::softplus, h, yhat);
}

template <class T>
double Model<T>::poisson_loss(ModelWorkspace<T>& ws, int batch) const {
  ExecSpace space;
  U2<const T> h(ws.readout_h.data(), batch, m_neurons);
  U2<const T> y(ws.responses.data(), batch, m_neurons);
  U2<T> yhat(ws.prediction.data(), batch, m_neurons);
  return layers::poisson_loss_forward<T>(space, layers::OutputNonlinearity::softplus, layers::PoissonLossOptions{},
                                         h, y, yhat);
}

template <class T>
double Model<T>::regularization() const {
  ExecSpace space;
  const auto& core = m_config.core;
  double total = 0;
  synthesize_filters();  // roteq: the regularisers act on the synthesised filters of all rotations
  for (int l = 0; l < num_layers(); ++l) {
    const auto w = filter_view(l);
    total += conv_smoothness_value(space, w, core.smooth_weight * core.rel_smooth[static_cast<size_t>(l)]);
    total += conv_group_sparsity_value(space, w, core.sparse_weight * core.rel_sparse[static_cast<size_t>(l)]);
  }
  const auto mask = m_arena.template param<3>(m_readout.mask);
  const auto features = m_arena.template param<2>(m_readout.features);
  const auto& r = m_config.readout;
  if (r.regularizer == "joint_l1") total += readout_joint_l1_value(space, mask, features, r.weight);
  else if (r.regularizer == "separate_l1")
    total += readout_separate_l1_value(space, mask, features, r.mask_weight, r.feature_weight);
  else total += readout_l1_mask_l2_features_value(space, mask, features, r.mask_weight, r.feature_weight);
  return total;
}

template <class T>
double Model<T>::backward(ModelWorkspace<T>& ws, int batch) {
  ExecSpace space;
  // Output nonlinearity + Poisson loss: d_h overwrites h (allowed to alias).
  U2<T> d_h(ws.readout_h.data(), batch, m_neurons);
  {
    ScopedRegion region("backward/loss");
    layers::poisson_loss_backward<T>(space, layers::OutputNonlinearity::softplus, layers::PoissonLossOptions{}, d_h,
                                     U2<const T>(ws.responses.data(), batch, m_neurons), d_h);
  }
  // Readout: gradient into the last core layer's output (grad_a).
  const int L = num_layers();
  const auto& last = m_geometry.back();
  layers::FactorizedReadoutOptions ro;
  ro.positive_features = m_config.readout.positive_features;
  U4<T> d_core(ws.grad_a.data(), batch, last.c_out, last.h_out, last.w_out);
  {
    ScopedRegion region("backward/readout");
    layers::factorized_readout_backward<T>(
        space, readout_shape(batch), ro, m_arena.template param<3>(m_readout.mask),
        m_arena.template param<2>(m_readout.features),
        U4<const T>(ws.act_out[static_cast<size_t>(L - 1)].data(), batch, last.c_out, last.h_out, last.w_out), d_h,
        ws.readout_cache, d_core, m_arena.template grad<3>(m_readout.mask),
        m_arena.template grad<2>(m_readout.features), m_arena.grad_flat(m_readout.bias), ws.readout_scratch);
  }
  // Core, last layer first; the activation gradient alternates between grad_a and grad_b.
  T* d_cur = ws.grad_a.data();
  T* d_other = ws.grad_b.data();
  // roteq: the filter gradients are collected in model buffers and carried into the coefficients at the end.
  for (const auto& d : m_d_filters) Kokkos::deep_copy(space, d, T(0));
  for (int l = L - 1; l >= 0; --l) {
    const auto& g = m_geometry[static_cast<size_t>(l)];
    const auto& s = m_layers[static_cast<size_t>(l)];
    U4<T> d_act(d_cur, batch, g.c_out, g.h_out, g.w_out);
    U1<const T> gamma;
    U1<T> d_gamma;
    if (s.gamma >= 0) {
      gamma = m_arena.param_flat(s.gamma);
      d_gamma = m_arena.grad_flat(s.gamma);
    }
    const auto act = to_activation(m_config.core.nonlinearities[static_cast<size_t>(l)]);
    // BN backward in place: d_act becomes the gradient of the conv output.
    {
      ScopedRegion region([l] { return layer_region("backward", l, "batchnorm_act"); });
      layers::batchnorm_backward_train<T>(
          space, bn_shape(l, batch), bn_options(l), act, gamma,
          U4<const T>(ws.conv_out[static_cast<size_t>(l)].data(), batch, g.c_out, g.h_out, g.w_out),
          U4<const T>(ws.act_out[static_cast<size_t>(l)].data(), batch, g.c_out, g.h_out, g.w_out),
          ws.bn_mean[static_cast<size_t>(l)], ws.bn_rstd[static_cast<size_t>(l)], d_act, d_act, d_gamma,
          m_arena.grad_flat(s.beta));
    }
    ScopedRegion region([l] { return layer_region("backward", l, "conv"); });
    const T* conv_in = l == 0 ? ws.images.data() : ws.act_out[static_cast<size_t>(l - 1)].data();
    U4<T> d_in;  // the input image needs no gradient
    if (l > 0) d_in = U4<T>(d_other, batch, g.c_in, g.h_in, g.w_in);
    layers::conv2d_backward<T>(space, conv_shape(l, batch), filter_view(l),
                               U4<const T>(conv_in, batch, g.c_in, g.h_in, g.w_in), d_act, d_in, d_filter_view(l),
                               ws.conv_scratch);
    std::swap(d_cur, d_other);
  }
  // Regularisers: value and gradient together.
  ScopedRegion region("backward/regularizers");
  const auto& core = m_config.core;
  double total = 0;
  for (int l = 0; l < L; ++l) {
    const auto w = filter_view(l);
    const auto d_w = d_filter_view(l);
    total += conv_smoothness_grad(space, w, core.smooth_weight * core.rel_smooth[static_cast<size_t>(l)], d_w);
    total += conv_group_sparsity_grad(space, w, core.sparse_weight * core.rel_sparse[static_cast<size_t>(l)], d_w);
    if (roteq()) {
      ScopedRegion synthesis_region("backward/hermite_synthesis");
      const auto& s = m_layers[static_cast<size_t>(l)];
      layers::hermite_synthesize_backward<T>(space, m_hermite[static_cast<size_t>(l)],
                                             U2<const T>(m_pooled_basis[static_cast<size_t>(l)]), U4<const T>(d_w),
                                             U3<T>(m_arena.template grad<3>(s.coeffs)), U1<T>(m_synth_scratch));
    }
  }
  const auto mask = m_arena.template param<3>(m_readout.mask);
  const auto features = m_arena.template param<2>(m_readout.features);
  const auto d_mask = m_arena.template grad<3>(m_readout.mask);
  const auto d_features = m_arena.template grad<2>(m_readout.features);
  const auto& r = m_config.readout;
  if (r.regularizer == "joint_l1") total += readout_joint_l1_grad(space, mask, features, r.weight, d_mask, d_features);
  else if (r.regularizer == "separate_l1")
    total += readout_separate_l1_grad(space, mask, features, r.mask_weight, r.feature_weight, d_mask, d_features);
  else
    total += readout_l1_mask_l2_features_grad(space, mask, features, r.mask_weight, r.feature_weight, d_mask,
                                              d_features);
  return total;
}

template class Model<float>;
template class Model<double>;

}  // namespace v1sysid
