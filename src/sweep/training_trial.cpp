#include "sweep/training_trial.hpp"

#include "core/error.hpp"
#include "train/checkpoint.hpp"
#include "io/output_file.hpp"
#include "model/model_config.hpp"

#include <algorithm>
#include <filesystem>

namespace v1sysid {

ModelConfig trial_config(const SweepConfig& sweep, const Trial& trial) {
  YAML::Emitter e;
  e << trial_model_yaml(sweep, trial);
  return parse_model_config(e.c_str(), sweep.file + " (trial " + std::to_string(trial.id) + ", " + trial.architecture + ")");
}

namespace {

// The training part of a trial's row (the run so far, or the whole run): message, counters, best validation
// loss (and correlation, for the Lurz schedule) and the validation curve.
TrialResult trial_result_of(const TrainResult& training, TrialStatus status, bool lurz_schedule) {
  TrialResult r;
  r.status = status;
  r.message = training.message;
  r.best_val_loss = training.best_val_loss;
  if (lurz_schedule) r.best_val_correlation = training.best_val_correlation;
  r.iterations = training.iterations;
  r.steps = training.steps;
  r.wall_seconds = training.wall_seconds;
  for (const auto& point : training.curve) {
    r.val_curve.push_back(point.val_loss);
    if (lurz_schedule) r.val_correlation_curve.push_back(point.val_correlation);
  }
  return r;
}

}  // namespace

std::string trial_state_path(const std::string& state_dir, int64_t id) {
  return (std::filesystem::path(state_dir) / ("trial_" + std::to_string(id) + ".h5")).string();
}

TrainingTrialRunner::TrainingTrialRunner(const SweepConfig& sweep, const std::vector<std::string>& data_paths,
                                         std::string checkpoint_dir, std::string state_dir, double state_interval_s)
    : m_sweep(sweep), m_checkpoint_dir(std::move(checkpoint_dir)), m_state_dir(std::move(state_dir)),
      m_state_interval_s(state_interval_s) {
  require_distinct_data_keys(data_paths);
  for (const auto& path : data_paths) {
    m_datasets.push_back(prepare_dataset(path));
    m_sources += (m_sources.empty() ? "" : ",") + path;
  }
  for (const auto& arch : sweep.architectures)
    if (!arch.init_core.empty() && !m_init_cores.count(arch.init_core))
      m_init_cores.emplace(arch.init_core, load_checkpoint(arch.init_core));
  // A core that does not fit its architecture would fail every trial of it (each then recorded as failed):
  // refuse before the first trial instead. The core section is the same in every trial of an architecture.
  const std::vector<Trial> trials = expand_trials(sweep);
  for (size_t a = 0; a < sweep.architectures.size(); ++a) {
    const ArchitectureSpec& arch = sweep.architectures[a];
    if (arch.init_core.empty()) continue;
    const auto first = std::find_if(trials.begin(), trials.end(),
                                     [a](const Trial& t) { return t.architecture_index == static_cast<int64_t>(a); });
    if (first == trials.end()) continue;
    const Dataset& d = m_datasets.front()->dataset;
    check_init_core(*m_init_cores.at(arch.init_core).model, arch.init_core + " (architectures[" + std::to_string(a) +
                        "].init_core)", trial_config(sweep, *first), d.height, d.width,
                    sweep.file + " (architecture " + arch.name + ")");
  }
  create_output_folder(m_checkpoint_dir);  // no-op without --save-checkpoints
  create_output_folder(m_state_dir);
}

int64_t TrainingTrialRunner::n_neurons() const {
  int64_t n = 0;
  for (const auto& d : m_datasets) n += d->dataset.n_neurons;
  return n;
}

TrialResult TrainingTrialRunner::operator()(const Trial& trial, const TrialProgress& progress) const {
  const ArchitectureSpec& arch = m_sweep.architectures.at(static_cast<size_t>(trial.architecture_index));
  RunSpec spec;
  spec.config = trial_config(m_sweep, trial);
  spec.config_origin = m_sweep.file + " (trial " + std::to_string(trial.id) + ", " + trial.architecture + ")";
  for (const auto& d : m_datasets) spec.datasets.push_back(d.get());
  if (!arch.init_core.empty()) {
    spec.init_core = m_init_cores.at(arch.init_core).model.get();
    spec.init_core_origin = arch.init_core;
  }
  spec.freeze_core = arch.freeze_core;  // SweepConfig::load allows it only with init_core or random_core
  spec.random_core = arch.random_core;
  // A trial can train for an hour: a line a minute (iteration, losses, ETA) tells which trial is where.
  spec.control.progress_label = "sweep trial " + std::to_string(trial.id);
  spec.control.progress_interval_s = 60.0;
  if (!m_state_dir.empty()) {
    spec.state_path = trial_state_path(m_state_dir, trial.id);
    spec.state_identity = "\ntrial: " + std::to_string(trial.id) + "\ndata: " + m_sources + "\n";
    spec.state_interval_s = m_state_interval_s;
    spec.discard_other_state = true;  // e.g. left by an earlier sweep into this file that --force replaced
  }
  const bool lurz = spec.config.train.lurz();
  if (progress) {
    spec.control.on_check = [&progress, lurz](const TrainResult& now) -> bool {
      return progress(trial_result_of(now, TrialStatus::running, lurz));
    };
  }
  const RunOutcome run = train_one(spec);
  const TrainResult& training = run.training;
  if (training.status == "diverged" || training.status == "stopped" || training.status == "pruned") {
    // A stopped trial is not finished: its row stays pending for the rerun.
    return trial_result_of(training, training.status == "diverged" ? TrialStatus::diverged
                                     : training.status == "pruned" ? TrialStatus::pruned
                                                                   : TrialStatus::pending, lurz);
  }
  TrialResult r = trial_result_of(training, TrialStatus::ok, lurz);
  const EvaluationReport& e = *run.summary;
  r.test_correlation = e.metrics.test_correlation;
  r.feve = e.metrics.feve;
  r.fraction_oracle = e.metrics.fraction_oracle;
  for (const auto& each : run.evaluations)
    r.neuron_correlation.insert(r.neuron_correlation.end(), each.metrics.test_correlation_per_neuron.begin(),
                                each.metrics.test_correlation_per_neuron.end());
  if (!m_checkpoint_dir.empty()) {
    const std::string path = (std::filesystem::path(m_checkpoint_dir) / ("trial_" + std::to_string(trial.id) + ".h5")).string();
    std::vector<Preprocessing> preps;
    for (const auto& d : m_datasets) preps.push_back(d->preprocessing);
    save_checkpoint(path, *run.model, preps, training, m_sources, /*force=*/true, trial.id);  // a rerun replaces it
  }
  return r;
}

int64_t max_validation_checks(const SweepConfig& sweep, const std::vector<Trial>& trials) {
  int64_t most = 1;
  for (const auto& t : trials) {
    const TrainConfig& tc = trial_config(sweep, t).train;
    if (tc.lurz()) {  // one check per epoch
      most = std::max<int64_t>(most, tc.max_epochs);
      continue;
    }
    const int64_t steps = tc.max_iterations + static_cast<int64_t>(tc.lr_decay_steps) * tc.patience * tc.val_every;
    most = std::max<int64_t>(most, steps / tc.val_every + 1);
  }
  return most;
}

}  // namespace v1sysid
