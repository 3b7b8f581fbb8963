// Training and evaluation-mode passes of a Model<Real> on a preprocessed dataset (reference-models.md §3.1).
//
// TrainingData holds the preprocessed images and responses of every trial in device memory (uploaded once);
// minibatches are gathered from it by row index into the model workspace, so the training step allocates
// nothing: per step it copies the batch row indices into a preallocated device View, gathers, runs
// forward/backward, Adam, and (every val_every iterations) the validation pass on a second workspace sized
// train.eval_batch_size.
//
// Trainer::run follows EarlyStopping (train/early_stopping.hpp) exactly and records the validation curve.
// A non-finite training or validation loss ends the run with status "diverged" (TrainResult::status); the
// caller must not write a result from such a run as if it had succeeded.
//
// Several datasets, one core (reference-models.md §5.2, LongCycler): the trainer takes one TrainingData and
// one Batcher per readout of the model (same order). A step draws one minibatch from every dataset in turn,
// accumulates the gradients of all of them (each with its own readout, and the core regulariser once per
// dataset, as the reference's per-batch objective) and takes one Adam step. With a frozen core
// (Model::set_core_frozen) Adam leaves every core/ slot untouched.
//
// train.schedule lurz (LurzSchedule, train/schedule.hpp): epochs of max_k floor(n_train_k / batch) steps; the Poisson
// loss of dataset k is weighted sqrt(n_k / B) * B (the reference's sqrt(len(dataset) / B) times a summed
// PoissonLoss, n_k = all trials of dataset k); after each epoch the evaluation-mode single-trial correlation
// on the validation tier (mean over all neurons of all datasets) drives
//   - ReduceLROnPlateau (mode max, abs threshold 1e-6): more than `patience` epochs without improvement ->
//     lr = max(lr / lr_decay_factor, min_learning_rate), counter reset;
//   - early stopping (tolerance 1e-6): improvement -> snapshot; `patience` epochs without -> restore the best
//     snapshot, next round; lr_decay_steps rounds or max_epochs end the run; the best model is restored.
// The curve then has one point per epoch (iteration = epoch, val_correlation filled).
#pragma once

#include "core/types.hpp"
#include "data/dataset.hpp"
#include "model/model.hpp"
#include "train/batcher.hpp"
#include "train/early_stopping.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace v1sysid {

struct TrainState;  // train/train_state.hpp

struct TrainingData {
  int64_t n_trials = 0, height = 0, width = 0, n_neurons = 0;
  View1<Real> images;                // (n_trials * H * W), z-scored
  View1<Real> responses;             // (n_trials * N), clipped at 0 and divided by response_std
  std::vector<float> host_responses; // [n_trials, N], the same on the host (metrics)
  std::vector<int64_t> train_rows, validation_rows, test_rows;  // file order
  // Raw responses below 0, which `responses` holds as 0: evaluation and prediction accept them, but the
  // Trainer refuses them (a Poisson loss needs counts or rates). The first one in file order is described.
  std::string source;  // the dataset, for that error
  int64_t negative_responses = 0;
  std::string first_negative;  // "trial 7 (tier train), neuron 3: -0.5"
};

// Applies `p` to `d` and uploads the result.
TrainingData prepare_training_data(const Dataset& d, const Preprocessing& p);

// Mean preprocessed response per neuron over `rows` (the readout bias initialisation).
std::vector<double> mean_response(const TrainingData& data, const std::vector<int64_t>& rows);

// Evaluation-mode Poisson loss over all `rows` (mean over trials of the sum over neurons, no regularisers),
// in batches of ws.capacity. `index_staging` is a host+device pair of at least ws.capacity entries.
struct IndexStaging {
  View1<int64_t> device;
  typename View1<int64_t>::HostMirror host;
  explicit IndexStaging(int capacity = 0);
};
double evaluation_loss(Model<Real>& model, ModelWorkspace<Real>& ws, IndexStaging& staging,
                       const TrainingData& data, const std::vector<int64_t>& rows, int readout = 0);
