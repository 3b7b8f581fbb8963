#include "train/train_state_file.hpp"

#include "core/error.hpp"
#include "io/h5.hpp"

namespace v1sysid {

namespace {

constexpr const char* kFormat = "v1sysid-train-state";

void write_vector(h5::File& f, const std::string& name, const std::vector<Real>& v) {
  f.write(name, v, h5::Shape{v.size()});
}

// The scalars of ScheduleState by name, so that writing and reading list them once.
template <class Visit> void schedule_scalars(ScheduleState& s, Visit&& visit) {
  visit("learning_rate", s.learning_rate);
  visit("iteration", s.iteration);
  visit("epoch_step", s.epoch_step);
  visit("steps", s.steps);
  visit("best_iteration", s.best_iteration);
  visit("best", s.best);
  visit("best_val_loss", s.best_val_loss);
  visit("plateau_best", s.plateau_best);
  visit("bad", s.bad);
  visit("plateau_bad", s.plateau_bad);
  visit("round", s.round);
  visit("train_loss", s.train_loss);
  visit("last_val", s.last_val);
  visit("elapsed_seconds", s.elapsed_seconds);
}

}  // namespace

void save_train_state(const std::string& path, const TrainState& state) {
  h5::File f = h5::File::create(path, /*force=*/true);
  f.write_attribute("/", "format", kFormat);
  f.write_attribute("/", "format_version", kTrainStateFormatVersion);
  f.write_attribute("/", "identity", state.identity);
  f.write_attribute("/", "schedule", state.schedule.schedule);
  write_vector(f, "arena/params", state.params);
  write_vector(f, "arena/adam_m", state.adam_m);
  write_vector(f, "arena/adam_v", state.adam_v);
  f.write_scalar<int64_t>("arena/adam_step", state.adam_step);
  if (state.has_snapshot) {
    write_vector(f, "snapshot/params", state.snapshot_params);
    write_vector(f, "snapshot/adam_m", state.snapshot_adam_m);
    write_vector(f, "snapshot/adam_v", state.snapshot_adam_v);
    f.write_scalar<int64_t>("snapshot/adam_step", state.snapshot_adam_step);
  }
  f.write_scalar<uint64_t>("model/sample_counter", state.sample_counter);
  f.write_scalar<int64_t>("batchers/count", static_cast<int64_t>(state.batchers.size()));
  for (size_t k = 0; k < state.batchers.size(); ++k) {
    const BatcherState& b = state.batchers[k];
    const std::string g = "batchers/" + std::to_string(k) + "/";
    f.write(g + "epoch", b.epoch, h5::Shape{b.epoch.size()});
    f.write_scalar<int64_t>(g + "position", b.position);
    f.write_scalar<int64_t>(g + "epochs", b.epochs);
    f.write_scalar<uint64_t>(g + "rng_state", b.rng_state);
  }
  ScheduleState s = state.schedule;
  schedule_scalars(s, [&](const char* name, auto& value) {
    f.write_scalar<std::decay_t<decltype(value)>>(std::string("schedule/") + name, value);
  });
  f.write_scalar<int64_t>("schedule/finished", s.finished ? 1 : 0);
  const auto n = s.curve.size();
  std::vector<int64_t> iteration(n), step(n);
  std::vector<double> train_loss(n), val_loss(n), learning_rate(n), val_correlation(n);
  for (size_t i = 0; i < n; ++i) {
    const ValidationPoint& p = s.curve[i];
    iteration[i] = p.iteration;
    step[i] = p.step;
    train_loss[i] = p.train_loss;
    val_loss[i] = p.val_loss;
    learning_rate[i] = p.learning_rate;
    val_correlation[i] = p.val_correlation;
  }
  f.write("schedule/curve/iteration", iteration, h5::Shape{n});
  f.write("schedule/curve/step", step, h5::Shape{n});
  f.write("schedule/curve/train_loss", train_loss, h5::Shape{n});
  f.write("schedule/curve/val_loss", val_loss, h5::Shape{n});
  f.write("schedule/curve/learning_rate", learning_rate, h5::Shape{n});
  f.write("schedule/curve/val_correlation", val_correlation, h5::Shape{n});
  f.commit();
}

TrainState load_train_state(const std::string& path) {
  const h5::File f = h5::File::open(path);
  const std::string fix = "remove the file to train from the start (it is rewritten as training goes on)";
  if (!f.has_attribute("/", "format") || f.read_attribute_string("/", "format") != kFormat)
    throw DataError("not a v1sysid training state (root attribute format is not '" + std::string(kFormat) + "')",
                    path + ": /format", fix);
  const int64_t version = f.read_attribute_int("/", "format_version");
  if (version != kTrainStateFormatVersion)
    throw DataError("training state format " + std::to_string(version) + ", this build reads format " +
                        std::to_string(kTrainStateFormatVersion),
                    path + ": /format_version", fix);
  TrainState state;
  state.identity = f.read_attribute_string("/", "identity");
  state.schedule.schedule = f.read_attribute_string("/", "schedule");
  state.params = f.read<Real>("arena/params");
  state.adam_m = f.read<Real>("arena/adam_m");
  state.adam_v = f.read<Real>("arena/adam_v");
  state.adam_step = f.read_scalar<int64_t>("arena/adam_step");
  state.has_snapshot = f.exists("snapshot");
  if (state.has_snapshot) {
    state.snapshot_params = f.read<Real>("snapshot/params");
    state.snapshot_adam_m = f.read<Real>("snapshot/adam_m");
    state.snapshot_adam_v = f.read<Real>("snapshot/adam_v");
    state.snapshot_adam_step = f.read_scalar<int64_t>("snapshot/adam_step");
  }
  state.sample_counter = f.read_scalar<uint64_t>("model/sample_counter");
  const int64_t batchers = f.read_scalar<int64_t>("batchers/count");
  if (batchers < 0 || batchers > 1000000)
    throw DataError("batchers/count is " + std::to_string(batchers), path + ": batchers/count", fix);
  for (int64_t k = 0; k < batchers; ++k) {
    const std::string g = "batchers/" + std::to_string(k) + "/";
    BatcherState b;
    b.epoch = f.read<int64_t>(g + "epoch");
    b.position = f.read_scalar<int64_t>(g + "position");
    b.epochs = f.read_scalar<int64_t>(g + "epochs");
    b.rng_state = f.read_scalar<uint64_t>(g + "rng_state");
    state.batchers.push_back(std::move(b));
  }
  ScheduleState& s = state.schedule;
  schedule_scalars(s, [&](const char* name, auto& value) {
    value = f.read_scalar<std::decay_t<decltype(value)>>(std::string("schedule/") + name);
  });
  s.finished = f.read_scalar<int64_t>("schedule/finished") != 0;
  const auto iteration = f.read<int64_t>("schedule/curve/iteration");
  const auto step = f.read<int64_t>("schedule/curve/step");
  const auto train_loss = f.read<double>("schedule/curve/train_loss");
  const auto val_loss = f.read<double>("schedule/curve/val_loss");
  const auto learning_rate = f.read<double>("schedule/curve/learning_rate");
  const auto val_correlation = f.read<double>("schedule/curve/val_correlation");
  const size_t n = iteration.size();
  if (step.size() != n || train_loss.size() != n || val_loss.size() != n || learning_rate.size() != n ||
      val_correlation.size() != n)
    throw DataError("the datasets of schedule/curve differ in length", path + ": schedule/curve", fix);
  for (size_t i = 0; i < n; ++i)
    s.curve.push_back({iteration[i], step[i], train_loss[i], val_loss[i], learning_rate[i], val_correlation[i]});
  return state;
}

}  // namespace v1sysid
