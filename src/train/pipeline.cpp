#include "train/pipeline.hpp"

#include "core/error.hpp"
#include "core/stop.hpp"
#include "io/output_file.hpp"
#include "train/train_state_file.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

namespace v1sysid {

namespace {

std::string json_number(double x) {
  if (!std::isfinite(x)) return "null";
  std::ostringstream s;
  s.precision(10);
  s << x;
  return s.str();
}

std::string json_string(const std::string& v) {
  std::string out = "\"";
  for (char ch : v) {
    if (ch == '"' || ch == '\\') out += '\\', out += ch;
    else if (ch == '\n') out += "\\n";
    else if (static_cast<unsigned char>(ch) < 0x20) out += ' ';
    else out += ch;
  }
  return out + "\"";
}

// Rows of `tier`, which must not be empty (`what` names the command's action in the error).
std::vector<int64_t> nonempty_tier_rows(const Dataset& d, Tier tier, const char* what) {
  auto rows = d.indices(tier);
  if (rows.empty())
    throw DataError(std::string("the dataset has no '") + tier_name(tier) + "' trials", d.source,
                    std::string(what) + " another tier");
  return rows;
}

}  // namespace

EvaluationReport evaluate_model(Model<Real>& model, const Dataset& d, const Preprocessing& p, Tier tier, int readout,
                                const std::vector<int64_t>& columns) {
  return evaluate_model(model, d, prepare_training_data(d, p), tier, readout, columns);
}

EvaluationReport evaluate_model(Model<Real>& model, const Dataset& d, const TrainingData& data, Tier tier,
                                int readout, const std::vector<int64_t>& columns) {
  const auto rows = nonempty_tier_rows(d, tier, "evaluate");
  auto ws = model.make_workspace(model.config().train.eval_batch_size);
  IndexStaging staging(ws.capacity);
  auto predictions = predict_rows(model, ws, staging, data, rows, readout);
  // The loss of all neurons is the model's own evaluation-mode loss; of a subset, computed from the predictions.
  std::optional<double> loss;
  if (columns.empty()) loss = evaluation_loss(model, ws, staging, data, rows, readout);
  return score_predictions(d, data, tier, std::move(predictions), model.poisson_eps(), columns, loss);
}

EvaluationReport score_predictions(const Dataset& d, const TrainingData& data, Tier tier, std::vector<float> predictions,
                                   double poisson_eps, const std::vector<int64_t>& columns,
                                   std::optional<double> loss) {
  const auto rows = nonempty_tier_rows(d, tier, "evaluate");
  const auto T = static_cast<int64_t>(rows.size());
  EvaluationReport r;
  r.tier = tier;
  std::vector<float> ceilings = d.ground_truth ? d.ground_truth->ceiling_correlation : std::vector<float>{};
  std::vector<float> responses;
  int64_t S = d.n_neurons;
  if (!columns.empty()) {
    S = static_cast<int64_t>(columns.size());
    predictions = neuron_columns(predictions, d.n_neurons, columns);
    responses = neuron_columns(data.host_responses, d.n_neurons, columns);
    if (!ceilings.empty()) ceilings = neuron_columns(ceilings, d.n_neurons, columns);
  }
  const std::vector<float>& observed = columns.empty() ? data.host_responses : responses;
  if (loss) {
    r.loss = *loss;
  } else {  // the Poisson loss (a sum over neurons) on the host, from the evaluation-mode predictions
    double sum = 0;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t n = 0; n < S; ++n) {
        const double yhat = predictions[static_cast<size_t>(t * S + n)];
        sum += yhat - observed[static_cast<size_t>(rows[static_cast<size_t>(t)] * S + n)] * std::log(yhat + poisson_eps);
      }
    r.loss = sum / static_cast<double>(T);
  }
  r.metrics = metrics::evaluate(metrics::ConstMatrix<float>(predictions, T, S, "predictions"),
                                metrics::ConstMatrix<float>(observed, d.n_trials, S, "responses"), rows, d.image_ids,
                                metrics::EvaluationOptions{0.0, tier_name(tier)});
  if (!ceilings.empty()) {
    double mean = 0;
    for (float c : ceilings) mean += c;
    mean /= static_cast<double>(ceilings.size());
    r.mean_ceiling_correlation = mean;
    if (mean > 0) r.ceiling_fraction = r.metrics.test_correlation / mean;
  }
  return r;
}

