// The `train` trial kind of a sweep: each rank loads and preprocesses the datasets (and reads the
// architectures' init-core checkpoints) once, then trains every trial it is handed with train_one
// (train/pipeline.hpp, the path `v1sysid train` takes) on the trial's model config (base model + architecture
// overrides + drawn hyperparameters + data fraction and seed), evaluates the selected model on the test tier and
// returns one results row. A trial is a pure function of its config and seed: nothing carries over between
// trials.
#pragma once

#include "train/checkpoint.hpp"
#include "sweep/scheduler.hpp"
#include "sweep/sweep_config.hpp"
#include "sweep/trial_result.hpp"
#include "train/pipeline.hpp"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace v1sysid {

class TrainingTrialRunner {
 public:
  // data_paths: one dataset per readout (several: one core, one readout per data_key, as train --data ...).
  // checkpoint_dir: empty, or a folder that receives trial_<id>.h5 for every finished trial.
  // state_dir: empty, or the folder of the trials' resumable states (trial_state_path), saved every
  // state_interval_s seconds and on a stop signal; a trial with a state of its own continues from it, a trial
  // with a state of another run (or an unreadable one) trains from the start and says so.
  TrainingTrialRunner(const SweepConfig& sweep, const std::vector<std::string>& data_paths, std::string checkpoint_dir,
                      std::string state_dir = "", double state_interval_s = 600.0);
  // progress receives the trial's live state at every validation check (the scheduler's live row).
  TrialResult operator()(const Trial& trial, const TrialProgress& progress = {}) const;
  // Width of trials/neuron_correlation: the neurons of every dataset, in --data order.
  int64_t n_neurons() const;

 private:
  const SweepConfig& m_sweep;
  std::string m_sources, m_checkpoint_dir, m_state_dir;
  double m_state_interval_s;
  std::vector<std::unique_ptr<PreparedDataset>> m_datasets;
  std::map<std::string, Checkpoint> m_init_cores;  // by path
};

// The resumable state of trial `id` in `state_dir` (trial_<id>.h5); the sweep command keeps them in
// "<results>.states/".
std::string trial_state_path(const std::string& state_dir, int64_t id);

// The model config of one trial (trial_model_yaml, decoded strictly).
ModelConfig trial_config(const SweepConfig& sweep, const Trial& trial);

// Width of trials/val_curve: the most validation checks any trial of the table can make (the reference's
// schedule rewinds its counter at every restore, so it can exceed max_iterations / val_every; the Lurz
// schedule checks once per epoch).
int64_t max_validation_checks(const SweepConfig& sweep, const std::vector<Trial>& trials);

}  // namespace v1sysid
