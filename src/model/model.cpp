#include "model/model.hpp"

#include "core/profiling.hpp"

#include "core/error.hpp"
#include "layers/winograd.hpp"
#include "layers/regularizers.hpp"
#include "core/random.hpp"

#include <algorithm>
#include <cmath>

namespace v1sysid {

namespace {

constexpr uint64_t kStreamInit = 3;

using namespace model_views;

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

template <class T>
void fill_constant(ParamArena<T>& arena, int slot, T value) {
  if (slot >= 0) Kokkos::deep_copy(arena.param_flat(slot), value);
}

// PyTorch's xavier_normal_: sd = sqrt(2 / (fan_in + fan_out)), fan_in = size(1) k k, fan_out = size(0) k k.
template <class T>
void fill_xavier_normal(ParamArena<T>& arena, int slot, SplitMix64& rng) {
  const auto& e = arena.slot(slot).extents;
  const double receptive = double(e[2] * e[3]);
  const double sd = std::sqrt(2.0 / (double(e[1]) * receptive + double(e[0]) * receptive));
  fill_with(arena, slot, [&](size_t) { return rng.normal() * sd; });
}

template <class T>
void zero_adam_slot(ParamArena<T>& arena, int slot) {
  if (slot < 0 || !arena.slot(slot).trainable) return;
  const auto& s = arena.slot(slot);
  Kokkos::deep_copy(Kokkos::subview(arena.adam_m(), std::make_pair(s.offset, s.offset + s.size)), T(0));
  Kokkos::deep_copy(Kokkos::subview(arena.adam_v(), std::make_pair(s.offset, s.offset + s.size)), T(0));
}

uint64_t mix_seed(uint64_t seed, uint64_t counter) {
  SplitMix64 r(seed, 0x5A4D50ull + counter);
  return r.next();
}

}  // namespace

template <class T>
Model<T>::Model(ModelConfig config, int height, int width, int n_neurons)
    : Model(std::move(config), height, width, std::vector<ReadoutSpec>{ReadoutSpec{"", n_neurons}}) {}

template <class T>
Model<T>::Model(ModelConfig config, int height, int width, std::vector<ReadoutSpec> readouts)
    : m_config(std::move(config)), m_height(height), m_width(width),
      m_neurons(readouts.empty() ? 0 : readouts.front().n_neurons), m_arena("v1sysid::model::arena") {
  build(readouts);
}

template <class T>
void Model<T>::build(const std::vector<ReadoutSpec>& readouts) {
  const auto& core = m_config.core;
  const int height = m_height, width = m_width;
  if (readouts.empty())
    throw ShapeError("the model needs at least one readout", "Model", "pass one dataset");
  for (size_t r = 0; r < readouts.size(); ++r) {
    if (readouts.size() > 1 && readouts[r].key.empty())
      throw ShapeError("readout " + std::to_string(r) + " has an empty data_key", "Model",
                       "give every dataset of a multi-dataset model a distinct data_key");
    for (size_t q = 0; q < r; ++q)
      if (readouts[q].key == readouts[r].key)
        throw ShapeError("two datasets share the data_key '" + readouts[r].key + "'", "Model",
                         "pass each dataset once, or rename one file (the key is the file name stem)");
  }
  if (height < 1 || width < 1 || m_neurons < 1)
    throw ShapeError("the model needs images of at least 1 x 1 pixel and at least one neuron, got " +
                         std::to_string(height) + " x " + std::to_string(width) + " and " +
                         std::to_string(m_neurons) + " neurons",
                     "the dataset", "check the dataset");
  int c_in = 1, h = height, w = width;
  for (int l = 0; l < core.num_layers(); ++l) {
    LayerGeometry g;
    g.c_in = c_in;
    g.c_out = core.channels[static_cast<size_t>(l)];
    g.k = core.filter_sizes[static_cast<size_t>(l)];
    g.h_in = h;
    g.w_in = w;
    g.separable = core.depth_separable() && l > 0;
    g.valid = core.layer_padding(l) == "valid";
    const int shrink = g.valid ? g.k - 1 : 0;
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
    } else if (g.separable) {
      s.pointwise_in = m_arena.add(p + "pointwise_in", g.c_out, g.c_in, 1, 1);
      s.depthwise = m_arena.add(p + "depthwise", g.c_out, 1, g.k, g.k);
      s.weight = m_arena.add(p + "weight", g.c_out, g.c_out, 1, 1);
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
  for (const auto& spec : readouts) {
    if (spec.n_neurons < 1)
      throw ShapeError("readout '" + spec.key + "' has no neurons", "Model", "check the dataset");
    m_readouts.push_back(make_readout<T>(m_config.readout, ReadoutPlace{spec.key, spec.n_neurons, c_in, h, w}));
    m_readouts.back()->add_slots(m_arena);
  }
  m_readout_specs = readouts;
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
    throw ShapeError("layer " + std::to_string(l) + " of a " + name_of(m_config.core.kind) + " core has no Hermite synthesis",
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
int Model<T>::readout_index(const std::string& key) const {
  for (size_t r = 0; r < m_readout_specs.size(); ++r)
    if (m_readout_specs[r].key == key) return static_cast<int>(r);
  throw ShapeError("the model has no readout for data_key '" + key + "'", "Model",
                   "pass a dataset the model was trained on");
}

template <class T>
layers::OutputNonlinearity Model<T>::output_nonlinearity() const {
  return m_readouts.front()->output_nonlinearity();  // every readout of a model is of config.readout.kind
}

template <class T>
int Model<T>::readout_slot(int r, const std::string& name) const {
  return m_arena.find(m_readouts.at(static_cast<size_t>(r))->place().slot_prefix() + name);
}

template <class T>
void Model<T>::initialize(uint64_t seed, const std::vector<double>& mean_response) {
  initialize(seed, std::vector<ReadoutInit>{ReadoutInit{mean_response, {}}});
}

template <class T>
void Model<T>::initialize(uint64_t seed, const std::vector<ReadoutInit>& readouts) {
  if (readouts.size() != m_readouts.size())
    throw ShapeError(std::to_string(readouts.size()) + " readout initialisations for " +
                         std::to_string(m_readouts.size()) + " readouts",
                     "Model::initialize", "pass one entry per dataset");
  SplitMix64 rng(seed, kStreamInit);
  const bool xavier = m_config.core.kind == CoreKind::stacked2d;
  for (const auto& s : m_layers) {
    if (s.coeffs >= 0) {
      fill_truncated_normal(m_arena, s.coeffs, rng, m_config.core.coeff_init_sd);
    } else {
      for (int slot : {s.pointwise_in, s.depthwise, s.weight}) {
        if (slot < 0) continue;
        if (xavier) fill_xavier_normal(m_arena, slot, rng);
        else fill_truncated_normal(m_arena, slot, rng);
      }
    }
    fill_constant(m_arena, s.gamma, T(1));
    fill_constant(m_arena, s.beta, T(0));
    fill_constant(m_arena, s.running_mean, T(0));
    fill_constant(m_arena, s.running_var, T(1));
  }
  for (size_t r = 0; r < m_readouts.size(); ++r) init_readout(rng, static_cast<int>(r), readouts[r]);
  // Adam starts fresh.
  Kokkos::deep_copy(m_arena.adam_m(), T(0));
  Kokkos::deep_copy(m_arena.adam_v(), T(0));
  Kokkos::deep_copy(m_arena.grads(), T(0));
  m_arena.set_adam_step(0);
  m_sample_counter = 0;
}

template <class T>
void Model<T>::initialize_readout(uint64_t seed, int r, const ReadoutInit& init) {
  if (r < 0 || r >= num_readouts()) throw ShapeError("no readout " + std::to_string(r), "Model::initialize_readout", "");
  SplitMix64 rng(seed, kStreamInit + 1000 + static_cast<uint64_t>(r));
  init_readout(rng, r, init);
  for (int slot : m_readouts[static_cast<size_t>(r)]->slots()) zero_adam_slot(m_arena, slot);
}

template <class T>
void Model<T>::init_readout(SplitMix64& rng, int r, const ReadoutInit& init) {
  const int N = m_readout_specs[static_cast<size_t>(r)].n_neurons;
  if (static_cast<int>(init.mean_response.size()) != N)
    throw ShapeError("mean_response has " + std::to_string(init.mean_response.size()) + " entries for " +
                         std::to_string(N) + " neurons",
                     "Model::initialize", "pass one mean training response per neuron");
  m_readouts[static_cast<size_t>(r)]->initialize(m_arena, rng, init);
}

template <class T>
std::vector<float> Model<T>::readout_positions(int r) const {
  return m_readouts.at(static_cast<size_t>(r))->positions(m_arena);
}

template <class T>
ExportGroup Model<T>::readout_export(int r) const {
  return m_readouts.at(static_cast<size_t>(r))->export_group(m_arena);
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
  s.padding = g.valid ? layers::Padding::valid : layers::Padding::same;
  // A forced Winograd applies where it can; the other layers keep im2col.
  s.algorithm = m_conv_algorithm;
  if (s.algorithm != layers::ConvAlgorithm::im2col && !layers::winograd_supported(s))
    s.algorithm = layers::ConvAlgorithm::im2col;
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
ModelWorkspace<T> Model<T>::make_workspace(int capacity) const {
  if (capacity < 1) throw ShapeError("workspace capacity must be positive", "Model::make_workspace", "");
  ModelWorkspace<T> ws;
  ws.capacity = capacity;
  const auto B = static_cast<size_t>(capacity);
  int max_n = 0;
  for (const auto& r : m_readout_specs) max_n = std::max(max_n, r.n_neurons);
  ws.max_neurons = max_n;
  const auto N = static_cast<size_t>(max_n);
  ws.images = alloc<T>("images", B * static_cast<size_t>(m_height * m_width));
  ws.responses = alloc<T>("responses", B * N);
  size_t max_act = 0, conv_scratch = 0;
  bool any_separable = false;
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
    ws.sep_a.push_back(g.separable ? alloc<T>(p + "sep_a", act) : View1<T>());
    ws.sep_b.push_back(g.separable ? alloc<T>(p + "sep_b", act) : View1<T>());
    any_separable = any_separable || g.separable;
    if (!g.separable) conv_scratch = std::max(conv_scratch, layers::conv2d_workspace_size(conv_shape(l, capacity)));
  }
  ws.readout_h = alloc<T>("readout_h", B * N);
  ws.prediction = alloc<T>("prediction", B * N);
  ReadoutBufferSizes sizes;  // per buffer position, the largest over the readouts
  for (const auto& r : m_readouts) {
    const auto own = r->buffer_sizes(capacity);
    sizes.resize(std::max(sizes.size(), own.size()), 0);
    for (size_t i = 0; i < own.size(); ++i) sizes[i] = std::max(sizes[i], own[i]);
  }
  for (size_t i = 0; i < sizes.size(); ++i)
    ws.readout_buffers.push_back(alloc<T>("readout_buffer" + std::to_string(i), std::max<size_t>(sizes[i], 1)));
  ws.conv_scratch = alloc<T>("conv_scratch", std::max<size_t>(conv_scratch, 1));
  ws.grad_a = alloc<T>("grad_a", max_act);
  ws.grad_b = alloc<T>("grad_b", max_act);
  if (any_separable) {
    ws.grad_c = alloc<T>("grad_c", max_act);
    ws.grad_d = alloc<T>("grad_d", max_act);
  }
  return ws;
}

namespace {
// Shapes of the three convolutions of a depth-separable layer.
layers::Conv2dShape pointwise_shape(int batch, int c_in, int c_out, int h, int w) {
  layers::Conv2dShape s;
  s.B = batch;
  s.C_in = c_in;
  s.C_out = c_out;
  s.H = h;
  s.W = w;
  s.K = 1;
  s.padding = layers::Padding::same;
  return s;
}
layers::DepthwiseConv2dShape depthwise_shape(int batch, int c, int h, int w, int k) {
  layers::DepthwiseConv2dShape s;
  s.B = batch;
  s.C = c;
  s.H = h;
  s.W = w;
  s.K = k;
  s.padding = layers::Padding::same;
  return s;
}
}  // namespace

template <class T>
void Model<T>::core_forward(ModelWorkspace<T>& ws, int batch, bool training) {
  ExecSpace space;
  const bool bn_train = training && !m_core_frozen;
  {
    ScopedRegion region("forward/hermite_synthesis");
    synthesize_filters();  // roteq: once per forward (= per step), for the whole batch
  }
  const T* in = ws.images.data();
  for (int l = 0; l < num_layers(); ++l) {
    const auto& g = m_geometry[static_cast<size_t>(l)];
    const auto& s = m_layers[static_cast<size_t>(l)];
    U4<const T> conv_in(in, batch, g.c_in, g.h_in, g.w_in);
    U4<T> conv_out(ws.conv_out[static_cast<size_t>(l)].data(), batch, g.c_out, g.h_out, g.w_out);
    U4<T> act_out(ws.act_out[static_cast<size_t>(l)].data(), batch, g.c_out, g.h_out, g.w_out);
    {
      ScopedRegion region([l] { return layer_region("forward", l, "conv"); });
      if (g.separable) {
        U4<T> a(ws.sep_a[static_cast<size_t>(l)].data(), batch, g.c_out, g.h_out, g.w_out);
        U4<T> b(ws.sep_b[static_cast<size_t>(l)].data(), batch, g.c_out, g.h_out, g.w_out);
        layers::conv2d_forward<T>(space, pointwise_shape(batch, g.c_in, g.c_out, g.h_in, g.w_in),
                                  m_arena.template param<4>(s.pointwise_in), conv_in, a, ws.conv_scratch);
        layers::depthwise_conv2d_forward<T>(space, depthwise_shape(batch, g.c_out, g.h_out, g.w_out, g.k),
                                            m_arena.template param<4>(s.depthwise), U4<const T>(a), b);
        layers::conv2d_forward<T>(space, pointwise_shape(batch, g.c_out, g.c_out, g.h_out, g.w_out),
                                  m_arena.template param<4>(s.weight), U4<const T>(b), conv_out, ws.conv_scratch);
      } else {
        layers::conv2d_forward<T>(space, conv_shape(l, batch), filter_view(l), conv_in, conv_out, ws.conv_scratch);
      }
    }
    ScopedRegion bn_region([l] { return layer_region("forward", l, "batchnorm_act"); });
    const auto act = to_activation(m_config.core.nonlinearities[static_cast<size_t>(l)]);
    U1<const T> gamma;
    if (s.gamma >= 0) gamma = m_arena.param_flat(s.gamma);
    if (bn_train) {
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
}

template <class T>
void Model<T>::forward(ModelWorkspace<T>& ws, int batch, bool training, int readout) {
  if (batch < 1 || batch > ws.capacity)
    throw ShapeError("batch of " + std::to_string(batch) + " images for a workspace of " +
                         std::to_string(ws.capacity),
                     "Model::forward", "make a workspace with a capacity of at least the batch size");
  if (readout < 0 || readout >= num_readouts())
    throw ShapeError("readout " + std::to_string(readout) + " of " + std::to_string(num_readouts()), "Model::forward",
                     "");
  ExecSpace space;
  core_forward(ws, batch, training);
  ScopedRegion region("forward/readout");
  const T* in = ws.act_out.back().data();
  const auto& g = m_geometry.back();
  const Readout<T>& ro = *m_readouts[static_cast<size_t>(readout)];
  const int N = ro.n_neurons();
  U4<const T> core_out(in, batch, g.c_out, g.h_out, g.w_out);
  U2<T> h(ws.readout_h.data(), batch, N);
  const uint64_t noise_seed = training && ro.draws_noise() ? mix_seed(m_config.train.seed, m_sample_counter++) : 0;
  ro.forward(space, m_arena, ws.readout_buffers, batch, training, noise_seed, core_out, h);
  U2<T> yhat(ws.prediction.data(), batch, N);
  layers::output_nonlinearity_forward<T>(space, output_nonlinearity(), h, yhat);
}

namespace {
layers::PoissonLossOptions loss_options(const ModelConfig& c) {
  layers::PoissonLossOptions o;
  if (c.train.lurz()) o.eps = 1e-12;  // neuralpredictors' PoissonLoss
  return o;
}
}  // namespace

template <class T>
double Model<T>::poisson_eps() const {
  return loss_options(m_config).eps;
}

template <class T>
double Model<T>::poisson_loss(ModelWorkspace<T>& ws, int batch, int readout) const {
  ExecSpace space;
  const int N = m_readout_specs[static_cast<size_t>(readout)].n_neurons;
  U2<const T> h(ws.readout_h.data(), batch, N);
  U2<const T> y(ws.responses.data(), batch, N);
  U2<T> yhat(ws.prediction.data(), batch, N);
  return layers::poisson_loss_forward<T>(space, output_nonlinearity(), loss_options(m_config), h, y, yhat);
}

template <class T>
double Model<T>::core_regularization(bool with_grad) const {
  ExecSpace space;
  const auto& core = m_config.core;
  double total = 0;
  synthesize_filters();  // roteq: the regularisers act on the synthesised filters of all rotations
  for (int l = 0; l < num_layers(); ++l) {
    const auto w = filter_view(l);
    const double ws = core.smooth_weight * core.rel_smooth[static_cast<size_t>(l)];
    const double wg = core.sparse_weight * core.rel_sparse[static_cast<size_t>(l)];
    const double wl = l == 0 ? core.laplace_weight : 0.0;
    if (with_grad) {
      const auto d_w = d_filter_view(l);
      total += layers::conv_smoothness_grad(space, w, ws, d_w);
      total += layers::conv_group_sparsity_grad(space, w, wg, d_w);
      total += layers::laplace_l2_grad(space, w, wl, d_w);
      if (roteq()) {  // the filter gradient (conv + regularisers) into the Hermite coefficients
        ScopedRegion synthesis_region("backward/hermite_synthesis");
        const auto& s = m_layers[static_cast<size_t>(l)];
        layers::hermite_synthesize_backward<T>(space, m_hermite[static_cast<size_t>(l)],
                                               U2<const T>(m_pooled_basis[static_cast<size_t>(l)]), U4<const T>(d_w),
                                               U3<T>(m_arena.template grad<3>(s.coeffs)), U1<T>(m_synth_scratch));
      }
    } else {
      total += layers::conv_smoothness_value(space, w, ws);
      total += layers::conv_group_sparsity_value(space, w, wg);
      total += layers::laplace_l2_value(space, w, wl);
    }
  }
  return total;
}

template <class T>
double Model<T>::readout_regularization(int r, bool with_grad) const {
  return m_readouts[static_cast<size_t>(r)]->regularization(ExecSpace(), m_arena, with_grad);
}

template <class T>
double Model<T>::regularization(int readout) const {
  return (m_core_frozen ? 0.0 : core_regularization(false)) + readout_regularization(readout, false);
}

template <class T>
void Model<T>::core_backward(ModelWorkspace<T>& ws, int batch, bool eval_batchnorm, U4<T> d_images) {
  ExecSpace space;
  const int L = num_layers();
  // The activation gradient alternates between grad_a and grad_b; it starts in grad_a.
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
      U4<const T> conv_out(ws.conv_out[static_cast<size_t>(l)].data(), batch, g.c_out, g.h_out, g.w_out);
      U4<const T> act_out(ws.act_out[static_cast<size_t>(l)].data(), batch, g.c_out, g.h_out, g.w_out);
      if (eval_batchnorm)
        layers::batchnorm_backward_eval<T>(space, bn_shape(l, batch), bn_options(l), act, gamma,
                                           m_arena.param_flat(s.running_mean), m_arena.param_flat(s.running_var),
                                           conv_out, act_out, d_act, d_act, d_gamma, m_arena.grad_flat(s.beta));
      else
        layers::batchnorm_backward_train<T>(space, bn_shape(l, batch), bn_options(l), act, gamma, conv_out, act_out,
                                            ws.bn_mean[static_cast<size_t>(l)], ws.bn_rstd[static_cast<size_t>(l)],
                                            d_act, d_act, d_gamma, m_arena.grad_flat(s.beta));
    }
    ScopedRegion conv_region([l] { return layer_region("backward", l, "conv"); });
    const T* conv_in = l == 0 ? ws.images.data() : ws.act_out[static_cast<size_t>(l - 1)].data();
    // Layer 0's input is the image: a gradient only where d_images is asked for.
    U4<T> d_in = d_images;
    if (l > 0) d_in = U4<T>(d_other, batch, g.c_in, g.h_in, g.w_in);
    if (g.separable) {
      U4<T> d_b(ws.grad_c.data(), batch, g.c_out, g.h_out, g.w_out);
      U4<T> d_a(ws.grad_d.data(), batch, g.c_out, g.h_out, g.w_out);
      U4<const T> a(ws.sep_a[static_cast<size_t>(l)].data(), batch, g.c_out, g.h_out, g.w_out);
      U4<const T> b(ws.sep_b[static_cast<size_t>(l)].data(), batch, g.c_out, g.h_out, g.w_out);
      layers::conv2d_backward<T>(space, pointwise_shape(batch, g.c_out, g.c_out, g.h_out, g.w_out),
                                 m_arena.template param<4>(s.weight), b, d_act, d_b,
                                 m_arena.template grad<4>(s.weight), ws.conv_scratch);
      layers::depthwise_conv2d_backward<T>(space, depthwise_shape(batch, g.c_out, g.h_out, g.w_out, g.k),
                                           m_arena.template param<4>(s.depthwise), a, U4<const T>(d_b), d_a,
                                           m_arena.template grad<4>(s.depthwise));
      layers::conv2d_backward<T>(space, pointwise_shape(batch, g.c_in, g.c_out, g.h_in, g.w_in),
                                 m_arena.template param<4>(s.pointwise_in),
                                 U4<const T>(conv_in, batch, g.c_in, g.h_in, g.w_in), U4<const T>(d_a), d_in,
                                 m_arena.template grad<4>(s.pointwise_in), ws.conv_scratch);
    } else {
      layers::conv2d_backward<T>(space, conv_shape(l, batch), filter_view(l),
                                 U4<const T>(conv_in, batch, g.c_in, g.h_in, g.w_in), d_act, d_in, d_filter_view(l),
                                 ws.conv_scratch);
    }
    std::swap(d_cur, d_other);
  }
}

template <class T>
void Model<T>::readout_backward(ModelWorkspace<T>& ws, int batch, int readout, bool training, bool force_d_core) {
  const Readout<T>& ro = *m_readouts[static_cast<size_t>(readout)];
  U2<const T> d_h(ws.readout_h.data(), batch, ro.n_neurons());
  // The gradient into the last core layer's output (grad_a), unless the core is frozen.
  const auto& last = m_geometry.back();
  U4<const T> core_out(ws.act_out.back().data(), batch, last.c_out, last.h_out, last.w_out);
  U4<T> d_core;
  if (!m_core_frozen || force_d_core) d_core = U4<T>(ws.grad_a.data(), batch, last.c_out, last.h_out, last.w_out);
  ro.backward(ExecSpace(), m_arena, ws.readout_buffers, batch, training, core_out, d_h, d_core);
}

template <class T>
double Model<T>::backward(ModelWorkspace<T>& ws, int batch, int readout, double loss_weight) {
  ExecSpace space;
  const int N = m_readout_specs[static_cast<size_t>(readout)].n_neurons;
  // Output nonlinearity + Poisson loss: d_h overwrites h (allowed to alias).
  U2<T> d_h(ws.readout_h.data(), batch, N);
  {
    ScopedRegion region("backward/loss");
    layers::poisson_loss_backward<T>(space, output_nonlinearity(), loss_options(m_config), d_h,
                                     U2<const T>(ws.responses.data(), batch, N), d_h, loss_weight);
  }
  {
    ScopedRegion region("backward/readout");
    readout_backward(ws, batch, readout, true, false);
  }
  double total = 0;
  {
    ScopedRegion region("backward/regularizers");
    total += readout_regularization(readout, true);
  }
  if (!m_core_frozen) {
    core_backward(ws, batch);
    ScopedRegion region("backward/regularizers");
    total += core_regularization(true);
  }
  return total;
}

template <class T>
void Model<T>::input_gradient(ModelWorkspace<T>& ws, int batch, View1<const T> d_prediction, View1<T> d_images,
                              int readout) {
  if (readout < 0 || readout >= num_readouts())
    throw ShapeError("readout " + std::to_string(readout) + " of a model with " + std::to_string(num_readouts()) +
                         " readouts",
                     "Model::input_gradient", "pass a readout index in [0, num_readouts)");
  if (batch < 1 || batch > ws.capacity)
    throw ShapeError("batch of " + std::to_string(batch) + " images for a workspace of " +
                         std::to_string(ws.capacity),
                     "Model::input_gradient", "make a workspace with a capacity of at least the batch size");
  const int N = m_readout_specs[static_cast<size_t>(readout)].n_neurons;
  const auto n_out = static_cast<size_t>(batch) * static_cast<size_t>(N);
  const auto n_in = static_cast<size_t>(batch) * static_cast<size_t>(m_height * m_width);
  if (d_prediction.extent(0) < n_out || d_images.extent(0) < n_in)
    throw ShapeError("d_prediction holds " + std::to_string(d_prediction.extent(0)) + " and d_images " +
                         std::to_string(d_images.extent(0)) + " values; batch x neurons = " + std::to_string(n_out) +
                         " and batch x H x W = " + std::to_string(n_in) + " are needed",
                     "Model::input_gradient", "size them for the batch and readout");
  ExecSpace space;
  U2<T> d_h(ws.readout_h.data(), batch, N);  // h in, d_h out
  layers::output_nonlinearity_backward<T>(space, output_nonlinearity(), d_h,
                                          U2<const T>(d_prediction.data(), batch, N), d_h);
  readout_backward(ws, batch, readout, false, true);
  core_backward(ws, batch, true, U4<T>(d_images.data(), batch, 1, m_height, m_width));
  m_arena.zero_grad(space);
}

template class Model<float>;
template class Model<double>;

}  // namespace v1sysid
