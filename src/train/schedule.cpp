#include "train/schedule.hpp"

#include "core/error.hpp"
#include "core/progress.hpp"
#include "train/early_stopping.hpp"

#include <chrono>
#include <cmath>
#include <limits>
#include <sstream>

namespace v1sysid {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Saves a state through control.save_state every save_interval_s seconds (due()) and on request (now()).
class StateSaver {
 public:
  StateSaver(const ScheduleControl& control) : m_control(control), m_last(std::chrono::steady_clock::now()) {}
  bool enabled() const { return static_cast<bool>(m_control.save_state); }
  bool due() const { return enabled() && seconds_since(m_last) >= m_control.save_interval_s; }
  void save(const ScheduleState& s) {
    m_control.save_state(s);
    m_last = std::chrono::steady_clock::now();
  }

 private:
  const ScheduleControl& m_control;
  std::chrono::steady_clock::time_point m_last;
};

const ScheduleState* resumed_state(const ScheduleControl& control, const char* schedule) {
  if (control.resume && control.resume->schedule != schedule)
    throw DataError("a state of the " + control.resume->schedule + " schedule cannot resume a run of the " +
                        std::string(schedule) + " schedule",
                    "the training state", "remove the state file to train from the start");
  return control.resume;
}

}  // namespace

TrainResult EckerSchedule::run(Trainer& trainer, const ScheduleControl& control) {
  const TrainConfig& tc = m_tc;
  Model<Real>& model = trainer.model();
  EarlyStoppingOptions o;
  o.learning_rate = tc.learning_rate;
  o.max_iterations = tc.max_iterations;
  o.val_every = tc.val_every;
  o.patience = tc.patience;
  o.lr_decay_steps = tc.lr_decay_steps;
  o.lr_decay_factor = tc.lr_decay_factor;
  o.restore_best_at_max_iterations = tc.restore_best_at_max_iterations;
  EarlyStopping policy(o);
  ExecSpace space;
  TrainResult result;
  const auto start = std::chrono::steady_clock::now();
  Progress progress(control.progress_label, tc.max_iterations, control.progress_interval_s);
  double train_loss = 0, last_val = std::nan(""), elapsed_before = 0;
  if (const ScheduleState* r = resumed_state(control, "ecker")) {
    policy.restore({r->learning_rate, r->iteration, r->steps, r->best_iteration, r->best, static_cast<int>(r->bad),
                    static_cast<int>(r->round), r->finished});
    train_loss = r->train_loss;
    last_val = r->last_val;
    result.curve = r->curve;
    elapsed_before = r->elapsed_seconds;
    progress.resumed_at(r->iteration, elapsed_before);
  }
  StateSaver saver(control);
  auto state = [&] {
    const EarlyStopping::State p = policy.state();
    ScheduleState s;
    s.schedule = "ecker";
    s.learning_rate = p.learning_rate;
    s.iteration = p.iteration;
    s.steps = p.steps;
    s.best_iteration = p.best_iteration;
    s.best = p.best;
    s.bad = p.bad;
    s.round = p.round;
    s.finished = p.finished;
    s.train_loss = train_loss;
    s.last_val = last_val;
    s.elapsed_seconds = elapsed_before + seconds_since(start);
    s.curve = result.curve;
    return s;
  };
  auto diverged = [&](const std::string& what, double value) {
    std::ostringstream m;
    m << what << " is " << value << " at iteration " << policy.iteration() << " (step " << policy.steps()
      << ", learning rate " << policy.learning_rate() << ")";
    result.status = "diverged";
    result.message = m.str();
  };
  while (policy.running()) {
    if (control.stop()) {  // only the sweep driver installs the handler (SLURM preemption): leave cleanly
      if (saver.enabled()) saver.save(state());
      result.status = "stopped";
      result.message = "stopped by a signal before the schedule ended";
      break;
    }
    if (saver.due()) saver.save(state());
    const double lr = policy.learning_rate();
    train_loss = trainer.step(lr);
    const bool validate = policy.step_done();
    if (!std::isfinite(train_loss)) {
      diverged("the training loss", train_loss);
      break;
    }
    if (validate) {
      last_val = trainer.validation_loss();
      result.curve.push_back({policy.iteration(), policy.steps(), train_loss, last_val, lr});
      if (!std::isfinite(last_val)) {
        diverged("the validation loss", last_val);
        break;
      }
      switch (policy.report_validation(last_val)) {
        case EarlyStopping::Decision::improved:
          model.arena().snapshot(space);
          break;
        case EarlyStopping::Decision::not_improved:
          break;
        case EarlyStopping::Decision::restore_continue:
        case EarlyStopping::Decision::restore_stop:
          model.arena().restore(space);
          break;
      }
      if (control.on_check) {
        TrainResult now;
        now.status = "running";
        now.best_val_loss = policy.best_loss();
        now.best_iteration = policy.best_iteration();
        now.iterations = policy.iteration();
        now.steps = policy.steps();
        now.final_learning_rate = policy.learning_rate();
        now.wall_seconds = elapsed_before + seconds_since(start);
        now.curve = result.curve;
        if (control.on_check(now)) {
          result.status = "pruned";
          result.message = "pruned by the median stopping rule at check " + std::to_string(result.curve.size());
          break;
        }
      }
    }
    if (control.show_progress)
      progress.update(policy.iteration(), {{"loss", train_loss}, {"val", last_val}, {"lr", policy.learning_rate()}});
  }
  if (result.status != "diverged" && result.status != "stopped" && result.status != "pruned") {
    result.status = policy.stopped_by_patience() ? "finished" : "max_iterations";
    result.restored_best = policy.stopped_by_patience();
    if (policy.restore_at_end()) {
      model.arena().restore(space);
      result.restored_best = true;
    }
  }
  result.best_val_loss = policy.best_loss();
  result.best_iteration = policy.best_iteration();
  result.iterations = policy.iteration();
  result.steps = policy.steps();
  result.final_learning_rate = policy.learning_rate();
  result.wall_seconds = elapsed_before + seconds_since(start);
  if (control.show_progress)
    progress.finish(result.status + ", best validation loss " + std::to_string(result.best_val_loss));
  return result;
}