std::vector<int64_t> evaluation_columns(const std::string& spec, const Dataset& full,
                                        const NeuronSelection& model_neurons, const std::string& option) {
  const NeuronSelection wanted = parse_neuron_selection(spec, full, option);
  if (model_neurons.all()) return wanted.indices;
  const auto& have = model_neurons.indices;
  std::vector<int64_t> columns;
  for (int64_t k : wanted.indices) {
    const auto it = std::lower_bound(have.begin(), have.end(), k);
    if (it == have.end() || *it != k)
      throw ConfigError(option + " '" + spec + "' includes neuron " + std::to_string(k) +
                            ", which the model does not predict (it was trained on neurons " + model_neurons.spec +
                            " of " + full.source + ")",
                        "the command line",
                        "choose neurons within " + model_neurons.spec +
                            ", or evaluate a model trained on all neurons (or on these)");
    columns.push_back(static_cast<int64_t>(it - have.begin()));
  }
  return columns;
}

Predictions predict_tier(Model<Real>& model, const Dataset& d, const Preprocessing& p, Tier tier, int readout) {
  TrainingData data = prepare_training_data(d, p);
  const auto rows = nonempty_tier_rows(d, tier, "predict");
  auto ws = model.make_workspace(model.config().train.eval_batch_size);
  IndexStaging staging(ws.capacity);
  Predictions out;
  out.values = predict_rows(model, ws, staging, data, rows, readout);
  out.trials = static_cast<int64_t>(rows.size());
  out.neurons = d.n_neurons;
  for (int64_t t = 0; t < out.trials; ++t) {
    out.image_ids.push_back(d.image_ids[static_cast<size_t>(rows[static_cast<size_t>(t)])]);
    for (int64_t n = 0; n < out.neurons; ++n)
      out.values[static_cast<size_t>(t * out.neurons + n)] *= p.response_std[static_cast<size_t>(n)];
  }
  return out;
}

Predictions predict_models(std::vector<Checkpoint>& models, const Dataset& d, Tier tier, int readout) {
  const auto r = static_cast<size_t>(readout);
  if (models.size() == 1) return predict_tier(*models[0].model, d, models[0].readout_preprocessing.at(r), tier, readout);
  Predictions out;
  std::vector<double> sum;
  for (auto& m : models) {
    Predictions p = predict_tier(*m.model, d, m.readout_preprocessing.at(r), tier, readout);
    if (sum.empty()) {
      sum.assign(p.values.size(), 0.0);
      out.image_ids = p.image_ids;
      out.trials = p.trials;
      out.neurons = p.neurons;
    }
    for (size_t k = 0; k < sum.size(); ++k) sum[k] += p.values[k];
  }
  out.values.resize(sum.size());
  for (size_t k = 0; k < sum.size(); ++k) out.values[k] = static_cast<float>(sum[k] / static_cast<double>(models.size()));
  return out;
}

EvaluationReport evaluate_models(std::vector<Checkpoint>& models, const Dataset& d, Tier tier, int readout,
                                 const std::vector<int64_t>& columns) {
  const Preprocessing& first = models.front().readout_preprocessing.at(static_cast<size_t>(readout));
  if (models.size() == 1) return evaluate_model(*models[0].model, d, first, tier, readout, columns);
  Predictions mean = predict_models(models, d, tier, readout);
  for (int64_t t = 0; t < mean.trials; ++t)
    for (int64_t n = 0; n < mean.neurons; ++n)
      mean.values[static_cast<size_t>(t * mean.neurons + n)] /= first.response_std[static_cast<size_t>(n)];
  return score_predictions(d, prepare_training_data(d, first), tier, std::move(mean.values),
                           models.front().model->poisson_eps(), columns);
}

