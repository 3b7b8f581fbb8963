#include "train/schedule.hpp"

#include "core/progress.hpp"
#include "train/early_stopping.hpp"

#include <chrono>
#include <cmath>
#include <limits>
#include <sstream>

namespace v1sysid {

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
  double train_loss = 0, last_val = std::nan("");
  auto diverged = [&](const std::string& what, double value) {
    std::ostringstream m;
    m << what << " is " << value << " at iteration " << policy.iteration() << " (step " << policy.steps()
      << ", learning rate " << policy.learning_rate() << ")";
    result.status = "diverged";
    result.message = m.str();
  };
  while (policy.running()) {
    if (control.stop()) {  // only the sweep driver installs the handler (SLURM preemption): leave cleanly
      result.status = "stopped";
      result.message = "stopped by a signal before the schedule ended";
      break;
    }
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
    }
    if (control.show_progress)
      progress.update(policy.iteration(), {{"loss", train_loss}, {"val", last_val}, {"lr", policy.learning_rate()}});
  }
  if (result.status != "diverged" && result.status != "stopped") {
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
  result.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
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
  int bad = 0, sched_bad = 0, rounds = 0;
  int64_t steps = 0, epoch = 0;
  bool stopped = false;
  double train_loss = 0;
  // Epoch 0: the initial model is the first snapshot (the reference evaluates before training too).
  {
    const double corr = trainer.validation_correlation();
    best = sched_best = std::isfinite(corr) ? corr : best;
    model.arena().snapshot(space);
    result.best_iteration = 0;
  }
  while (epoch < tc.max_epochs && !stopped) {
    for (int64_t i = 0; i < steps_per_epoch && !control.stop(); ++i) {
      train_loss = trainer.step(lr);
      ++steps;
      if (!std::isfinite(train_loss)) break;
    }
    if (control.stop()) {  // SLURM preemption (see run()): leave at the next step, the epoch unfinished
      result.status = "stopped";
      result.message = "stopped by a signal before the schedule ended";
      break;
    }
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
    if (control.show_progress) progress.update(epoch, {{"loss", train_loss}, {"val_corr", corr}, {"lr", lr}});
  }
  if (result.status != "diverged") {
    if (result.status != "stopped") result.status = stopped ? "finished" : "max_iterations";
    model.arena().restore(space);  // the best model, also when max_epochs or a stop signal ended the run
    result.restored_best = true;
  }
  result.best_val_correlation = best;
  result.iterations = epoch;
  result.steps = steps;
  result.final_learning_rate = lr;
  result.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (control.show_progress) progress.finish(result.status + ", best validation correlation " + std::to_string(best));
  return result;
}

std::unique_ptr<Schedule> make_schedule(const TrainConfig& tc) {
  if (tc.lurz()) return std::make_unique<LurzSchedule>(tc);
  return std::make_unique<EckerSchedule>(tc);
}

}  // namespace v1sysid
