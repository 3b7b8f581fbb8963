// The two training schedules behind one interface (Trainer::run picks one by train.schedule):
//   EckerSchedule  reference-models.md §3.1: iterations, validation loss every val_every steps, early stopping
//                  with restore and learning-rate decay (the EarlyStopping policy, train/early_stopping.hpp);
//   LurzSchedule   train.schedule lurz: epochs, validation correlation, ReduceLROnPlateau and early stopping
//                  with restore (the rules are spelled out in train/trainer.hpp).
// Both poll ScheduleControl::stop before every step, so a stop signal (core/stop.hpp) ends a run at the next step
// with status "stopped".
// Resumable states (train/train_state.hpp): with ScheduleControl::save_state set, a schedule hands its state to
// it between two steps, every save_interval_s seconds and once more when a stop is requested; with
// ScheduleControl::resume set, it continues from that state (the trainer's part restored by the caller) and
// takes exactly the steps an uninterrupted run would.
#pragma once

#include "core/stop.hpp"
#include "model/model_config.hpp"
#include "train/train_state.hpp"
#include "train/trainer.hpp"

#include <functional>

#include <memory>
#include <string>

namespace v1sysid {

struct ScheduleControl {
  bool (*stop)() = stop_requested;
  bool show_progress = true;
  std::string progress_label = "train";
  double progress_interval_s = 10.0;  // between progress lines when stderr is not a terminal
  std::function<void(const ScheduleState&)> save_state;  // empty: no states are saved
  double save_interval_s = 600.0;
  const ScheduleState* resume = nullptr;  // the state to continue from, if any
  // Called after every validation check with the run so far (status "running": counters, best validation loss,
  // the curve, the training time); a sweep writes it into the trial's live row. Returning true ends the run with
  // status "pruned" (the sweep's median stopping rule).
  std::function<bool(const TrainResult&)> on_check;
};

class Schedule {
 public:
  virtual ~Schedule() = default;
  // Trains `trainer`'s model to the end of the schedule; the model then holds the parameters the schedule
  // selects (TrainResult::restored_best says whether that is the best snapshot).
  virtual TrainResult run(Trainer& trainer, const ScheduleControl& control) = 0;
};

class EckerSchedule final : public Schedule {
 public:
  explicit EckerSchedule(const TrainConfig& tc) : m_tc(tc) {}
  TrainResult run(Trainer& trainer, const ScheduleControl& control) override;

 private:
  TrainConfig m_tc;
};

class LurzSchedule final : public Schedule {
 public:
  explicit LurzSchedule(const TrainConfig& tc) : m_tc(tc) {}
  TrainResult run(Trainer& trainer, const ScheduleControl& control) override;

 private:
  TrainConfig m_tc;
};

// The schedule train.schedule names.
std::unique_ptr<Schedule> make_schedule(const TrainConfig& tc);

}  // namespace v1sysid
