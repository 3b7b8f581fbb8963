#include "train/trainer.hpp"

#include "train/schedule.hpp"
#include "train/train_state.hpp"

#include "core/error.hpp"
#include "core/profiling.hpp"
#include "core/progress.hpp"
#include "metrics/metrics.hpp"
#include "optim/adam.hpp"

#include <algorithm>

#include <limits>
#include <cmath>
#include <sstream>

namespace v1sysid {

namespace {

// dst[k * row_len + j] = src[rows[k] * row_len + j] for k < count: the rows of one minibatch.
void gather_rows(View1<const Real> src, View1<const int64_t> rows, int64_t count, int64_t row_len, View1<Real> dst) {
  Kokkos::parallel_for(
      "v1sysid::train::gather_rows", Kokkos::RangePolicy<ExecSpace, Kokkos::IndexType<int64_t>>(0, count * row_len),
      KOKKOS_LAMBDA(int64_t i) {
        const int64_t k = i / row_len;
        dst(i) = src(rows(k) * row_len + (i - k * row_len));
      });
}

// Copies rows[first, first + count) into the staging pair and gathers images (and responses) of those rows.
void stage_batch(const TrainingData& data, IndexStaging& staging, const int64_t* rows, int64_t count,
                 ModelWorkspace<Real>& ws, bool with_responses) {
  for (int64_t k = 0; k < count; ++k) staging.host(k) = rows[k];
  Kokkos::deep_copy(staging.device, staging.host);
  gather_rows(data.images, staging.device, count, data.height * data.width, ws.images);
  if (with_responses) gather_rows(data.responses, staging.device, count, data.n_neurons, ws.responses);
}

View1<Real> upload(const std::vector<float>& host, const std::string& label) {
  View1<Real> v(Kokkos::view_alloc(Kokkos::WithoutInitializing, label), host.size());
  auto mirror = Kokkos::create_mirror_view(v);
  for (size_t i = 0; i < host.size(); ++i) mirror(i) = static_cast<Real>(host[i]);
  Kokkos::deep_copy(v, mirror);
  return v;
}

}  // namespace

IndexStaging::IndexStaging(int capacity)
    : device(Kokkos::view_alloc(Kokkos::WithoutInitializing, "v1sysid::train::batch_rows"),
             static_cast<size_t>(capacity)),
      host(Kokkos::create_mirror_view(device)) {}

TrainingData prepare_training_data(const Dataset& d, const Preprocessing& p) {
  TrainingData t;
  t.n_trials = d.n_trials;
  t.height = d.height;
  t.width = d.width;
  t.n_neurons = d.n_neurons;
  std::vector<float> images;
  apply_preprocessing(p, d, images, t.host_responses);
  t.images = upload(images, "v1sysid::train::images");
  t.responses = upload(t.host_responses, "v1sysid::train::responses");
  t.train_rows = d.indices(Tier::train);
  t.validation_rows = d.indices(Tier::validation);
  t.test_rows = d.indices(Tier::test);
  t.source = d.source;
  for (size_t at = 0; at < d.responses.size(); ++at) {
    if (!(d.responses[at] < 0.0f)) continue;
    if (t.negative_responses++ > 0) continue;
    const auto trial = static_cast<int64_t>(at) / d.n_neurons;
    std::ostringstream first;
    first << "trial " << trial << " (tier " << tier_name(d.tiers[static_cast<size_t>(trial)]) << "), neuron "
          << static_cast<int64_t>(at) % d.n_neurons << ": " << d.responses[at];
    t.first_negative = first.str();
  }
  return t;
}

std::vector<double> mean_response(const TrainingData& data, const std::vector<int64_t>& rows) {
  std::vector<double> mean(static_cast<size_t>(data.n_neurons), 0.0);
  for (int64_t r : rows)
    for (int64_t n = 0; n < data.n_neurons; ++n)
      mean[static_cast<size_t>(n)] += data.host_responses[static_cast<size_t>(r * data.n_neurons + n)];
  for (auto& m : mean) m /= static_cast<double>(std::max<size_t>(rows.size(), 1));
  return mean;
}

double evaluation_loss(Model<Real>& model, ModelWorkspace<Real>& ws, IndexStaging& staging,
                       const TrainingData& data, const std::vector<int64_t>& rows, int readout) {
  if (rows.empty()) throw DataError("the validation tier is empty", "the dataset", "give tier 'validation' rows");
  double total = 0;  // sum over trials of the per-trial loss
  const auto n = static_cast<int64_t>(rows.size());
  for (int64_t first = 0; first < n; first += ws.capacity) {
    const int64_t count = std::min<int64_t>(ws.capacity, n - first);
    stage_batch(data, staging, rows.data() + first, count, ws, true);
    model.forward(ws, static_cast<int>(count), false, readout);
    total += model.poisson_loss(ws, static_cast<int>(count), readout) * static_cast<double>(count);
  }
  return total / static_cast<double>(n);
}

std::vector<float> predict_rows(Model<Real>& model, ModelWorkspace<Real>& ws, IndexStaging& staging,
                                const TrainingData& data, const std::vector<int64_t>& rows, int readout) {
  const auto n = static_cast<int64_t>(rows.size());
  const int64_t N = data.n_neurons;
  std::vector<float> out(static_cast<size_t>(n * N));
  auto host_prediction = Kokkos::create_mirror_view(ws.prediction);
  for (int64_t first = 0; first < n; first += ws.capacity) {
    const int64_t count = std::min<int64_t>(ws.capacity, n - first);
    stage_batch(data, staging, rows.data() + first, count, ws, false);
    model.forward(ws, static_cast<int>(count), false, readout);
    Kokkos::deep_copy(host_prediction, ws.prediction);
    for (int64_t i = 0; i < count * N; ++i) out[static_cast<size_t>(first * N + i)] = host_prediction(i);
  }
  return out;
}

double mean_correlation(Model<Real>& model, ModelWorkspace<Real>& ws, IndexStaging& staging,
                        const TrainingData& data, const std::vector<int64_t>& rows, int readout, double* sum) {
  const auto predictions = predict_rows(model, ws, staging, data, rows, readout);
  const int64_t N = data.n_neurons, T = static_cast<int64_t>(rows.size());
  std::vector<float> responses(static_cast<size_t>(T * N));
  for (int64_t t = 0; t < T; ++t)
    std::copy_n(data.host_responses.begin() + rows[static_cast<size_t>(t)] * N, N, responses.begin() + t * N);
  const auto r = metrics::pearson_per_neuron(metrics::ConstMatrix<float>(predictions, T, N, "predictions"),
                                             metrics::ConstMatrix<float>(responses, T, N, "responses"));
  double total = 0;
  for (double v : r) total += v;
  if (sum) *sum = total;
  return total / static_cast<double>(N);
}

Trainer::Trainer(Model<Real>& model, const TrainingData& data, const Batcher& batcher)
    : Trainer(model, std::vector<const TrainingData*>{&data}, std::vector<Batcher>{batcher}) {}

namespace {
int max_batch(const std::vector<Batcher>& b) {
  int m = 1;
  for (const auto& x : b) m = std::max(m, x.batch_size());
  return m;
}
}  // namespace

Trainer::Trainer(Model<Real>& model, std::vector<const TrainingData*> datas, std::vector<Batcher> batchers)
    : m_model(model), m_datas(std::move(datas)), m_batchers(std::move(batchers)),
      m_data(*m_datas.at(0)),
      m_train_ws(model.make_workspace(max_batch(m_batchers))),
      m_eval_ws(model.make_workspace(model.config().train.eval_batch_size)),
      m_train_index(max_batch(m_batchers)), m_eval_index(model.config().train.eval_batch_size),
      m_frozen_core_slots(slot_mask_with_prefix(model.arena().slots(), "core/")) {
  if (m_datas.size() != static_cast<size_t>(model.num_readouts()) || m_batchers.size() != m_datas.size())
    throw ShapeError(std::to_string(m_datas.size()) + " datasets and " + std::to_string(m_batchers.size()) +
                         " batchers for a model with " + std::to_string(model.num_readouts()) + " readouts",
                     "Trainer", "pass one dataset and one batcher per readout");
  for (size_t k = 0; k < m_datas.size(); ++k) {
    const auto& data = *m_datas[k];
    const int n = model.readout_spec(static_cast<int>(k)).n_neurons;
    if (data.height != model.height() || data.width != model.width() || data.n_neurons != n)
      throw ShapeError("the model expects " + std::to_string(model.height()) + " x " + std::to_string(model.width()) +
                           " images and " + std::to_string(n) + " neurons, the data has " +
                           std::to_string(data.height) + " x " + std::to_string(data.width) + " and " +
                           std::to_string(data.n_neurons),
                       "Trainer", "build the model for this dataset");
    // Preprocessing clips negative responses at 0, so without this check they would train silently.
    if (data.negative_responses > 0)
      throw DataError(std::to_string(data.negative_responses) + " negative responses (the first: " +
                          data.first_negative + "); the Poisson loss needs non-negative spike counts or rates",
                      data.source,
                      "store raw responses (not z-scored or baseline-subtracted); clip small negative values "
                      "from deconvolution at 0 before saving if that is what they are");
  }
}

double Trainer::step(double lr) {
  ExecSpace space;
  const bool lurz = m_model.config().train.lurz();
  m_model.arena().zero_grad(space);
  double total = 0;
  for (size_t k = 0; k < m_datas.size(); ++k) {
    const auto& rows = m_batchers[k].next();
    const auto b = static_cast<int>(rows.size());
    const int r = static_cast<int>(k);
    {
      ScopedRegion region("step/gather");
      stage_batch(*m_datas[k], m_train_index, rows.data(), b, m_train_ws, true);
    }
    {
      ScopedRegion region("step/forward");
      m_model.forward(m_train_ws, b, true, r);
    }
    // lurz: sqrt(n / B) * sum_{b,n} = sqrt(n / B) * B * (the model's batch mean)
    const double weight = lurz ? std::sqrt(double(m_datas[k]->n_trials) / b) * b : 1.0;
    double poisson = 0;
    {
      ScopedRegion region("step/loss");
      poisson = m_model.poisson_loss(m_train_ws, b, r) * weight;
    }
    ScopedRegion region("step/backward");
    total += poisson + m_model.backward(m_train_ws, b, r, weight);
  }
  ScopedRegion region("step/adam");
  AdamConfig adam;
  adam.learning_rate = lr;
  adam_step(space, m_model.arena(), adam, m_model.core_frozen() ? m_frozen_core_slots : m_no_frozen_slots);
  return total;
}

double Trainer::validation_loss() {
  double total = 0;
  for (size_t k = 0; k < m_datas.size(); ++k)
    total += evaluation_loss(m_model, m_eval_ws, m_eval_index, *m_datas[k], m_datas[k]->validation_rows,
                             static_cast<int>(k));
  return total / static_cast<double>(m_datas.size());
}

double Trainer::validation_correlation() {
  int64_t total_neurons = 0;
  double sum_all = 0;
  for (size_t k = 0; k < m_datas.size(); ++k) {
    double sum = 0;
    mean_correlation(m_model, m_eval_ws, m_eval_index, *m_datas[k], m_datas[k]->validation_rows, static_cast<int>(k),
                     &sum);
    sum_all += sum;
    total_neurons += m_datas[k]->n_neurons;
  }
  return sum_all / static_cast<double>(total_neurons);
}

int64_t Trainer::steps_per_epoch() const {
  int64_t steps = 1;
  for (const auto& b : m_batchers)
    steps = std::max<int64_t>(steps, static_cast<int64_t>(b.rows().size()) / b.batch_size());
  return steps;
}

namespace {
// A device or host view (the snapshot) as a host vector.
template <class View>
std::vector<Real> to_host_vector(const View& v) {
  auto host = Kokkos::create_mirror_view_and_copy(HostSpace(), v);
  return std::vector<Real>(host.data(), host.data() + host.extent(0));
}
HostView1<Real> host_view(const std::vector<Real>& v, const char* label) {
  HostView1<Real> out(Kokkos::view_alloc(Kokkos::WithoutInitializing, std::string(label)), v.size());
  std::copy(v.begin(), v.end(), out.data());
  return out;
}
}  // namespace

void Trainer::capture_state(TrainState& state) const {
  const auto& arena = m_model.arena();
  state.params = to_host_vector(arena.params());
  state.adam_m = to_host_vector(arena.adam_m());
  state.adam_v = to_host_vector(arena.adam_v());
  state.adam_step = arena.adam_step();
  state.has_snapshot = arena.has_snapshot();
  if (state.has_snapshot) {
    const auto& s = arena.last_snapshot();
    state.snapshot_params = to_host_vector(s.params);
    state.snapshot_adam_m = to_host_vector(s.adam_m);
    state.snapshot_adam_v = to_host_vector(s.adam_v);
    state.snapshot_adam_step = s.adam_step;
  }
  state.sample_counter = m_model.sample_counter();
  state.batchers.clear();
  for (const auto& b : m_batchers) state.batchers.push_back(b.state());
}

void Trainer::restore_state(const TrainState& state, const std::string& origin) {
  auto& arena = m_model.arena();
  const size_t n = arena.size();
  auto fits = [n](const std::vector<Real>& v) { return v.size() == n; };
  if (!fits(state.params) || !fits(state.adam_m) || !fits(state.adam_v) || state.adam_step < 0 ||
      state.snapshot_adam_step < 0 ||
      (state.has_snapshot && (!fits(state.snapshot_params) || !fits(state.snapshot_adam_m) || !fits(state.snapshot_adam_v))))
    throw DataError("the state holds " + std::to_string(state.params.size()) + " parameters, the model " +
                        std::to_string(n),
                    origin, "remove the state file to train from the start");
  if (state.batchers.size() != m_batchers.size())
    throw DataError("the state has " + std::to_string(state.batchers.size()) + " minibatch streams, the run " +
                        std::to_string(m_batchers.size()) + " datasets",
                    origin, "remove the state file to train from the start");
  std::vector<Batcher> batchers = m_batchers;  // restored on copies, so that a bad state changes nothing
  for (size_t k = 0; k < batchers.size(); ++k) batchers[k].restore(state.batchers[k], origin);
  Kokkos::deep_copy(arena.params(), host_view(state.params, "v1sysid::resume::params"));
  Kokkos::deep_copy(arena.adam_m(), host_view(state.adam_m, "v1sysid::resume::adam_m"));
  Kokkos::deep_copy(arena.adam_v(), host_view(state.adam_v, "v1sysid::resume::adam_v"));
  arena.set_adam_step(state.adam_step);
  if (state.has_snapshot) {
    ParamArena<Real>::HostSnapshot s;
    s.params = host_view(state.snapshot_params, "v1sysid::resume::snapshot_params");
    s.adam_m = host_view(state.snapshot_adam_m, "v1sysid::resume::snapshot_adam_m");
    s.adam_v = host_view(state.snapshot_adam_v, "v1sysid::resume::snapshot_adam_v");
    s.adam_step = state.snapshot_adam_step;
    arena.set_snapshot(s);
  }
  m_model.set_sample_counter(state.sample_counter);
  m_batchers = std::move(batchers);
}

TrainResult Trainer::run(bool show_progress, const std::string& progress_label, double progress_interval_s) {
  ScheduleControl control;
  control.show_progress = show_progress;
  control.progress_label = progress_label;
  control.progress_interval_s = progress_interval_s;
  return make_schedule(m_model.config().train)->run(*this, control);
}

}  // namespace v1sysid
