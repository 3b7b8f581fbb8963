#include "train/pipeline.hpp"

#include "core/error.hpp"
#include "core/stop.hpp"
#include "io/output_file.hpp"

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
  EvaluationReport r;
  r.tier = tier;
  auto predictions = predict_rows(model, ws, staging, data, rows, readout);
  const auto T = static_cast<int64_t>(rows.size());
  std::vector<float> ceilings = d.ground_truth ? d.ground_truth->ceiling_correlation : std::vector<float>{};
  if (columns.empty()) {
    r.loss = evaluation_loss(model, ws, staging, data, rows, readout);
    r.metrics = metrics::evaluate(metrics::ConstMatrix<float>(predictions, T, d.n_neurons, "predictions"),
                                  metrics::ConstMatrix<float>(data.host_responses, d.n_trials, d.n_neurons, "responses"),
                                  rows, d.image_ids, metrics::EvaluationOptions{0.0, tier_name(tier)});
  } else {
    // A subset of the model's neurons: the same metrics on those columns; the loss (a sum over neurons) on the
    // host, from the evaluation-mode predictions.
    const auto S = static_cast<int64_t>(columns.size());
    predictions = neuron_columns(predictions, d.n_neurons, columns);
    const auto responses = neuron_columns(data.host_responses, d.n_neurons, columns);
    if (!ceilings.empty()) ceilings = neuron_columns(ceilings, d.n_neurons, columns);
    const double eps = model.poisson_eps();
    double loss = 0;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t n = 0; n < S; ++n) {
        const double yhat = predictions[static_cast<size_t>(t * S + n)];
        loss += yhat - responses[static_cast<size_t>(rows[static_cast<size_t>(t)] * S + n)] * std::log(yhat + eps);
      }
    r.loss = loss / static_cast<double>(T);
    r.metrics = metrics::evaluate(metrics::ConstMatrix<float>(predictions, T, S, "predictions"),
                                  metrics::ConstMatrix<float>(responses, d.n_trials, S, "responses"), rows,
                                  d.image_ids, metrics::EvaluationOptions{0.0, tier_name(tier)});
  }
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

