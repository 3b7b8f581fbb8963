// The train / evaluate / predict pipelines behind the commands of the same names (src/apps/cmd_*.cpp stay
// thin: parse options, call these, print).
//
// Evaluation: evaluation-mode predictions for every trial of a tier (preprocessed scale) and
// metrics::evaluate against the preprocessed responses (clipped at 0, divided by response_std; the
// correlation-type metrics do not depend on the per-neuron scale). On a digital-V1 dataset
// (Dataset::ground_truth present) additionally
//   ceiling_fraction = test_correlation / mean_n(gt/ceiling_correlation[n])
// i.e. the mean-over-neurons test correlation divided by the mean-over-neurons analytic ceiling (a ratio of
// means, not a mean of per-neuron ratios, which would explode for neurons with a ceiling near 0).
#pragma once

#include "data/dataset.hpp"
#include "train/checkpoint.hpp"
#include "metrics/metrics.hpp"
#include "model/model.hpp"
#include "train/schedule.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace v1sysid {

struct EvaluationReport {
  Tier tier = Tier::test;
  metrics::EvaluationMetrics metrics;
  double loss = 0;  // evaluation-mode Poisson loss on the tier (preprocessed scale)
  std::optional<double> ceiling_fraction;        // digital V1 only
  std::optional<double> mean_ceiling_correlation;  // digital V1 only
};

// Evaluates `model` on tier `tier` of `d` (preprocessed with `p`). `columns` (positions among the model's
// neurons, ascending) restricts every metric, the loss and the ceiling to those neurons (evaluate
// --neurons); empty = all.
EvaluationReport evaluate_model(Model<Real>& model, const Dataset& d, const Preprocessing& p, Tier tier,
                                int readout = 0, const std::vector<int64_t>& columns = {});
// The same with `d` already preprocessed and uploaded (prepare_training_data), so that callers that trained
// on it (train, sweep trials) do not upload the dataset a second time.
EvaluationReport evaluate_model(Model<Real>& model, const Dataset& d, const TrainingData& data, Tier tier,
                                int readout = 0, const std::vector<int64_t>& columns = {});
// The metrics of given predictions [tier trials, N] (preprocessed scale, the tier's trials in file order) against
// `data`'s responses: what evaluate_model computes once it has predicted. `loss` is reported as given; absent,
// it is the Poisson loss of the predictions (over `columns` when given). poisson_eps: the model's (Model::poisson_eps).
EvaluationReport score_predictions(const Dataset& d, const TrainingData& data, Tier tier, std::vector<float> predictions,
                                   double poisson_eps, const std::vector<int64_t>& columns = {},
                                   std::optional<double> loss = std::nullopt);
// The columns of evaluate_model for `evaluate --neurons SPEC`: SPEC is parsed against `full` (the dataset
// before any selection) and each selected dataset neuron is looked up among `model_neurons` (the model's
// recorded selection; all neurons when it has none). ConfigError naming `option` when SPEC is bad or asks
// for a neuron the model does not predict.
std::vector<int64_t> evaluation_columns(const std::string& spec, const Dataset& full,
                                        const NeuronSelection& model_neurons, const std::string& option);

// A dataset ready to train on: read, restricted to a neuron subset, preprocessed and uploaded once, so that a
// sweep rank trains all its trials on one copy.
struct PreparedDataset {
  std::string path;
  Dataset dataset;
  Preprocessing preprocessing;  // records the neuron subset
  TrainingData data;
};
// neurons: a NeuronSelection spec (train --neurons; `option` names it in errors), empty for all neurons.
std::unique_ptr<PreparedDataset> prepare_dataset(const std::string& path, const std::string& neurons = "",
                                                 const std::string& option = "--neurons");

// Several datasets of one model get one readout each, named by the data_key their path gives
// (data_key_from_path): two paths with the same key (the same file twice, or two files of the same name in other
// folders) are a ConfigError naming both, before any data is read. `option` names the flag ("--data").
void require_distinct_data_keys(const std::vector<std::string>& paths, const std::string& option = "--data");

// The init-core spelling (train --init-core, a sweep architecture's init_core) of a core kept as initialised.
inline constexpr const char* kRandomCore = "random";

// One training run, whoever asks for it (train, sweep trials): what train_one needs.
struct RunSpec {
  ModelConfig config;                            // resolved: model file, overrides and drawn hyperparameters
  std::string config_origin;                     // the model file or sweep trial, for messages
  std::vector<const PreparedDataset*> datasets;  // one readout per dataset (keyed by data_key when several)
  // Overrides of config.train (train's --seed, --max-iterations, --data-fraction); range-checked here.
  std::optional<uint64_t> seed;
  std::optional<int64_t> max_iterations;
  std::optional<double> data_fraction;
  // Transfer: a model whose core (parameters and BN statistics) starts training; its core config and image
  // size must match. freeze_core (requires init_core) then trains only the readouts.
  const Model<Real>* init_core = nullptr;
  std::string init_core_origin;  // its checkpoint path, for messages
  bool freeze_core = false;
  // The null of a transfer (init core "random"): the core stays as initialised from train.seed, frozen; needs
  // freeze_core and no init_core.
  bool random_core = false;
  ScheduleControl control;                // stop flag and progress lines
  // Resumable states (train/train_state.hpp): with state_path set, the run continues from the state saved there
  // when it belongs to this run (identity: the resolved config plus state_identity, which names the data and
  // options), and saves its state there every state_interval_s seconds and when a stop is requested. The caller
  // removes the file once the result is written. A state of another run, or one that cannot be read: ConfigError
  // unless discard_other_state, which then trains from the start (and later overwrites it). A state that cannot be
  // written (a full disk) is reported once on stderr and training goes on.
  std::string state_path;
  std::string state_identity;
  double state_interval_s = 600.0;
  bool discard_other_state = false;
  std::function<void()> before_training;  // called once the model is built and initialised (train: creates --out)
};

