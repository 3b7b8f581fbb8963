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

struct TrainingData {
  int64_t n_trials = 0, height = 0, width = 0, n_neurons = 0;
  View1<Real> images;                // (n_trials * H * W), z-scored
  View1<Real> responses;             // (n_trials * N), clipped at 0 and divided by response_std
  std::vector<float> host_responses; // [n_trials, N], the same on the host (metrics)
  std::vector<int64_t> train_rows, validation_rows, test_rows;  // file order
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
                       const TrainingData& data, const std::vector<int64_t>& rows);
// Evaluation-mode predictions for `rows` -> host [rows.size(), N] on the preprocessed response scale.
std::vector<float> predict_rows(Model<Real>& model, ModelWorkspace<Real>& ws, IndexStaging& staging,
                                const TrainingData& data, const std::vector<int64_t>& rows);

struct ValidationPoint {
  int64_t iteration = 0;  // the reference's counter (rewound at restores)
  int64_t step = 0;       // optimiser steps taken so far
  double train_loss = 0;  // Poisson + regularisers of the last training batch
  double val_loss = 0;    // evaluation-mode Poisson loss on the validation tier
  double learning_rate = 0;
};

struct TrainResult {
  std::string status = "finished";  // "finished" (patience rounds done), "max_iterations", "diverged",
                                    // "stopped" (a stop signal, see core/stop.hpp)
  std::string message;
  double best_val_loss = 0;
  int64_t best_iteration = -1;
  int64_t iterations = 0;  // the reference's counter at the end
  int64_t steps = 0;       // optimiser steps taken
  double wall_seconds = 0;
  double final_learning_rate = 0;
  bool restored_best = false;  // the final parameters are the best snapshot
  std::vector<ValidationPoint> curve;
};

class Trainer {
 public:
  // `model` must be initialised; data and model must outlive the trainer.
  Trainer(Model<Real>& model, const TrainingData& data, const Batcher& batcher);
  // Runs the schedule of model.config().train. show_progress prints progress lines on stderr.
  TrainResult run(bool show_progress);
  // One training step on the next minibatch at learning rate lr; returns the training loss
  // (Poisson + regularisers). Exposed for tests and benchmarks.
  double step(double lr);

 private:
  Model<Real>& m_model;
  const TrainingData& m_data;
  Batcher m_batcher;
  ModelWorkspace<Real> m_train_ws, m_eval_ws;
  IndexStaging m_train_index, m_eval_index;
};

}  // namespace v1sysid
