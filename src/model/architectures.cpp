#include "model/architectures.hpp"

#include "core/error.hpp"

namespace v1sysid {

namespace {

struct Preset {
  const char* name;
  const char* label;
  bool roteq;
  std::vector<int> sizes;  // features per rotation (roteq) or channels (cnn), per layer
  double smooth, sparse;   // core.smooth_weight, core.sparse_weight
  const char* readout_regularizer;
  double readout_weight;              // joint_l1
  double mask_weight, feature_weight; // l1_mask_l2_features
  bool positive_features;
};

// Best values of the reference's random search (models.ipynb), as (smooth, sparse, readout).
const std::vector<Preset>& presets() {
  static const std::vector<Preset> table{
      {"roteq_8", "rot-eq 16x8-16x8-8x8", true, {16, 16, 8}, 0.00781004, 0.0168574, "joint_l1", 0.0156452, 0, 0, false},
      {"roteq_12", "rot-eq 16x8-16x8-12x8", true, {16, 16, 12}, 0.00184694, 0.0610123, "joint_l1", 0.0153464, 0, 0, false},
      {"roteq_16", "rot-eq 16x8-16x8-16x8", true, {16, 16, 16}, 0.0249692, 0.0152482, "joint_l1", 0.0170696, 0, 0, false},
      {"roteq_20", "rot-eq 16x8-16x8-20x8", true, {16, 16, 20}, 0.0257738, 0.0691215, "joint_l1", 0.0141163, 0, 0, false},
      {"roteq_24", "rot-eq 16x8-16x8-24x8", true, {16, 16, 24}, 0.00146371, 0.00999698, "joint_l1", 0.0131784, 0, 0, false},
      {"roteq_28", "rot-eq 16x8-16x8-28x8", true, {16, 16, 28}, 0.0186784, 0.0187448, "joint_l1", 0.0124147, 0, 0, false},
      {"roteq_32", "rot-eq 16x8-16x8-32x8", true, {16, 16, 32}, 0.026082, 0.0118641, "joint_l1", 0.0161513, 0, 0, false},
      {"roteq_40", "rot-eq 16x8-16x8-40x8", true, {16, 16, 40}, 0.00232312, 0.0868334, "joint_l1", 0.0115895, 0, 0, false},
      {"roteq_48", "rot-eq 16x8-16x8-48x8", true, {16, 16, 48}, 0.00129107, 0.0644271, "joint_l1", 0.0163213, 0, 0, false},
      {"roteq_16_positive_features", "rot-eq 16x8-16x8-16x8, positive feature weights", true, {16, 16, 16},
       0.00553383, 0.0715125, "joint_l1", 0.0244531, 0, 0, true},
      {"roteq_16_l2_features", "rot-eq 16x8-16x8-16x8, no feature sparsity (L2 feature weights)", true,
       {16, 16, 16}, 0.0141237, 0.00280391, "l1_mask_l2_features", 0, 0.0324413, 0.315181, false},
      {"cnn_32", "CNN 32-32-32", false, {32, 32, 32}, 0.0151716, 0.0219826, "joint_l1", 0.0193531, 0, 0, false},
      {"cnn_64", "CNN 64-64-64", false, {64, 64, 64}, 0.00218237, 0.0323365, "joint_l1", 0.0261594, 0, 0, false},
      {"cnn_128", "CNN 128-128-128", false, {128, 128, 128}, 0.0277236, 0.0650177, "joint_l1", 0.0151648, 0, 0, false},
      {"cnn_128_128_256", "CNN 128-128-256", false, {128, 128, 256}, 0.0015324, 0.007974, "joint_l1", 0.0179, 0, 0,
       false},
  };
  return table;
}

const Preset* find_preset(const std::string& name) {
  for (const auto& p : presets())
    if (name == p.name) return &p;
  return nullptr;
}

const Preset& require_preset(const std::string& name, const std::string& origin) {
  const Preset* p = find_preset(name);
  if (!p)
    throw ConfigError("architecture: unknown preset \"" + name + "\"", origin,
                      "use one of: " + architecture_names_joined());
  return *p;
}

}  // namespace

std::vector<std::string> architecture_names() {
  std::vector<std::string> names;
  for (const auto& p : presets()) names.emplace_back(p.name);
  return names;
}

std::string architecture_names_joined() {
  std::string s;
  for (const auto& p : presets()) s += (s.empty() ? "" : ", ") + std::string(p.name);
  return s;
}

std::string architecture_label(const std::string& name) { return require_preset(name, "architecture_label").label; }

YAML::Node architecture_preset_yaml(const std::string& name, const std::string& origin) {
  const Preset& p = require_preset(name, origin);
  YAML::Node core(YAML::NodeType::Map);
  core["kind"] = p.roteq ? "roteq" : "cnn";
  core["filter_sizes"] = std::vector<int>{13, 5, 5};
  core[p.roteq ? "features" : "channels"] = p.sizes;
  if (p.roteq) core["rotations"] = 8;
  core["nonlinearities"] = std::vector<std::string>{"softplus", "softplus", "none"};
  core["padding"] = "same";
  core["batchnorm_decay"] = p.roteq ? 0.9 : 0.98;  // roteq reference 0.9, StackedConv2dCore 0.98
  core["batchnorm_scale"] = std::vector<bool>{true, true, false};
  core["smooth_weight"] = p.smooth;
  core["sparse_weight"] = p.sparse;
  core["rel_smooth"] = std::vector<double>{1.0, 0.5, 0.5};
  core["rel_sparse"] = std::vector<double>{0.0, 1.0, 1.0};
  YAML::Node readout(YAML::NodeType::Map);
  readout["kind"] = "factorized";
  readout["regularizer"] = p.readout_regularizer;
  if (std::string(p.readout_regularizer) == "joint_l1") {
    readout["weight"] = p.readout_weight;
  } else {
    readout["mask_weight"] = p.mask_weight;
    readout["feature_weight"] = p.feature_weight;
  }
  readout["positive_features"] = p.positive_features;
  YAML::Node root(YAML::NodeType::Map);
  root["core"] = core;
  root["readout"] = readout;
  return root;
}

void merge_yaml_over(YAML::Node& base, const YAML::Node& over) {
  if (!over || over.IsNull()) return;
  if (!base.IsMap() || !over.IsMap()) {
    base = YAML::Clone(over);
    return;
  }
  for (auto it = over.begin(); it != over.end(); ++it) {
    const std::string key = it->first.Scalar();
    if (base[key] && base[key].IsMap() && it->second.IsMap()) {
      YAML::Node child = base[key];
      merge_yaml_over(child, it->second);
    } else {
      base[key] = YAML::Clone(it->second);
    }
  }
}

}  // namespace v1sysid