std::string evaluation_json(const EvaluationReport& e) {
  const auto& m = e.metrics;
  std::ostringstream s;
  s << "{\"tier\": " << json_string(tier_name(e.tier)) << ", \"loss\": " << json_number(e.loss)
    << ", \"test_correlation\": " << json_number(m.test_correlation)
    << ", \"single_trial_correlation\": " << json_number(m.single_trial_correlation)
    << ", \"oracle\": " << json_number(m.oracle) << ", \"fraction_oracle\": " << json_number(m.fraction_oracle)
    << ", \"fev\": " << json_number(m.fev) << ", \"feve\": " << json_number(m.feve)
    << ", \"feve_neurons_left_out\": " << m.feve_neurons_left_out
    << ", \"correlation_upper_bound\": " << json_number(m.correlation_upper_bound)
    << ", \"n_neurons\": " << m.test_correlation_per_neuron.size();
  if (e.ceiling_fraction) s << ", \"ceiling_fraction\": " << json_number(*e.ceiling_fraction);
  if (e.mean_ceiling_correlation) s << ", \"mean_ceiling_correlation\": " << json_number(*e.mean_ceiling_correlation);
  s << ", \"n_trials\": " << m.n_trials << ", \"n_images\": " << m.n_images << "}";
  return s.str();
}

std::string metrics_json(const TrainResult& t, const EvaluationReport* e, const ModelConfig& c,
                         const std::vector<std::pair<std::string, EvaluationReport>>& per_dataset,
                         const std::string& neurons) {
  std::ostringstream s;
  s << "{\n  \"status\": " << json_string(t.status) << ",\n  \"message\": " << json_string(t.message)
    << ",\n  \"best_val_loss\": " << json_number(t.best_val_loss);
  if (e) {
    s << ",\n  \"test_correlation\": " << json_number(e->metrics.test_correlation)
      << ",\n  \"feve\": " << json_number(e->metrics.feve)
      << ",\n  \"feve_neurons_left_out\": " << e->metrics.feve_neurons_left_out
      << ",\n  \"fraction_oracle\": " << json_number(e->metrics.fraction_oracle)
      << ",\n  \"single_trial_correlation\": " << json_number(e->metrics.single_trial_correlation)
      << ",\n  \"test_loss\": " << json_number(e->loss);
    if (e->ceiling_fraction) s << ",\n  \"ceiling_fraction\": " << json_number(*e->ceiling_fraction);
    if (e->mean_ceiling_correlation)
      s << ",\n  \"mean_ceiling_correlation\": " << json_number(*e->mean_ceiling_correlation);
  }
  s << ",\n  \"iterations\": " << t.iterations << ",\n  \"steps\": " << t.steps
    << ",\n  \"best_iteration\": " << t.best_iteration << ",\n  \"restored_best\": " << (t.restored_best ? "true" : "false")
    << ",\n  \"final_learning_rate\": " << json_number(t.final_learning_rate)
    << ",\n  \"wall_seconds\": " << json_number(t.wall_seconds) << ",\n  \"seed\": " << c.train.seed
    << ",\n  \"data_fraction\": " << json_number(c.train.data_fraction);
  if (c.train.lurz()) s << ",\n  \"best_val_correlation\": " << json_number(t.best_val_correlation);
  if (!neurons.empty()) s << ",\n  \"neurons\": " << json_string(neurons);
  if (!per_dataset.empty()) {
    s << ",\n  \"datasets\": {";
    for (size_t k = 0; k < per_dataset.size(); ++k)
      s << (k ? ",\n    " : "\n    ") << json_string(per_dataset[k].first) << ": " << evaluation_json(per_dataset[k].second);
    s << "\n  }";
  }
  s << "\n}\n";
  return s.str();
}