TrainResult LurzSchedule::run(Trainer& trainer, const ScheduleControl& control) {
  const TrainConfig& tc = m_tc;
  Model<Real>& model = trainer.model();
  ExecSpace space;
  TrainResult result;
  const auto start = std::chrono::steady_clock::now();
  const int64_t steps_per_epoch = trainer.steps_per_epoch();
  Progress progress(control.progress_label, tc.max_epochs, control.progress_interval_s);
  constexpr double kTolerance = 1e-6;
  double lr = tc.learning_rate, best = -std::numeric_limits<double>::infinity(), sched_best = best;
  int64_t bad = 0, sched_bad = 0, rounds = 0;
  int64_t steps = 0, epoch = 0, epoch_step = 0;
  bool stopped = false;
  double train_loss = 0, elapsed_before = 0;
  if (const ScheduleState* r = resumed_state(control, "lurz")) {
    lr = r->learning_rate;
    best = r->best;
    sched_best = r->plateau_best;
    bad = r->bad;
    sched_bad = r->plateau_bad;
    rounds = r->round;
    steps = r->steps;
    epoch = r->iteration;
    epoch_step = r->epoch_step;
    train_loss = r->train_loss;
    result.best_iteration = r->best_iteration;
    result.best_val_loss = r->best_val_loss;
    result.curve = r->curve;
    elapsed_before = r->elapsed_seconds;
    progress.resumed_at(epoch, elapsed_before);
  } else {
    // Epoch 0: the initial model is the first snapshot (the reference evaluates before training too).
    // Its validation loss is the run's best_val_loss until an epoch beats it: without it a run whose first model
    // stays the best reported a loss of 0, which `select` and `status` (lowest loss first) ranked above every trial.
    const double corr = trainer.validation_correlation();
    best = sched_best = std::isfinite(corr) ? corr : best;
    model.arena().snapshot(space);
    result.best_iteration = 0;
    result.best_val_loss = trainer.validation_loss();
  }
  StateSaver saver(control);
  auto state = [&] {
    ScheduleState s;
    s.schedule = "lurz";
    s.learning_rate = lr;
    s.best = best;
    s.plateau_best = sched_best;
    s.bad = bad;
    s.plateau_bad = sched_bad;
    s.round = rounds;
    s.steps = steps;
    s.iteration = epoch;
    s.epoch_step = epoch_step;
    s.train_loss = train_loss;
    s.best_iteration = result.best_iteration;
    s.best_val_loss = result.best_val_loss;
    s.curve = result.curve;
    s.elapsed_seconds = elapsed_before + seconds_since(start);
    return s;
  };
  while (epoch < tc.max_epochs && !stopped) {
    for (; epoch_step < steps_per_epoch && !control.stop(); ++epoch_step) {
      if (saver.due()) saver.save(state());
      train_loss = trainer.step(lr);
      ++steps;
      if (!std::isfinite(train_loss)) break;
    }
    if (control.stop()) {  // SLURM preemption (see run()): leave at the next step, the epoch unfinished
      if (saver.enabled()) saver.save(state());
      result.status = "stopped";
      result.message = "stopped by a signal before the schedule ended";
      break;
    }
    epoch_step = 0;
    ++epoch;
    if (!std::isfinite(train_loss)) {
      result.status = "diverged";
      result.message = "the training loss is " + std::to_string(train_loss) + " in epoch " + std::to_string(epoch);
      break;
    }
    const double corr = trainer.validation_correlation();
    const double val = trainer.validation_loss();
    result.curve.push_back({epoch, steps, train_loss, val, lr, corr});
    if (!std::isfinite(corr) || !std::isfinite(val)) {
      result.status = "diverged";
      result.message = "the validation objective is not finite in epoch " + std::to_string(epoch);
      break;
    }
    // ReduceLROnPlateau, own counter (not reset by restores, as the reference's scheduler).
    if (corr > sched_best + kTolerance) {
      sched_best = corr;
      sched_bad = 0;
    } else if (++sched_bad > tc.patience) {
      lr = std::max(lr / tc.lr_decay_factor, tc.min_learning_rate);
      sched_bad = 0;
    }
    // Early stopping with restore.
    if (corr > best + kTolerance) {
      best = corr;
      bad = 0;
      result.best_iteration = epoch;
      result.best_val_loss = val;
      model.arena().snapshot(space);
    } else if (++bad >= tc.patience) {
      model.arena().restore(space);
      bad = 0;
      if (++rounds >= tc.lr_decay_steps) stopped = true;
    }
    if (control.on_check) {
      TrainResult now;
      now.status = "running";
      now.best_val_loss = result.best_val_loss;
      now.best_val_correlation = best;
      now.best_iteration = result.best_iteration;
      now.iterations = epoch;
      now.steps = steps;
      now.final_learning_rate = lr;
      now.wall_seconds = elapsed_before + seconds_since(start);
      now.curve = result.curve;
      if (control.on_check(now)) {
        result.status = "pruned";
        result.message = "pruned by the median stopping rule at epoch " + std::to_string(epoch);
        break;
      }
    }
    if (control.show_progress) progress.update(epoch, {{"loss", train_loss}, {"val_corr", corr}, {"lr", lr}});
  }
  if (result.status != "diverged") {
    if (result.status != "stopped" && result.status != "pruned") result.status = stopped ? "finished" : "max_iterations";
    model.arena().restore(space);  // the best model, also when max_epochs or a stop signal ended the run
    result.restored_best = true;
  }
  result.best_val_correlation = best;
  result.iterations = epoch;
  result.steps = steps;
  result.final_learning_rate = lr;
  result.wall_seconds = elapsed_before + seconds_since(start);
  if (control.show_progress) progress.finish(result.status + ", best validation correlation " + std::to_string(best));
  return result;
}

std::unique_ptr<Schedule> make_schedule(const TrainConfig& tc) {
  if (tc.lurz()) return std::make_unique<LurzSchedule>(tc);
  return std::make_unique<EckerSchedule>(tc);
}

}  // namespace v1sysid
