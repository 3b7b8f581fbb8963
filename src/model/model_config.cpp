#include "model/model_config.hpp"

#include "config/config_reader.hpp"
#include "core/error.hpp"
#include "model/architectures.hpp"

#include <yaml-cpp/yaml.h>

#include <limits>
#include <type_traits>
#include <utility>

namespace v1sysid {

namespace {

constexpr int kMaxInt = std::numeric_limits<int>::max();
// Published cores use kernels up to 15 (Lurz) and 13 (Ecker); a larger one is a typo and would otherwise
// fail later as an allocation of kernel^2 * channels^2 weights.
constexpr int kMaxFilterSize = 99;
constexpr double kInf = std::numeric_limits<double>::max();

// The YAML spelling of every enum value, in the order error messages list them.
template <class E>
struct Spelling;
template <>
struct Spelling<Nonlinearity> {
  static constexpr std::pair<Nonlinearity, const char*> names[] = {
      {Nonlinearity::softplus, "softplus"}, {Nonlinearity::elu, "elu"}, {Nonlinearity::none, "none"}};
};
template <>
struct Spelling<CoreKind> {
  static constexpr std::pair<CoreKind, const char*> names[] = {
      {CoreKind::cnn, "cnn"}, {CoreKind::roteq, "roteq"}, {CoreKind::stacked2d, "stacked2d"}};
};
template <>
struct Spelling<ReadoutKind> {
  static constexpr std::pair<ReadoutKind, const char*> names[] = {{ReadoutKind::factorized, "factorized"},
                                                                  {ReadoutKind::gaussian, "gaussian"}};
};
template <>
struct Spelling<ScheduleKind> {
  static constexpr std::pair<ScheduleKind, const char*> names[] = {{ScheduleKind::ecker, "ecker"}, {ScheduleKind::lurz, "lurz"}};
};

template <class E>
const char* spelled(E value) {
  for (const auto& [v, name] : Spelling<E>::names)
    if (v == value) return name;
  return "unknown";
}

template <class E>
std::vector<std::string> spellings() {
  std::vector<std::string> out;
  for (const auto& [v, name] : Spelling<E>::names) out.emplace_back(name);
  return out;
}

// Reads each field of a config struct from its YAML mapping (absent keys keep the member's value).
class FieldReader {
 public:
  explicit FieldReader(ConfigReader& r) : m_r(r) {}
  template <class T>
  void field(const char* key, T& value) {
    if constexpr (std::is_enum_v<T>) {
      std::string name = spelled(value);
      m_r.get_choice(key, name, spellings<T>());
      for (const auto& [v, spelling] : Spelling<T>::names)
        if (name == spelling) value = v;
    } else {
      m_r.get(key, value);
    }
  }
  void field(const char* key, std::vector<Nonlinearity>& value) {
    if (!m_r.has(key)) return;
    std::vector<std::string> names;
    m_r.get(key, names);
    value.clear();
    for (const auto& name : names) {
      bool known = false;
      for (const auto& [v, spelling] : Spelling<Nonlinearity>::names)
        if (name == spelling) {
          value.push_back(v);
          known = true;
        }
      if (!known) m_r.fail(key, "expected one of {softplus, elu, none}, got \"" + name + "\"");
    }
  }
  template <class T>
  void field(const char* key, T& value, T lo, T hi) {
    m_r.get_in_range(key, value, lo, hi);
  }
  void field(const char* key, std::string& value, const std::vector<std::string>& choices) {
    m_r.get_choice(key, value, choices);
  }

 private:
  ConfigReader& m_r;
};

// Writes each field of a config struct as a key of the current YAML mapping (lists in flow style).
class FieldWriter {
 public:
  explicit FieldWriter(YAML::Emitter& e) : m_e(e) {}
  template <class T>
  void field(const char* key, const T& value) {
    m_e << YAML::Key << key << YAML::Value;
    if constexpr (std::is_enum_v<T>) {
      m_e << spelled(value);
    } else {
      m_e << value;
    }
  }
  template <class T>
  void field(const char* key, const std::vector<T>& values) {
    m_e << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (const auto& v : values) {
      if constexpr (std::is_enum_v<T>) {
        m_e << spelled(v);
      } else {
        m_e << static_cast<T>(v);
      }
    }
    m_e << YAML::EndSeq;
  }
  template <class T>
  void field(const char* key, const T& value, T, T) {
    field(key, value);
  }
  void field(const char* key, const std::string& value, const std::vector<std::string>&) { field(key, value); }