void copy_core(const Model<Real>& from, Model<Real>& to, const std::string& origin) {
  const auto& src = from.arena();
  auto& dst = to.arena();
  auto host_src = Kokkos::create_mirror_view_and_copy(HostSpace(), src.params());
  auto host_dst = Kokkos::create_mirror_view_and_copy(HostSpace(), dst.params());
  int copied = 0;
  for (const auto& s : dst.slots()) {
    if (s.name.rfind("core/", 0) != 0) continue;
    const int i = src.find(s.name);
    if (i < 0 || src.slot(i).extents != s.extents || src.slot(i).rank != s.rank)
      throw ShapeError("core parameter '" + s.name + "' is missing or has another shape in the checkpoint", origin,
                       "use a checkpoint whose core section (and image size) matches the model YAML");
    const auto& f = src.slot(i);
    for (size_t k = 0; k < s.size; ++k) host_dst(s.offset + k) = host_src(f.offset + k);
    ++copied;
  }
  if (copied == 0) throw ShapeError("the model has no core parameters", origin, "");
  Kokkos::deep_copy(dst.params(), host_dst);
}

namespace {
std::string core_yaml(const ModelConfig& c) {
  ModelConfig only_core;
  only_core.core = c.core;
  const std::string y = to_yaml(only_core);
  return y.substr(0, y.find("readout:"));
}
}  // namespace

void check_init_core(const Model<Real>& source, const std::string& source_origin, const ModelConfig& config,
                     int64_t height, int64_t width, const std::string& config_origin) {
  if (core_yaml(source.config()) != core_yaml(config) || source.height() != height || source.width() != width)
    throw ConfigError("the core of " + source_origin + " differs from the core of " + config_origin +
                          " (or its images have another size)",
                      "--init-core", "use the same core: section (the checkpoint's config attribute has it)");
}

void require_distinct_data_keys(const std::vector<std::string>& paths, const std::string& option) {
  if (paths.size() < 2) return;
  for (size_t b = 1; b < paths.size(); ++b)
    for (size_t a = 0; a < b; ++a)
      if (data_key_from_path(paths[a]) == data_key_from_path(paths[b]))
        throw ConfigError(option + " " + paths[a] + " and " + option + " " + paths[b] + " have the same data_key '" +
                              data_key_from_path(paths[b]) + "', which names each dataset's readout",
                          "the command line",
                          "pass each dataset once, and rename one of two files of the same name (the key is the "
                          "file name stem)");
}

std::unique_ptr<PreparedDataset> prepare_dataset(const std::string& path, const std::string& neurons,
                                                 const std::string& option) {
  auto p = std::make_unique<PreparedDataset>();
  p->path = path;
  p->dataset = load_dataset(path);
  NeuronSelection selection;
  if (!neurons.empty()) {
    selection = parse_neuron_selection(neurons, p->dataset, option);
    keep_neurons(p->dataset, selection.indices);
  }
  p->preprocessing = compute_preprocessing(p->dataset);
  p->preprocessing.neurons = selection;
  p->data = prepare_training_data(p->dataset, p->preprocessing);
  return p;
}

namespace {
// spec.config with the overrides applied; has_init_core: whether a core will be given (train checks its
// options before it loads the checkpoint).
ModelConfig resolved_config(const RunSpec& spec, bool has_init_core) {
  ModelConfig config = spec.config;
  if (spec.seed) config.train.seed = *spec.seed;
  if (spec.max_iterations) {
    if (*spec.max_iterations < 1) throw ConfigError("--max-iterations must be positive", "the command line", "");
    config.train.max_iterations = *spec.max_iterations;
  }
  if (spec.data_fraction) {
    if (!(*spec.data_fraction > 0 && *spec.data_fraction <= 1))
      throw ConfigError("--data-fraction must be in (0, 1]", "the command line", "");
    config.train.data_fraction = *spec.data_fraction;
  }
  if (spec.freeze_core && !has_init_core)
    throw ConfigError("--freeze-core without --init-core would freeze a random core", "the command line",
                      "pass --init-core CHECKPOINT with --freeze-core (or --init-core random for a random core)");
  if (spec.random_core && !spec.freeze_core)
    throw ConfigError("--init-core random without --freeze-core is training from scratch", "the command line",
                      "add --freeze-core (the random-core null of a transfer), or drop --init-core");
  return config;
}
}  // namespace

