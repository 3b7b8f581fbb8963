// A resumable training state: everything a training run holds between two optimiser steps, so that a run
// stopped at step k and continued from its state takes the same steps as one that never stopped (bitwise on
// Serial Kokkos; tests/test_train.cpp checks it for both schedules).
//
//   trainer   the parameter arena (parameters, batch-norm statistics, Adam moments and step counter, the best
//             snapshot), the model's noise counter (Gaussian readout) and every batcher's position and RNG;
//   schedule  the counters of the schedule that wrote it (EckerSchedule: the EarlyStopping policy; LurzSchedule:
//             epoch, step in the epoch, early-stopping and plateau counters), the validation curve so far and
//             the training time already spent.
//
// `identity` names the run the state belongs to (the resolved model config and the data, see RunSpec); a run
// resumes only a state with its own identity. Files: train/train_state_file.hpp.
#pragma once

#include "core/types.hpp"
#include "train/batcher.hpp"
#include "train/trainer.hpp"

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace v1sysid {

struct ScheduleState {
  std::string schedule;  // "ecker" or "lurz": only the schedule that wrote a state resumes it
  double learning_rate = 0;
  int64_t iteration = 0;   // ecker: the reference's counter; lurz: finished epochs
  int64_t epoch_step = 0;  // lurz: steps taken in the unfinished epoch
  int64_t steps = 0;       // optimiser steps taken
  int64_t best_iteration = -1;
  double best = 0;           // ecker: best validation loss; lurz: best validation correlation
  double best_val_loss = 0;  // lurz: the validation loss of the best epoch
  double plateau_best = 0;   // lurz: ReduceLROnPlateau's best correlation
  int64_t bad = 0;           // checks without improvement (early stopping)
  int64_t plateau_bad = 0;   // lurz: epochs without improvement (ReduceLROnPlateau)
  int64_t round = 0;         // restores so far (learning-rate rounds)
  bool finished = false;     // ecker: the patience rule ended the last round
  double train_loss = 0;     // the last step's loss, as the progress line shows it
  double last_val = std::nan("");
  double elapsed_seconds = 0;  // training time before this state was saved
  std::vector<ValidationPoint> curve;
};

struct TrainState {
  std::string identity;
  // ParamArena buffers (size() elements each, alignment padding included) and the Adam step counter.
  std::vector<Real> params, adam_m, adam_v;
  int64_t adam_step = 0;
  bool has_snapshot = false;  // the best snapshot of early stopping, when one was taken
  std::vector<Real> snapshot_params, snapshot_adam_m, snapshot_adam_v;
  int64_t snapshot_adam_step = 0;
  uint64_t sample_counter = 0;         // Model::sample_counter (the Gaussian readout's noise)
  std::vector<BatcherState> batchers;  // one per dataset, in readout order
  ScheduleState schedule;
};

}  // namespace v1sysid
