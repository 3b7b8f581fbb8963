#include "model/model.hpp"

#include "core/error.hpp"
#include "core/profiling.hpp"
#include "core/random.hpp"

#include <algorithm>

namespace v1sysid {

namespace {

constexpr uint64_t kStreamInit = 3;

using namespace model_views;

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

void check_readout_specs(const std::vector<ReadoutSpec>& readouts, int height, int width) {
  if (readouts.empty()) throw ShapeError("the model needs at least one readout", "Model", "pass one dataset");
  for (size_t r = 0; r < readouts.size(); ++r) {
    if (readouts.size() > 1 && readouts[r].key.empty())
      throw ShapeError("readout " + std::to_string(r) + " has an empty data_key", "Model",
                       "give every dataset of a multi-dataset model a distinct data_key");
    for (size_t q = 0; q < r; ++q)
      if (readouts[q].key == readouts[r].key)
        throw ShapeError("two datasets share the data_key '" + readouts[r].key + "'", "Model",
                         "pass each dataset once, or rename one file (the key is the file name stem)");
  }
  const int n_neurons = readouts.front().n_neurons;
  if (height < 1 || width < 1 || n_neurons < 1)
    throw ShapeError("the model needs images of at least 1 x 1 pixel and at least one neuron, got " +
                         std::to_string(height) + " x " + std::to_string(width) + " and " +
                         std::to_string(n_neurons) + " neurons",
                     "the dataset", "check the dataset");
}

}  // namespace

template <class T>
Model<T>::Model(ModelConfig config, int height, int width, int n_neurons)
    : Model(std::move(config), height, width, std::vector<ReadoutSpec>{ReadoutSpec{"", n_neurons}}) {}

template <class T>
Model<T>::Model(ModelConfig config, int height, int width, std::vector<ReadoutSpec> readouts)
    : m_config(std::move(config)), m_height(height), m_width(width), m_arena("v1sysid::model::arena") {
  check_readout_specs(readouts, height, width);
  m_core = make_core<T>(m_config.core, height, width);
  m_core->add_slots(m_arena);
  const auto& out = m_core->output_geometry();
  for (const auto& spec : readouts) {
    if (spec.n_neurons < 1)
      throw ShapeError("readout '" + spec.key + "' has no neurons", "Model", "check the dataset");
    m_readouts.push_back(
        make_readout<T>(m_config.readout, ReadoutPlace{spec.key, spec.n_neurons, out.c_out, out.h_out, out.w_out}));
    m_readouts.back()->add_slots(m_arena);
  }
  m_readout_specs = std::move(readouts);
  // Every readout of a model is of config.readout.kind, so they share one output nonlinearity.
  m_encoder = Encoder(m_readouts.front()->output_nonlinearity(), m_config.train);
  m_arena.allocate();
  m_core->allocate_buffers();
}

template <class T>
int Model<T>::readout_index(const std::string& key) const {
  for (size_t r = 0; r < m_readout_specs.size(); ++r)
    if (m_readout_specs[r].key == key) return static_cast<int>(r);
  throw ShapeError("the model has no readout for data_key '" + key + "'", "Model",
                   "pass a dataset the model was trained on");
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
  m_core->initialize(m_arena, rng);
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
ModelWorkspace<T> Model<T>::make_workspace(int capacity) const {
  if (capacity < 1) throw ShapeError("workspace capacity must be positive", "Model::make_workspace", "");
  ModelWorkspace<T> ws;
  ws.capacity = capacity;
  const auto B = static_cast<size_t>(capacity);
  for (const auto& r : m_readout_specs) ws.max_neurons = std::max(ws.max_neurons, r.n_neurons);
  const auto N = static_cast<size_t>(ws.max_neurons);
  ws.images = model_buffer<T>("images", B * static_cast<size_t>(m_height * m_width));
  ws.responses = model_buffer<T>("responses", B * N);
  ws.core = m_core->make_workspace(capacity, m_conv_algorithm);
  ws.readout_h = model_buffer<T>("readout_h", B * N);
  ws.prediction = model_buffer<T>("prediction", B * N);
  ReadoutBufferSizes sizes;  // per buffer position, the largest over the readouts
  for (const auto& r : m_readouts) {
    const auto own = r->buffer_sizes(capacity);
    sizes.resize(std::max(sizes.size(), own.size()), 0);
    for (size_t i = 0; i < own.size(); ++i) sizes[i] = std::max(sizes[i], own[i]);
  }
  for (size_t i = 0; i < sizes.size(); ++i)
    ws.readout_buffers.push_back(model_buffer<T>("readout_buffer" + std::to_string(i), std::max<size_t>(sizes[i], 1)));
  return ws;
}

template <class T>
void Model<T>::check_readout(int r, int batch, const ModelWorkspace<T>& ws, const char* where) const {
  if (r < 0 || r >= num_readouts())
    throw ShapeError("readout " + std::to_string(r) + " of a model with " + std::to_string(num_readouts()) +
                         " readouts",
                     where, "pass a readout index in [0, num_readouts)");
  if (batch < 1 || batch > ws.capacity)
    throw ShapeError("batch of " + std::to_string(batch) + " images for a workspace of " +
                         std::to_string(ws.capacity),
                     where, "make a workspace with a capacity of at least the batch size");
}

template <class T>
void Model<T>::forward(ModelWorkspace<T>& ws, int batch, bool training, int readout) {
  check_readout(readout, batch, ws, "Model::forward");
  ExecSpace space;
  const bool batchnorm_train = training && !m_core_frozen;
  m_core->forward(space, m_arena, ws.core, batch, batchnorm_train, m_conv_algorithm, ws.images.data());
  ScopedRegion region("forward/readout");
  const auto& g = m_core->output_geometry();
  const Readout<T>& ro = *m_readouts[static_cast<size_t>(readout)];
  const int N = ro.n_neurons();
  U4<const T> core_out(ws.core.act_out.back().data(), batch, g.c_out, g.h_out, g.w_out);
  U2<T> h(ws.readout_h.data(), batch, N);
  const uint64_t noise_seed = training && ro.draws_noise() ? mix_seed(m_config.train.seed, m_sample_counter++) : 0;
  ro.forward(space, m_arena, ws.readout_buffers, batch, training, noise_seed, core_out, h);
  m_encoder.forward<T>(space, h, U2<T>(ws.prediction.data(), batch, N));
}

template <class T>
double Model<T>::poisson_loss(ModelWorkspace<T>& ws, int batch, int readout) const {
  const int N = m_readout_specs[static_cast<size_t>(readout)].n_neurons;
  return m_encoder.loss_value<T>(ExecSpace(), U2<const T>(ws.readout_h.data(), batch, N),
                                 U2<const T>(ws.responses.data(), batch, N), U2<T>(ws.prediction.data(), batch, N));
}

template <class T>
double Model<T>::regularization(int readout) const {
  const ExecSpace space;
  const double core = m_core_frozen ? 0.0 : m_core->regularization(space, m_arena, false);
  return core + m_readouts[static_cast<size_t>(readout)]->regularization(space, m_arena, false);
}

template <class T>
void Model<T>::readout_backward(ModelWorkspace<T>& ws, int batch, int readout, bool training, bool force_d_core) {
  const Readout<T>& ro = *m_readouts[static_cast<size_t>(readout)];
  U2<const T> d_h(ws.readout_h.data(), batch, ro.n_neurons());
  // The gradient into the last core layer's output (grad_a), unless the core is frozen.
  const auto& g = m_core->output_geometry();
  U4<const T> core_out(ws.core.act_out.back().data(), batch, g.c_out, g.h_out, g.w_out);
  U4<T> d_core;
  if (!m_core_frozen || force_d_core) d_core = U4<T>(ws.core.grad_a.data(), batch, g.c_out, g.h_out, g.w_out);
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
    m_encoder.loss_backward<T>(space, d_h, U2<const T>(ws.responses.data(), batch, N), d_h, loss_weight);
  }
  {
    ScopedRegion region("backward/readout");
    readout_backward(ws, batch, readout, true, false);
  }
  double total = 0;
  {
    ScopedRegion region("backward/regularizers");
    total += m_readouts[static_cast<size_t>(readout)]->regularization(space, m_arena, true);
  }
  if (!m_core_frozen) {
    m_core->backward(space, m_arena, ws.core, batch, false, m_conv_algorithm, ws.images.data(), {});
    ScopedRegion region("backward/regularizers");
    total += m_core->regularization(space, m_arena, true);
  }
  return total;
}

template <class T>
void Model<T>::input_gradient(ModelWorkspace<T>& ws, int batch, View1<const T> d_prediction, View1<T> d_images,
                              int readout) {
  check_readout(readout, batch, ws, "Model::input_gradient");
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
  m_encoder.backward<T>(space, d_h, U2<const T>(d_prediction.data(), batch, N), d_h);
  readout_backward(ws, batch, readout, false, true);
  m_core->backward(space, m_arena, ws.core, batch, true, m_conv_algorithm, ws.images.data(),
                   U4<T>(d_images.data(), batch, 1, m_height, m_width));
  m_arena.zero_grad(space);
}

template class Model<float>;
template class Model<double>;

}  // namespace v1sysid