TrainOutcome run_training(const TrainOptions& o) {
  namespace fs = std::filesystem;
  TrainOutcome out;
  out.checkpoint_path = (fs::path(o.out_dir) / "checkpoint.h5").string();
  out.metrics_path = (fs::path(o.out_dir) / "metrics.json").string();
  if (fs::exists(out.checkpoint_path) && !o.force)
    throw IoError("the output exists", out.checkpoint_path, "pass --force to overwrite it or choose another --out");
  const std::vector<std::string> paths = o.data_paths.empty() ? std::vector<std::string>{o.data_path} : o.data_paths;
  refuse_outputs_inside_datasets({o.out_dir}, paths);
  ModelConfig config = load_model_config(o.model_path);
  if (o.seed) config.train.seed = *o.seed;
  if (o.max_iterations) {
    if (*o.max_iterations < 1) throw ConfigError("--max-iterations must be positive", "the command line", "");
    config.train.max_iterations = *o.max_iterations;
  }
  if (o.data_fraction) {
    if (!(*o.data_fraction > 0 && *o.data_fraction <= 1))
      throw ConfigError("--data-fraction must be in (0, 1]", "the command line", "");
    config.train.data_fraction = *o.data_fraction;
  }
  if (o.freeze_core && o.init_core.empty())
    throw ConfigError("--freeze-core without --init-core would freeze a random core", "the command line",
                      "pass --init-core CHECKPOINT with --freeze-core");
  const bool multi = paths.size() > 1;
  std::vector<Dataset> datasets;
  std::vector<Preprocessing> preps;
  std::vector<TrainingData> datas;
  std::vector<ReadoutSpec> specs;
  for (const auto& path : paths) {
    datasets.push_back(load_dataset(path));
    auto& d = datasets.back();
    NeuronSelection selection;
    if (!o.neurons.empty()) {
      selection = parse_neuron_selection(o.neurons, d, "--neurons");
      keep_neurons(d, selection.indices);
    }
    if (d.height != datasets.front().height || d.width != datasets.front().width)
      throw DataError("images are " + std::to_string(d.height) + " x " + std::to_string(d.width) + ", those of " +
                          paths.front() + " " + std::to_string(datasets.front().height) + " x " +
                          std::to_string(datasets.front().width),
                      path, "one core needs datasets with one image size");
    preps.push_back(compute_preprocessing(d));
    preps.back().neurons = selection;
    specs.push_back(ReadoutSpec{multi ? d.data_key : std::string(), static_cast<int>(d.n_neurons)});
  }
  for (size_t k = 0; k < datasets.size(); ++k) datas.push_back(prepare_training_data(datasets[k], preps[k]));
  const auto& d0 = datasets.front();
  Model<Real> model(config, static_cast<int>(d0.height), static_cast<int>(d0.width), specs);
  std::vector<Batcher> batchers;
  std::vector<ReadoutInit> inits;
  for (size_t k = 0; k < datasets.size(); ++k) {
    // Dataset 0 keeps the seed of a one-dataset run; the others get their own minibatch streams.
    batchers.emplace_back(datas[k].train_rows, config.train.data_fraction, config.train.batch_size,
                          config.train.seed + 7919 * k);
    inits.push_back(ReadoutInit{mean_response(datas[k], batchers.back().rows()), datasets[k].cortical_coordinates});
  }
  model.initialize(config.train.seed, inits);
  if (!o.init_core.empty()) {
    const Checkpoint source = load_checkpoint(o.init_core);
    if (core_yaml(source.model->config()) != core_yaml(config) || source.model->height() != model.height() ||
        source.model->width() != model.width())
      throw ConfigError("the core of " + o.init_core + " differs from the core of " + o.model_path +
                            " (or its images have another size)",
                        "--init-core", "use the same core: section (the checkpoint's config attribute has it)");
    copy_core(*source.model, model, o.init_core);
    model.set_core_frozen(o.freeze_core);
  }
  create_output_folder(o.out_dir);
  std::vector<const TrainingData*> data_ptrs;
  for (const auto& t : datas) data_ptrs.push_back(&t);
  Trainer trainer(model, data_ptrs, batchers);
  out.training = trainer.run(o.show_progress);
  std::string sources;
  for (const auto& p : paths) sources += (sources.empty() ? "" : ",") + p;
  if (out.training.status == "stopped") {
    // A preempted run has no finished model to offer: writing the best state so far under the final names would
    // pass a half-trained model off as the result. Nothing is written; a rerun trains from the start.
    throw StoppedError("a stop signal ended the training after " + std::to_string(out.training.steps) +
                           " steps; nothing was written",
                       o.out_dir, "run the same command again to train the model from the start");
  }
  if (out.training.status == "diverged") {
    write_file_atomically(out.metrics_path, metrics_json(out.training, nullptr, config, {}, o.neurons));
    throw DivergedError("training diverged: " + out.training.message, o.model_path + " on " + sources,
                        "lower train.learning_rate or check the data; status recorded in " + out.metrics_path);
  }
  for (size_t k = 0; k < datasets.size(); ++k) {
    auto e = evaluate_model(model, datasets[k], datas[k], Tier::test, static_cast<int>(k));
    if (multi) out.dataset_evaluations.emplace_back(datasets[k].data_key, e);
    if (k == 0) out.evaluation = e;
  }
  EvaluationReport summary = *out.evaluation;
  if (multi) {
    // Neuron-weighted means over the datasets for the top-level numbers.
    double n_total = 0, tc = 0, st = 0, feve = 0, feve_n = 0, fo = 0, loss = 0;
    summary.metrics.feve_neurons_left_out = 0;
    for (const auto& [key, e] : out.dataset_evaluations) {
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
  save_checkpoint(out.checkpoint_path, model, preps, out.training, sources, o.force);
  write_file_atomically(out.metrics_path,
                        metrics_json(out.training, &summary, config, out.dataset_evaluations, o.neurons));
  return out;
}

}  // namespace v1sysid