RunOutcome train_one(const RunSpec& spec) {
  RunOutcome out;
  out.config = resolved_config(spec, spec.init_core != nullptr || spec.random_core);
  const ModelConfig& config = out.config;
  if (spec.datasets.empty()) throw ConfigError("no dataset to train on", spec.config_origin, "give a dataset");
  const bool multi = spec.datasets.size() > 1;
  const Dataset& d0 = spec.datasets.front()->dataset;
  std::vector<ReadoutSpec> readouts;
  for (const PreparedDataset* p : spec.datasets) {
    const Dataset& d = p->dataset;
    if (d.height != d0.height || d.width != d0.width)
      throw DataError("images are " + std::to_string(d.height) + " x " + std::to_string(d.width) + ", those of " +
                          spec.datasets.front()->path + " " + std::to_string(d0.height) + " x " +
                          std::to_string(d0.width),
                      p->path, "one core needs datasets with one image size");
    readouts.push_back(ReadoutSpec{multi ? d.data_key : std::string(), static_cast<int>(d.n_neurons)});
  }
  out.model = std::make_unique<Model<Real>>(config, static_cast<int>(d0.height), static_cast<int>(d0.width), readouts);
  Model<Real>& model = *out.model;
  std::vector<Batcher> batchers;
  std::vector<ReadoutInit> inits;
  std::vector<const TrainingData*> data;
  for (size_t k = 0; k < spec.datasets.size(); ++k) {
    const PreparedDataset& p = *spec.datasets[k];
    // Dataset 0 keeps the seed of a one-dataset run; the others get their own minibatch streams.
    batchers.emplace_back(p.data.train_rows, config.train.data_fraction, config.train.batch_size,
                          config.train.seed + 7919 * k);
    // The cortical coordinates feed the Gaussian readout's cortex grid predictor (ignored by other readouts).
    inits.push_back(ReadoutInit{mean_response(p.data, batchers.back().rows()), p.dataset.cortical_coordinates});
    data.push_back(&p.data);
  }
  model.initialize(config.train.seed, inits);
  if (spec.init_core) {
    const Model<Real>& source = *spec.init_core;
    check_init_core(source, spec.init_core_origin, config, model.height(), model.width(), spec.config_origin);
    copy_core(source, model, spec.init_core_origin);
  }
  // resolved_config allows it only with an init core: the copied one, or (random_core) the one initialise() drew.
  model.set_core_frozen(spec.freeze_core);
  if (spec.before_training) spec.before_training();
  Trainer trainer(model, data, batchers);
  ScheduleControl control = spec.control;
  const std::string identity = to_yaml(config) + spec.state_identity;
  std::optional<TrainState> resumed;
  if (!spec.state_path.empty() && std::filesystem::exists(spec.state_path)) {
    try {
      TrainState state = load_train_state(spec.state_path);
      if (state.identity != identity)
        throw ConfigError("the training state belongs to another run (another model config, data or options)",
                          spec.state_path, "pass --force to train from the start, or choose another output");
      trainer.restore_state(state, spec.state_path);
      resumed = std::move(state);
    } catch (const Error& e) {
      if (!spec.discard_other_state) throw;
      // restore_state checks everything before it changes anything, so the model is still the initial one.
      std::fprintf(stderr, "%s: not resumed, training from the start: %s\n", spec.config_origin.c_str(), e.what());
    }
  }
  if (resumed) {
    control.resume = &resumed->schedule;
    out.resumed_at_step = resumed->schedule.steps;
    if (control.show_progress)
      std::fprintf(stderr, "%s: resuming at step %lld (iteration %lld) from %s\n", control.progress_label.c_str(),
                   static_cast<long long>(resumed->schedule.steps), static_cast<long long>(resumed->schedule.iteration),
                   spec.state_path.c_str());
  }
  if (!spec.state_path.empty()) {
    control.save_interval_s = spec.state_interval_s;
    // A state that cannot be written (a full disk, a quota) costs only the resumability: the run trains on, and
    // says so once; its result is written (or fails) as without states.
    control.save_state = [&, warned = false](const ScheduleState& schedule) mutable {
      try {
        TrainState state;
        state.identity = identity;
        trainer.capture_state(state);
        state.schedule = schedule;
        save_train_state(spec.state_path, state);
      } catch (const Error& e) {
        if (!warned)
          std::fprintf(stderr, "%s: its training state could not be saved (training goes on, but a stop now loses "
                       "the steps since the last saved state): %s\n", control.progress_label.c_str(), e.what());
        warned = true;
      }
    };
  }
  out.training = make_schedule(config.train)->run(trainer, control);
  if (out.training.status == "stopped" || out.training.status == "diverged" || out.training.status == "pruned") return out;
  for (size_t k = 0; k < spec.datasets.size(); ++k)
    out.evaluations.push_back(
        evaluate_model(model, spec.datasets[k]->dataset, spec.datasets[k]->data, Tier::test, static_cast<int>(k)));
  EvaluationReport summary = out.evaluations.front();
  if (multi) {
    // Neuron-weighted means over the datasets for the top-level numbers.
    double n_total = 0, tc = 0, st = 0, feve = 0, feve_n = 0, fo = 0, loss = 0;
    summary.metrics.feve_neurons_left_out = 0;
    for (const auto& e : out.evaluations) {
      const double n = static_cast<double>(e.metrics.test_correlation_per_neuron.size());
      n_total += n;
      tc += n * e.metrics.test_correlation;
      st += n * e.metrics.single_trial_correlation;
      // FEVE is a mean over the neurons with explainable variance only.
      const double included = n - static_cast<double>(e.metrics.feve_neurons_left_out);
      feve += included * e.metrics.feve;
      feve_n += included;
      summary.metrics.feve_neurons_left_out += e.metrics.feve_neurons_left_out;
      fo += n * e.metrics.fraction_oracle;
      loss += n * e.loss;
    }
    summary.metrics.test_correlation = tc / n_total;
    summary.metrics.single_trial_correlation = st / n_total;
    summary.metrics.feve = feve_n > 0 ? feve / feve_n : 0.0;
    summary.metrics.fraction_oracle = fo / n_total;
    summary.loss = loss / n_total;
    summary.ceiling_fraction.reset();
    summary.mean_ceiling_correlation.reset();
  }
  out.summary = summary;
  return out;
}

