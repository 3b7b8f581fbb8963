#include "train/pipeline.hpp"

#include "core/error.hpp"

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

void write_text(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".partial";
  {
    std::ofstream f(tmp);
    if (!f) throw IoError("cannot write", path, "check that the folder is writable");
    f << text;
    if (!f) throw IoError("write failed", path, "check the free disk space");
  }
  std::filesystem::rename(tmp, path);
}

}  // namespace

EvaluationReport evaluate_model(Model<Real>& model, const Dataset& d, const Preprocessing& p, Tier tier) {
  TrainingData data = prepare_training_data(d, p);
  const auto rows = d.indices(tier);
  if (rows.empty())
    throw DataError(std::string("the dataset has no '") + tier_name(tier) + "' trials", d.source,
                    "evaluate another tier");
  auto ws = model.make_workspace(model.config().train.eval_batch_size);
  IndexStaging staging(ws.capacity);
  EvaluationReport r;
  r.tier = tier;
  const auto predictions = predict_rows(model, ws, staging, data, rows);
  r.loss = evaluation_loss(model, ws, staging, data, rows);
  const auto T = static_cast<int64_t>(rows.size());
  r.metrics = metrics::evaluate(metrics::ConstMatrix<float>(predictions, T, d.n_neurons, "predictions"),
                                metrics::ConstMatrix<float>(data.host_responses, d.n_trials, d.n_neurons, "responses"),
                                rows, d.image_ids);
  if (d.ground_truth && !d.ground_truth->ceiling_correlation.empty()) {
    double mean = 0;
    for (float c : d.ground_truth->ceiling_correlation) mean += c;
    mean /= static_cast<double>(d.ground_truth->ceiling_correlation.size());
    r.mean_ceiling_correlation = mean;
    if (mean > 0) r.ceiling_fraction = r.metrics.test_correlation / mean;
  }
  return r;
}

Predictions predict_tier(Model<Real>& model, const Dataset& d, const Preprocessing& p, Tier tier) {
  TrainingData data = prepare_training_data(d, p);
  const auto rows = d.indices(tier);
  if (rows.empty())
    throw DataError(std::string("the dataset has no '") + tier_name(tier) + "' trials", d.source,
                    "predict another tier");
  auto ws = model.make_workspace(model.config().train.eval_batch_size);
  IndexStaging staging(ws.capacity);
  Predictions out;
  out.values = predict_rows(model, ws, staging, data, rows);
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
    << ", \"correlation_upper_bound\": " << json_number(m.correlation_upper_bound);
  if (e.ceiling_fraction) s << ", \"ceiling_fraction\": " << json_number(*e.ceiling_fraction);
  if (e.mean_ceiling_correlation) s << ", \"mean_ceiling_correlation\": " << json_number(*e.mean_ceiling_correlation);
  s << ", \"n_trials\": " << m.n_trials << ", \"n_images\": " << m.n_images << "}";
  return s.str();
}

std::string metrics_json(const TrainResult& t, const EvaluationReport* e, const ModelConfig& c) {
  std::ostringstream s;
  s << "{\n  \"status\": " << json_string(t.status) << ",\n  \"message\": " << json_string(t.message)
    << ",\n  \"best_val_loss\": " << json_number(t.best_val_loss);
  if (e) {
    s << ",\n  \"test_correlation\": " << json_number(e->metrics.test_correlation)
      << ",\n  \"feve\": " << json_number(e->metrics.feve)
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
    << ",\n  \"data_fraction\": " << json_number(c.train.data_fraction) << "\n}\n";
  return s.str();
}

TrainOutcome run_training(const TrainOptions& o) {
  namespace fs = std::filesystem;
  TrainOutcome out;
  out.checkpoint_path = (fs::path(o.out_dir) / "checkpoint.h5").string();
  out.metrics_path = (fs::path(o.out_dir) / "metrics.json").string();
  if (fs::exists(out.checkpoint_path) && !o.force)
    throw IoError("the output exists", out.checkpoint_path, "pass --force to overwrite it or choose another --out");
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
  const Dataset d = load_dataset(o.data_path);
  const Preprocessing p = compute_preprocessing(d);
  TrainingData data = prepare_training_data(d, p);
  Model<Real> model(config, static_cast<int>(d.height), static_cast<int>(d.width), static_cast<int>(d.n_neurons));
  Batcher batcher(data.train_rows, config.train.data_fraction, config.train.batch_size, config.train.seed);
  model.initialize(config.train.seed, mean_response(data, batcher.rows()));
  fs::create_directories(o.out_dir);
  Trainer trainer(model, data, batcher);
  out.training = trainer.run(o.show_progress);
  if (out.training.status == "diverged") {
    write_text(out.metrics_path, metrics_json(out.training, nullptr, config));
    throw DivergedError("training diverged: " + out.training.message, o.model_path + " on " + o.data_path,
                        "lower train.learning_rate or check the data; status recorded in " + out.metrics_path);
  }
  out.evaluation = evaluate_model(model, d, p, Tier::test);
  save_checkpoint(out.checkpoint_path, model, p, out.training, o.data_path, o.force);
  write_text(out.metrics_path, metrics_json(out.training, &*out.evaluation, config));
  return out;
}

}  // namespace v1sysid
