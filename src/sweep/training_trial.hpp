// The `train` trial kind of a sweep: each rank loads and preprocesses the dataset once, then trains every
// trial it is handed with the trial's model config (base model + architecture overrides + drawn
// hyperparameters + data fraction and seed), evaluates the selected model on the test tier and returns one
// results row. A trial is a pure function of its config and seed: nothing carries over between trials.
#pragma once

#include "data/dataset.hpp"
#include "sweep/sweep_config.hpp"
#include "sweep/trial_result.hpp"
#include "train/trainer.hpp"

#include <memory>
#include <string>

namespace v1sysid {

class TrainingTrialRunner {
 public:
  // checkpoint_dir: empty, or a folder that receives trial_<id>.h5 for every finished trial.
  TrainingTrialRunner(const SweepConfig& sweep, const std::string& data_path, std::string checkpoint_dir);
  TrialResult operator()(const Trial& trial) const;
  int64_t n_neurons() const { return m_dataset.n_neurons; }

 private:
  const SweepConfig& m_sweep;
  std::string m_data_path, m_checkpoint_dir;
  Dataset m_dataset;
  Preprocessing m_preprocessing;
  std::unique_ptr<TrainingData> m_data;
};

// Width of trials/val_curve: the most validation checks any trial of the table can make (the reference's
// schedule rewinds its counter at every restore, so it can exceed max_iterations / val_every; the Lurz
// schedule checks once per epoch).
int64_t max_validation_checks(const SweepConfig& sweep, const std::vector<Trial>& trials);

}  // namespace v1sysid
