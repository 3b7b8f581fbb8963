#include "model/model_config.hpp"

#include "config/config_reader.hpp"
#include "core/error.hpp"
#include "model/architectures.hpp"

#include <yaml-cpp/yaml.h>

#include <limits>

namespace v1sysid {

const char* nonlinearity_name(Nonlinearity n) {
  switch (n) {
    case Nonlinearity::softplus: return "softplus";
    case Nonlinearity::elu: return "elu";
    case Nonlinearity::none: break;
  }
  return "none";
}

namespace {
constexpr int kMaxInt = std::numeric_limits<int>::max();
// Published cores use kernels up to 15 (Lurz) and 13 (Ecker); a larger one is a typo and would otherwise
// fail later as an allocation of kernel^2 * channels^2 weights.
constexpr int kMaxFilterSize = 99;
constexpr double kInf = std::numeric_limits<double>::max();

Nonlinearity parse_nonlinearity(ConfigReader& r, const std::string& key, const std::string& name) {
  if (name == "softplus") return Nonlinearity::softplus;
  if (name == "elu") return Nonlinearity::elu;
  if (name == "none") return Nonlinearity::none;
  r.fail(key, "expected one of {softplus, elu, none}, got \"" + name + "\"");
}
}  // namespace

int64_t CoreConfig::output_height(int64_t h) const {
  for (int l = 0; l < num_layers(); ++l)
    if (layer_padding(l) == "valid") h -= filter_sizes[static_cast<size_t>(l)] - 1;
  return h;
}
int64_t CoreConfig::output_width(int64_t w) const { return output_height(w); }

void CoreConfig::decode(ConfigReader& r) {
  r.get_choice("kind", kind, {"cnn", "roteq", "stacked2d"});
  if (kind == "stacked2d") {  // Lurz et al. 2021 SE2dCore defaults (reference-models.md §5.1)
    filter_sizes = {15, 13, 13, 13};
    channels = {64, 64, 64, 64};
    nonlinearities.assign(4, Nonlinearity::elu);
    padding = "valid";
    batchnorm_decay = 0.9;
    batchnorm_eps = 1e-5;
    batchnorm_scale.assign(4, true);
    rel_smooth.assign(4, 0.0);
    rel_sparse.assign(4, 0.0);
    laplace_weight = 1.0;
  }
  r.get("filter_sizes", filter_sizes);
  if (rotation_equivariant()) {
    // Defaults of the reference's rotation-equivariant core (reference-models.md §1.2-§1.3).
    features = {16, 16, 16};
    rotations = 8;
    batchnorm_decay = 0.9;
    if (r.has("channels"))
      r.fail("channels", "a roteq core is sized by 'features' (per rotation) and 'rotations'; its channels are "
                         "rotations * features");
    r.get("features", features);
    r.get_in_range("rotations", rotations, 1, 360);
    r.get("batchnorm_shared_rotations", batchnorm_shared_rotations);
    r.get_in_range("coeff_init_sd", coeff_init_sd, 0.0, kInf);
    channels.clear();
    for (int f : features) {
      if (f < 1) r.fail("features", "expected positive feature counts, got " + std::to_string(f));
      channels.push_back(rotations * f);
    }
  } else {
    r.get("channels", channels);
  }
  if (r.has("nonlinearities")) {
    std::vector<std::string> names;
    r.get("nonlinearities", names);
    nonlinearities.clear();
    for (const auto& n : names) nonlinearities.push_back(parse_nonlinearity(r, "nonlinearities", n));
  }
  r.get_choice("padding", padding, {"same", "valid"});
  r.get_in_range("batchnorm_decay", batchnorm_decay, 0.0, 1.0);
  r.get_in_range("batchnorm_eps", batchnorm_eps, 1e-12, 1.0);
  r.get("batchnorm_scale", batchnorm_scale);
  r.get_in_range("smooth_weight", smooth_weight, 0.0, kInf);
  r.get_in_range("sparse_weight", sparse_weight, 0.0, kInf);
  r.get("rel_smooth", rel_smooth).get("rel_sparse", rel_sparse);
  r.get_in_range("laplace_weight", laplace_weight, 0.0, kInf);
  // Per-layer lists must agree with the number of layers; a short list is a typo, not a request to pad.
  const size_t n = channels.size();
  const std::string layers_key = rotation_equivariant() ? "features" : "channels";
  if (n == 0) r.fail(layers_key, "expected at least one layer");
  auto same_length = [&](const std::string& key, size_t len) {
    if (len != n) r.fail(key, "expected " + std::to_string(n) + " entries (one per layer, as in " + layers_key +
                                  "), got " + std::to_string(len));
  };
  same_length("filter_sizes", filter_sizes.size());
  same_length("nonlinearities", nonlinearities.size());
  same_length("batchnorm_scale", batchnorm_scale.size());
  same_length("rel_smooth", rel_smooth.size());
  same_length("rel_sparse", rel_sparse.size());
  for (size_t i = 0; i < n; ++i) {
    if (filter_sizes[i] < 1 || filter_sizes[i] > kMaxFilterSize || filter_sizes[i] % 2 == 0)
      r.fail("filter_sizes", "expected odd kernel sizes in [1, " + std::to_string(kMaxFilterSize) + "], got " +
                                 std::to_string(filter_sizes[i]));
    if (channels[i] < 1) r.fail("channels", "expected positive channel counts, got " + std::to_string(channels[i]));
    if (rel_smooth[i] < 0 || rel_sparse[i] < 0) r.fail("rel_smooth", "expected non-negative relative weights");
  }
  r.finish();
}

void ReadoutConfig::decode(ConfigReader& r) {
  r.get_choice("kind", kind, {"factorized", "gaussian"});
  if (kind == "gaussian") {  // Lurz et al. 2021 paper config (reference-models.md §5.1)
    regularizer = "l1_features";
    feature_weight = 2.439;
  }
  r.get_choice("regularizer", regularizer, {"joint_l1", "l1_mask_l2_features", "separate_l1", "l1_features"});
  r.get_in_range("weight", weight, 0.0, kInf);
  r.get_in_range("mask_weight", mask_weight, 0.0, kInf);
  r.get_in_range("feature_weight", feature_weight, 0.0, kInf);
  r.get("positive_features", positive_features);
  r.get_in_range("init_sigma", init_sigma, 0.0, 10.0);
  r.get_in_range("init_mu_range", init_mu_range, 0.0, 1.0);
  r.get_choice("grid_predictor", grid_predictor, {"none", "cortex"});
  if (kind == "gaussian") {
    if (regularizer != "l1_features")
      r.fail("regularizer", "the gaussian readout takes regularizer l1_features (feature_weight * sum |features|)");
    if (weight != 0 || mask_weight != 0 || positive_features)
      r.fail("kind", "the gaussian readout has no mask: weight, mask_weight and positive_features must stay 0/false");
    r.finish();
    return;
  }
  if (regularizer == "l1_features") r.fail("regularizer", "l1_features is the gaussian readout's regulariser");
  if (grid_predictor != "none") r.fail("grid_predictor", "only the gaussian readout has a grid predictor");
  // A weight the chosen regulariser ignores would silently do nothing: refuse it.
  if (regularizer == "joint_l1") {
    if (mask_weight != 0 || feature_weight != 0)
      r.fail("regularizer", "joint_l1 uses only 'weight'; set mask_weight/feature_weight to 0 or choose "
                            "separate_l1 / l1_mask_l2_features");
  } else if (weight != 0) {
    r.fail("weight", "'weight' is the joint_l1 weight; " + regularizer + " uses mask_weight and feature_weight");
  }
  r.finish();
}

void TrainConfig::decode(ConfigReader& r) {
  r.get_choice("schedule", schedule, {"ecker", "lurz"});
  if (schedule == "lurz") {  // L:training/trainers.py:standard_trainer (reference-models.md §5.2)
    learning_rate = 0.005;
    batch_size = 64;
    patience = 5;
    lr_decay_steps = 3;
    lr_decay_factor = 1.0 / 0.3;
  }
  r.get_in_range("learning_rate", learning_rate, 1e-12, 10.0);
  r.get_in_range("batch_size", batch_size, 1, kMaxInt);
  r.get_in_range("val_every", val_every, 1, kMaxInt);
  r.get_in_range("patience", patience, 1, kMaxInt);
  r.get_in_range("lr_decay_steps", lr_decay_steps, 0, 1000);
  r.get_in_range("lr_decay_factor", lr_decay_factor, 1.0, kInf);
  r.get_in_range<int64_t>("max_iterations", max_iterations, 1, std::numeric_limits<int64_t>::max());
  r.get("data_fraction", data_fraction);
  if (!(data_fraction > 0.0 && data_fraction <= 1.0))
    r.fail("data_fraction", "expected a fraction in (0, 1], got " + std::to_string(data_fraction));
  r.get("seed", seed);
  r.get("restore_best_at_max_iterations", restore_best_at_max_iterations);
  r.get_in_range("eval_batch_size", eval_batch_size, 1, kMaxInt);
  r.get_in_range("max_epochs", max_epochs, 1, kMaxInt);
  r.get_in_range("min_learning_rate", min_learning_rate, 0.0, 10.0);
  r.finish();
}

void ModelConfig::validate(const std::string& origin) const {
  if (core.num_layers() != static_cast<int>(core.filter_sizes.size()))
    throw ConfigError("core.filter_sizes and core.channels differ in length", origin, "give one entry per layer");
}

namespace {
ModelConfig decode_model(const YAML::Node& root, const std::string& origin) {
  ModelConfig c;
  ConfigReader r(root, origin);
  auto core = r.child("core");
  c.core.decode(core);
  auto readout = r.child("readout");
  c.readout.decode(readout);
  auto train = r.child("train");
  c.train.decode(train);
  r.finish();
  c.validate(origin);
  return c;
}

// A model YAML with `architecture: NAME` is the preset NAME with the file's own keys merged over it.
ModelConfig decode_with_architecture(const YAML::Node& root, const std::string& origin) {
  if (!root.IsMap() || !root["architecture"]) return decode_model(root, origin);
  const YAML::Node name_node = root["architecture"];
  if (!name_node.IsScalar())
    throw ConfigError("architecture: expected the name of a preset", origin,
                      "use one of: " + architecture_names_joined());
  const std::string name = name_node.Scalar();
  YAML::Node merged = architecture_preset_yaml(name, origin);
  YAML::Node own = YAML::Clone(root);
  own.remove("architecture");
  merge_yaml_over(merged, own);
  ModelConfig c = decode_model(merged, origin);
  c.architecture = name;
  return c;
}
}  // namespace

void require_model_sections(const YAML::Node& root, const std::string& origin) {
  // Every key has a default, so an empty (or truncated, or wrong) file would train the default model without a
  // word: a model must at least describe its core and readout, or name a preset.
  if (!root.IsMap() && !root.IsNull()) return;  // not a mapping: decoding says so
  if (root.IsMap() && root["architecture"]) return;
  for (const char* section : {"core", "readout"})
    if (root.IsNull() || !root[section])
      throw ConfigError(std::string("the model file has no '") + section + "' section", origin,
                        "describe the model with core: and readout: sections (see sweeps/models/*.yaml), or "
                        "name a preset with architecture: NAME");
}

ModelConfig load_model_config(const std::string& path) {
  const YAML::Node root = load_yaml_file(path);
  require_model_sections(root, path);
  return decode_with_architecture(root, path);
}

ModelConfig parse_model_config(const std::string& yaml_text, const std::string& origin) {
  return decode_with_architecture(load_yaml_string(yaml_text, origin), origin);
}

std::string to_yaml(const ModelConfig& c) {
  YAML::Emitter e;
  e.SetDoublePrecision(17);
  e << YAML::BeginMap;
  if (!c.architecture.empty()) e << YAML::Key << "architecture" << YAML::Value << c.architecture;
  e << YAML::Key << "core" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "kind" << YAML::Value << c.core.kind;
  e << YAML::Key << "filter_sizes" << YAML::Value << YAML::Flow << c.core.filter_sizes;
  if (c.core.rotation_equivariant()) {
    e << YAML::Key << "features" << YAML::Value << YAML::Flow << c.core.features;
    e << YAML::Key << "rotations" << YAML::Value << c.core.rotations;
    e << YAML::Key << "batchnorm_shared_rotations" << YAML::Value << c.core.batchnorm_shared_rotations;
    e << YAML::Key << "coeff_init_sd" << YAML::Value << c.core.coeff_init_sd;
  } else {
    e << YAML::Key << "channels" << YAML::Value << YAML::Flow << c.core.channels;
  }
  std::vector<std::string> nl;
  for (auto n : c.core.nonlinearities) nl.push_back(nonlinearity_name(n));
  e << YAML::Key << "nonlinearities" << YAML::Value << YAML::Flow << nl;
  e << YAML::Key << "padding" << YAML::Value << c.core.padding;
  e << YAML::Key << "batchnorm_decay" << YAML::Value << c.core.batchnorm_decay;
  e << YAML::Key << "batchnorm_eps" << YAML::Value << c.core.batchnorm_eps;
  e << YAML::Key << "batchnorm_scale" << YAML::Value << YAML::Flow << YAML::BeginSeq;
  for (bool b : c.core.batchnorm_scale) e << b;
  e << YAML::EndSeq;
  e << YAML::Key << "smooth_weight" << YAML::Value << c.core.smooth_weight;
  e << YAML::Key << "sparse_weight" << YAML::Value << c.core.sparse_weight;
  e << YAML::Key << "rel_smooth" << YAML::Value << YAML::Flow << c.core.rel_smooth;
  e << YAML::Key << "rel_sparse" << YAML::Value << YAML::Flow << c.core.rel_sparse;
  e << YAML::Key << "laplace_weight" << YAML::Value << c.core.laplace_weight;
  e << YAML::EndMap;
  e << YAML::Key << "readout" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "kind" << YAML::Value << c.readout.kind;
  e << YAML::Key << "regularizer" << YAML::Value << c.readout.regularizer;
  e << YAML::Key << "weight" << YAML::Value << c.readout.weight;
  e << YAML::Key << "mask_weight" << YAML::Value << c.readout.mask_weight;
  e << YAML::Key << "feature_weight" << YAML::Value << c.readout.feature_weight;
  e << YAML::Key << "positive_features" << YAML::Value << c.readout.positive_features;
  e << YAML::Key << "init_sigma" << YAML::Value << c.readout.init_sigma;
  e << YAML::Key << "init_mu_range" << YAML::Value << c.readout.init_mu_range;
  e << YAML::Key << "grid_predictor" << YAML::Value << c.readout.grid_predictor;
  e << YAML::EndMap;
  e << YAML::Key << "train" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "schedule" << YAML::Value << c.train.schedule;
  e << YAML::Key << "learning_rate" << YAML::Value << c.train.learning_rate;
  e << YAML::Key << "batch_size" << YAML::Value << c.train.batch_size;
  e << YAML::Key << "val_every" << YAML::Value << c.train.val_every;
  e << YAML::Key << "patience" << YAML::Value << c.train.patience;
  e << YAML::Key << "lr_decay_steps" << YAML::Value << c.train.lr_decay_steps;
  e << YAML::Key << "lr_decay_factor" << YAML::Value << c.train.lr_decay_factor;
  e << YAML::Key << "max_iterations" << YAML::Value << c.train.max_iterations;
  e << YAML::Key << "data_fraction" << YAML::Value << c.train.data_fraction;
  e << YAML::Key << "seed" << YAML::Value << c.train.seed;
  e << YAML::Key << "restore_best_at_max_iterations" << YAML::Value << c.train.restore_best_at_max_iterations;
  e << YAML::Key << "eval_batch_size" << YAML::Value << c.train.eval_batch_size;
  e << YAML::Key << "max_epochs" << YAML::Value << c.train.max_epochs;
  e << YAML::Key << "min_learning_rate" << YAML::Value << c.train.min_learning_rate;
  e << YAML::EndMap;
  e << YAML::EndMap;
  return std::string(e.c_str()) + "\n";
}

}  // namespace v1sysid