 private:
  YAML::Emitter& m_e;
};

}  // namespace

const char* name_of(Nonlinearity n) { return spelled(n); }
const char* name_of(CoreKind k) { return spelled(k); }
const char* name_of(ReadoutKind k) { return spelled(k); }
const char* name_of(ScheduleKind s) { return spelled(s); }

int64_t CoreConfig::output_height(int64_t h) const {
  for (int l = 0; l < num_layers(); ++l)
    if (layer_padding(l) == "valid") h -= filter_sizes[static_cast<size_t>(l)] - 1;
  return h;
}
int64_t CoreConfig::output_width(int64_t w) const { return output_height(w); }

template <class Fields>
void CoreConfig::fields(Fields& f) {
  f.field("kind", kind);
  f.field("filter_sizes", filter_sizes);
  if (rotation_equivariant()) {
    f.field("features", features);
    f.field("rotations", rotations, 1, 360);
    f.field("batchnorm_shared_rotations", batchnorm_shared_rotations);
    f.field("coeff_init_sd", coeff_init_sd, 0.0, kInf);
  } else {
    f.field("channels", channels);
  }
  f.field("nonlinearities", nonlinearities);
  f.field("padding", padding, {"same", "valid"});
  f.field("batchnorm_decay", batchnorm_decay, 0.0, 1.0);
  f.field("batchnorm_eps", batchnorm_eps, 1e-12, 1.0);
  f.field("batchnorm_scale", batchnorm_scale);
  f.field("smooth_weight", smooth_weight, 0.0, kInf);
  f.field("sparse_weight", sparse_weight, 0.0, kInf);
  f.field("rel_smooth", rel_smooth);
  f.field("rel_sparse", rel_sparse);
  f.field("laplace_weight", laplace_weight, 0.0, kInf);
}

void CoreConfig::apply_kind_defaults() {
  if (kind == CoreKind::stacked2d) {  // Lurz et al. 2021 SE2dCore defaults (reference-models.md §5.1)
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
  } else if (kind == CoreKind::roteq) {  // the reference's rotation-equivariant core (reference-models.md §1.2-§1.3)
    features = {16, 16, 16};
    rotations = 8;
    batchnorm_decay = 0.9;
  }
}

void CoreConfig::decode(ConfigReader& r) {
  FieldReader reader(r);
  reader.field("kind", kind);
  apply_kind_defaults();
  if (rotation_equivariant() && r.has("channels"))
    r.fail("channels", "a roteq core is sized by 'features' (per rotation) and 'rotations'; its channels are "
                       "rotations * features");
  fields(reader);
  if (rotation_equivariant()) {
    channels.clear();
    for (int f : features) {
      if (f < 1) r.fail("features", "expected positive feature counts, got " + std::to_string(f));
      channels.push_back(rotations * f);
    }
  }
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

template <class Fields>
void ReadoutConfig::fields(Fields& f) {
  f.field("kind", kind);
  f.field("regularizer", regularizer, {"joint_l1", "l1_mask_l2_features", "separate_l1", "l1_features"});
  f.field("weight", weight, 0.0, kInf);
  f.field("mask_weight", mask_weight, 0.0, kInf);
  f.field("feature_weight", feature_weight, 0.0, kInf);
  f.field("positive_features", positive_features);
  f.field("init_sigma", init_sigma, 0.0, 10.0);
  f.field("init_mu_range", init_mu_range, 0.0, 1.0);
  f.field("grid_predictor", grid_predictor, {"none", "cortex"});
}

void ReadoutConfig::apply_kind_defaults() {
  if (kind == ReadoutKind::gaussian) {  // Lurz et al. 2021 paper config (reference-models.md §5.1)
    regularizer = "l1_features";
    feature_weight = 2.439;
  }
}

void ReadoutConfig::decode(ConfigReader& r) {
  FieldReader reader(r);
  reader.field("kind", kind);
  apply_kind_defaults();
  fields(reader);
  if (gaussian()) {
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

template <class Fields>
void TrainConfig::fields(Fields& f) {
  f.field("schedule", schedule);
  f.field("learning_rate", learning_rate, 1e-12, 10.0);
  f.field("batch_size", batch_size, 1, kMaxInt);
  f.field("val_every", val_every, 1, kMaxInt);
  f.field("patience", patience, 1, kMaxInt);
  f.field("lr_decay_steps", lr_decay_steps, 0, 1000);
  f.field("lr_decay_factor", lr_decay_factor, 1.0, kInf);
  f.field("max_iterations", max_iterations, int64_t{1}, std::numeric_limits<int64_t>::max());
  f.field("data_fraction", data_fraction);  // in (0, 1]: checked by decode
  f.field("seed", seed);
  f.field("restore_best_at_max_iterations", restore_best_at_max_iterations);
  f.field("eval_batch_size", eval_batch_size, 1, kMaxInt);
  f.field("max_epochs", max_epochs, 1, kMaxInt);
  f.field("min_learning_rate", min_learning_rate, 0.0, 10.0);
}

void TrainConfig::apply_kind_defaults() {
  if (schedule == ScheduleKind::lurz) {  // L:training/trainers.py:standard_trainer (reference-models.md §5.2)
    learning_rate = 0.005;
    batch_size = 64;
    patience = 5;
    lr_decay_steps = 3;
    lr_decay_factor = 1.0 / 0.3;
  }
}

void TrainConfig::decode(ConfigReader& r) {
  FieldReader reader(r);
  reader.field("schedule", schedule);
  apply_kind_defaults();
  fields(reader);
  if (!(data_fraction > 0.0 && data_fraction <= 1.0))
    r.fail("data_fraction", "expected a fraction in (0, 1], got " + std::to_string(data_fraction));
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
  FieldWriter writer(e);
  ModelConfig copy = c;  // fields() takes members by reference
  e << YAML::BeginMap;
  if (!c.architecture.empty()) e << YAML::Key << "architecture" << YAML::Value << c.architecture;
  e << YAML::Key << "core" << YAML::Value << YAML::BeginMap;
  copy.core.fields(writer);
  e << YAML::EndMap;
  e << YAML::Key << "readout" << YAML::Value << YAML::BeginMap;
  copy.readout.fields(writer);
  e << YAML::EndMap;
  e << YAML::Key << "train" << YAML::Value << YAML::BeginMap;
  copy.train.fields(writer);
  e << YAML::EndMap;
  e << YAML::EndMap;
  return std::string(e.c_str()) + "\n";
}

}  // namespace v1sysid