std::string train_state_path(const std::string& out_dir) {
  return (std::filesystem::path(out_dir) / "train_state.h5").string();
}

TrainOutcome run_training(const TrainOptions& o) {
  namespace fs = std::filesystem;
  TrainOutcome out;
  out.checkpoint_path = (fs::path(o.out_dir) / "checkpoint.h5").string();
  out.metrics_path = (fs::path(o.out_dir) / "metrics.json").string();
  if (fs::exists(out.checkpoint_path) && !o.force)
    throw IoError("the output exists", out.checkpoint_path, "pass --force to overwrite it or choose another --out");
  if (!(o.state_interval_s >= 0))
    throw ConfigError("--save-state-every must be 0 (no states) or positive", "the command line", "fix the value");
  const std::vector<std::string> paths = o.data_paths.empty() ? std::vector<std::string>{o.data_path} : o.data_paths;
  refuse_outputs_inside_datasets({o.out_dir}, paths);
  require_distinct_data_keys(paths);
  RunSpec spec;
  spec.config = load_model_config(o.model_path);
  spec.config_origin = o.model_path;
  spec.seed = o.seed;
  spec.max_iterations = o.max_iterations;
  spec.data_fraction = o.data_fraction;
  spec.freeze_core = o.freeze_core;
  spec.random_core = o.init_core == kRandomCore;
  spec.init_core_origin = o.init_core;
  resolved_config(spec, !o.init_core.empty());  // the options' errors before any data is read
  std::vector<std::unique_ptr<PreparedDataset>> datasets;
  for (const auto& path : paths) {
    datasets.push_back(prepare_dataset(path, o.neurons));
    spec.datasets.push_back(datasets.back().get());
  }
  std::optional<Checkpoint> source;
  if (!o.init_core.empty() && !spec.random_core) {
    source = load_checkpoint(o.init_core);
    spec.init_core = source->model.get();
  }
  spec.control.show_progress = o.show_progress;
  spec.before_training = [&] { create_output_folder(o.out_dir); };
  const std::string state_path = train_state_path(o.out_dir);
  if (o.force) {
    std::error_code ec;
    fs::remove(state_path, ec);  // --force starts over
  }
  if (o.state_interval_s > 0) {
    spec.state_path = state_path;
    spec.state_interval_s = o.state_interval_s;
    // The data and options besides the model config that make a run: a state of another run is refused.
    std::ostringstream identity;
    identity << "\ndata:";
    for (const auto& p : paths)
      identity << " " << fs::absolute(p).lexically_normal().string() << " ("
               << (fs::is_regular_file(p) ? std::to_string(fs::file_size(p)) + " bytes" : std::string("folder")) << ")";
    identity << "\nneurons: " << o.neurons << "\ninit_core: " << o.init_core << "\nfreeze_core: " << o.freeze_core << "\n";
    spec.state_identity = identity.str();
  }
  RunOutcome run = train_one(spec);
  out.training = run.training;
  out.lurz_schedule = run.config.train.lurz();
  out.resumed_at_step = run.resumed_at_step;
  const ModelConfig& config = run.config;
  std::string sources;
  for (const auto& p : paths) sources += (sources.empty() ? "" : ",") + p;
  if (out.training.status == "stopped") {
    // A preempted run has no finished model to offer: writing the best state so far under the final names would
    // pass a half-trained model off as the result. Only the training state is kept, to continue from.
    if (spec.state_path.empty())
      throw StoppedError("a stop signal ended the training after " + std::to_string(out.training.steps) +
                             " steps; nothing was written (--save-state-every 0)",
                         o.out_dir, "run the same command again to train the model from the start");
    throw StoppedError("a stop signal ended the training after " + std::to_string(out.training.steps) +
                           " steps; its state is saved in " + spec.state_path,
                       o.out_dir, "run the same command again to continue from that step");
  }
  auto remove_state = [&] {
    std::error_code ec;
    if (!spec.state_path.empty()) fs::remove(spec.state_path, ec);
  };
  if (out.training.status == "diverged") {
    write_file_atomically(out.metrics_path, metrics_json(out.training, nullptr, config, {}, o.neurons));
    remove_state();  // resuming it would diverge again
    throw DivergedError("training diverged: " + out.training.message, o.model_path + " on " + sources,
                        "lower train.learning_rate or check the data; status recorded in " + out.metrics_path);
  }
  out.evaluation = run.evaluations.front();
  if (datasets.size() > 1)
    for (size_t k = 0; k < datasets.size(); ++k)
      out.dataset_evaluations.emplace_back(datasets[k]->dataset.data_key, run.evaluations[k]);
  std::vector<Preprocessing> preps;
  for (const auto& d : datasets) preps.push_back(d->preprocessing);
  save_checkpoint(out.checkpoint_path, *run.model, preps, out.training, sources, o.force);
  write_file_atomically(out.metrics_path,
                        metrics_json(out.training, &*run.summary, config, out.dataset_evaluations, o.neurons));
  remove_state();  // the result is written: nothing left to resume
  return out;
}

}  // namespace v1sysid
