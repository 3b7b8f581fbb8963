#include "sweep/training_trial.hpp"

#include "core/error.hpp"
#include "io/checkpoint.hpp"
#include "io/output_file.hpp"
#include "model/model.hpp"
#include "model/model_config.hpp"
#include "train/batcher.hpp"
#include "train/pipeline.hpp"

#include <filesystem>

namespace v1sysid {

namespace {
ModelConfig trial_config(const SweepConfig& sweep, const Trial& trial) {
  YAML::Emitter e;
  e << trial_model_yaml(sweep, trial);
  return parse_model_config(e.c_str(), sweep.file + " (trial " + std::to_string(trial.id) + ", " + trial.architecture + ")");
}
}  // namespace

TrainingTrialRunner::TrainingTrialRunner(const SweepConfig& sweep, const std::string& data_path,
                                         std::string checkpoint_dir)
    : m_sweep(sweep), m_data_path(data_path), m_checkpoint_dir(std::move(checkpoint_dir)),
      m_dataset(load_dataset(data_path)), m_preprocessing(compute_preprocessing(m_dataset)),
      m_data(std::make_unique<TrainingData>(prepare_training_data(m_dataset, m_preprocessing))) {
  create_output_folder(m_checkpoint_dir);  // no-op without --save-checkpoints
}

TrialResult TrainingTrialRunner::operator()(const Trial& trial) const {
  const ModelConfig config = trial_config(m_sweep, trial);
  Model<Real> model(config, static_cast<int>(m_dataset.height), static_cast<int>(m_dataset.width),
                    static_cast<int>(m_dataset.n_neurons));
  Batcher batcher(m_data->train_rows, config.train.data_fraction, config.train.batch_size, config.train.seed);
  // The cortical coordinates feed the Gaussian readout's cortex grid predictor (ignored by other readouts).
  model.initialize(config.train.seed,
                   {ReadoutInit{mean_response(*m_data, batcher.rows()), m_dataset.cortical_coordinates}});
  Trainer trainer(model, *m_data, batcher);
  // A trial can train for an hour: a line a minute (iteration, losses, ETA) tells which trial is where.
  const TrainResult training = trainer.run(/*show_progress=*/true, "sweep trial " + std::to_string(trial.id), 60.0);

  TrialResult r;
  r.message = training.message;
  r.best_val_loss = training.best_val_loss;
  r.iterations = training.steps;
  for (const auto& point : training.curve) r.val_curve.push_back(point.val_loss);
  if (training.status == "diverged" || training.status == "stopped") {
    r.status = training.status;  // "stopped" is not a finished status: the row stays pending for the rerun
    return r;
  }
  const EvaluationReport e = evaluate_model(model, m_dataset, *m_data, Tier::test);
  r.status = "ok";
  r.test_correlation = e.metrics.test_correlation;
  r.feve = e.metrics.feve;
  r.fraction_oracle = e.metrics.fraction_oracle;
  r.neuron_correlation.assign(e.metrics.test_correlation_per_neuron.begin(), e.metrics.test_correlation_per_neuron.end());
  if (!m_checkpoint_dir.empty()) {
    const std::string path = (std::filesystem::path(m_checkpoint_dir) / ("trial_" + std::to_string(trial.id) + ".h5")).string();
    save_checkpoint(path, model, m_preprocessing, training, m_data_path, /*force=*/true, trial.id);  // a rerun replaces it
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