// Evaluation-mode predictions for `rows` -> host [rows.size(), N] on the preprocessed response scale.
std::vector<float> predict_rows(Model<Real>& model, ModelWorkspace<Real>& ws, IndexStaging& staging,
                                const TrainingData& data, const std::vector<int64_t>& rows, int readout = 0);
// Evaluation-mode mean over neurons of the single-trial correlation on `rows` (the Lurz validation objective);
// `sum` receives the sum over neurons (for means over several datasets).
double mean_correlation(Model<Real>& model, ModelWorkspace<Real>& ws, IndexStaging& staging,
                        const TrainingData& data, const std::vector<int64_t>& rows, int readout, double* sum = nullptr);

struct ValidationPoint {
  int64_t iteration = 0;  // the reference's counter (rewound at restores)
  int64_t step = 0;       // optimiser steps taken so far
  double train_loss = 0;  // Poisson + regularisers of the last training batch
  double val_loss = 0;    // evaluation-mode Poisson loss on the validation tier
  double learning_rate = 0;
  double val_correlation = 0;  // lurz schedule: validation single-trial correlation (not in checkpoints)
};

struct TrainResult {
  std::string status = "finished";  // "finished" (patience rounds done), "max_iterations", "diverged",
                                    // "stopped" (a stop signal, see core/stop.hpp), "pruned" (a sweep's median
                                    // stopping rule, ScheduleControl::on_check)
  std::string message;
  double best_val_loss = 0;
  int64_t best_iteration = -1;
  int64_t iterations = 0;  // the reference's counter at the end
  int64_t steps = 0;       // optimiser steps taken
  double wall_seconds = 0;
  double final_learning_rate = 0;
  bool restored_best = false;  // the final parameters are the best snapshot
  double best_val_correlation = 0;  // lurz schedule
  std::vector<ValidationPoint> curve;
};

class Trainer {
 public:
  // `model` must be initialised; data and model must outlive the trainer.
  Trainer(Model<Real>& model, const TrainingData& data, const Batcher& batcher);
  // One dataset per readout of the model, in readout order.
  Trainer(Model<Real>& model, std::vector<const TrainingData*> data, std::vector<Batcher> batchers);
  // Runs the schedule of model.config().train (train/schedule.hpp), polling the stop flag of core/stop.hpp.
  // show_progress prints progress lines on stderr, each starting with progress_label, at most every
  // progress_interval_s seconds when stderr is not a terminal.
  TrainResult run(bool show_progress, const std::string& progress_label = "train", double progress_interval_s = 10.0);

  // What the schedules use. One training step on the next minibatch of every dataset at learning rate lr;
  // returns the training loss (Poisson + regularisers).
  double step(double lr);
  // Evaluation-mode Poisson loss on the validation tier, mean over the datasets.
  double validation_loss();
  // Evaluation-mode single-trial correlation on the validation tier, mean over all neurons of all datasets.
  double validation_correlation();
  // The Lurz schedule's epoch: max over datasets of floor(training rows / batch size), at least 1.
  int64_t steps_per_epoch() const;
  Model<Real>& model() { return m_model; }
  // Resumable states (train/train_state.hpp): the trainer's part (arena, snapshot, noise counter, batchers) is
  // copied into `state` (its schedule part is left as it is), or continued from; restore_state throws
  // DataError naming `origin` when the state does not fit this model and data, before it changes anything.
  void capture_state(TrainState& state) const;
  void restore_state(const TrainState& state, const std::string& origin);

 private:
  Model<Real>& m_model;
  std::vector<const TrainingData*> m_datas;
  std::vector<Batcher> m_batchers;
  const TrainingData& m_data;  // dataset 0
  ModelWorkspace<Real> m_train_ws, m_eval_ws;
  IndexStaging m_train_index, m_eval_index;
  // Adam's per-slot freeze mask: the core's slots when the core is frozen (transfer). Built once, outside the
  // step, so that the step allocates nothing on the host either.
  std::vector<bool> m_frozen_core_slots, m_no_frozen_slots;
};

}  // namespace v1sysid