struct RunOutcome {
  ModelConfig config;  // spec.config with the overrides applied
  std::unique_ptr<Model<Real>> model;
  TrainResult training;
  // Test-tier evaluation of every dataset (empty when the run diverged or was stopped), and their
  // neuron-weighted summary (the one dataset's report when there is one).
  std::vector<EvaluationReport> evaluations;
  std::optional<EvaluationReport> summary;
  int64_t resumed_at_step = -1;  // the optimiser step a saved state continued from; -1: trained from the start
};

// Builds the model, initialises it (init core), trains it with the config's schedule and evaluates the result
// on every dataset's test tier. A diverged, stopped or pruned run is returned with its status (and no
// evaluation), not thrown.
RunOutcome train_one(const RunSpec& spec);

// Several datasets (data_paths with more than one entry): one readout per dataset keyed by its data_key, one
// core; metrics.json gains "datasets": {key: {...}} and its top-level metrics are neuron-weighted means.
// Transfer: init_core copies every core/ parameter and batch-norm statistic from a checkpoint whose core
// config and image size match; freeze_core (requires init_core) then trains only the new readouts, with the
// core's batch norm in evaluation mode (Model::set_core_frozen).
// neurons (--neurons SPEC, NeuronSelection): train on those neurons of every dataset only; the checkpoint
// records them with the preprocessing, and metrics.json names them ("neurons": SPEC).
struct TrainOptions {
  std::string model_path, data_path, out_dir;
  std::vector<std::string> data_paths;  // when non-empty, used instead of data_path
  std::string neurons;                  // empty: all neurons
  std::string init_core;
  bool freeze_core = false;
  bool force = false;
  std::optional<uint64_t> seed;
  std::optional<int64_t> max_iterations;
  std::optional<double> data_fraction;
  bool show_progress = true;
  // DIR/train_state.h5 every this many seconds and when stopped (0: none); a rerun of the same command continues
  // from it, --force discards it.
  double state_interval_s = 600.0;
};

struct TrainOutcome {
  TrainResult training;
  bool lurz_schedule = false;  // ranked by validation correlation (training.best_val_correlation)
  std::optional<EvaluationReport> evaluation;  // absent when the run diverged; dataset 0
  std::vector<std::pair<std::string, EvaluationReport>> dataset_evaluations;  // per data_key (several datasets)
  std::string checkpoint_path, metrics_path;
  int64_t resumed_at_step = -1;
};

// The state file of `train --out DIR`.
std::string train_state_path(const std::string& out_dir);

// Loads config and data, trains, writes DIR/checkpoint.h5 and DIR/metrics.json. A diverged run writes only
// metrics.json (status "diverged" and the message) and then throws DivergedError. An existing
// DIR/checkpoint.h5 without force is an IoError before any work is done.
TrainOutcome run_training(const TrainOptions& o);

// metrics.json text of a run (keys: status, message, best_val_loss, test_correlation, feve, fraction_oracle,
// ceiling_fraction (digital V1 only), iterations, steps, wall_seconds, ...).
std::string metrics_json(const TrainResult& t, const EvaluationReport* e, const ModelConfig& c,
                         const std::vector<std::pair<std::string, EvaluationReport>>& per_dataset = {},
                         const std::string& neurons = "");
// Whether `source` (an --init-core / init_core checkpoint's model) can start a model of `config` on images of
// height x width: same core section and image size; ConfigError naming both origins otherwise.
void check_init_core(const Model<Real>& source, const std::string& source_origin, const ModelConfig& config,
                     int64_t height, int64_t width, const std::string& config_origin);
// Copies every core/ slot (parameters and BN buffers) of `from` into `to`; ShapeError naming the slot when
// names or shapes differ.
void copy_core(const Model<Real>& from, Model<Real>& to, const std::string& origin);
// JSON of an evaluation report (the evaluate command's --json output).
std::string evaluation_json(const EvaluationReport& e);

// Predictions for every trial of `tier`, in file order, in the units of the stored responses
// (preprocessed prediction * response_std): [trials, N] row-major, with the trials' image ids.
struct Predictions {
  std::vector<float> values;
  std::vector<int64_t> image_ids;
  int64_t trials = 0, neurons = 0;
};
Predictions predict_tier(Model<Real>& model, const Dataset& d, const Preprocessing& p, Tier tier, int readout = 0);

// Several models of one dataset as one (an ensemble, train/ensemble.hpp): the mean of the members' predictions
// in stored response units. `d` must fit every member (fit_dataset_to_checkpoint of the first, check_checkpoint_fits
// of the others). One member is exactly predict_tier / evaluate_model. An ensemble is evaluated in the first
// member's preprocessed scale, its loss the Poisson loss of the mean prediction.
Predictions predict_models(std::vector<Checkpoint>& models, const Dataset& d, Tier tier, int readout = 0);
EvaluationReport evaluate_models(std::vector<Checkpoint>& models, const Dataset& d, Tier tier, int readout = 0,
                                 const std::vector<int64_t>& columns = {});

}  // namespace v1sysid
