#include "model/architectures.hpp"

#include "config/config_reader.hpp"
#include "core/error.hpp"

#include <algorithm>
#include <cstdlib>
#include <filesystem>

namespace v1sysid {

std::string models_dir() {
  const char* env = std::getenv("V1SYSID_MODELS_DIR");
  return env && *env ? std::string(env) : std::string(V1SYSID_SOURCE_MODELS_DIR);
}

std::vector<std::string> architecture_names() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(models_dir(), ec))
    if (entry.path().extension() == ".yaml") names.push_back(entry.path().stem().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::string architecture_names_joined() {
  std::string s;
  for (const auto& name : architecture_names()) s += (s.empty() ? "" : ", ") + name;
  return s;
}

YAML::Node architecture_preset_yaml(const std::string& name, const std::string& origin) {
  const std::string path = models_dir() + "/" + name + ".yaml";
  const bool plain_name = !name.empty() && name.find('/') == std::string::npos && name[0] != '.';
  if (!plain_name || !std::filesystem::is_regular_file(path)) {
    const std::string names = architecture_names_joined();
    throw ConfigError("architecture: unknown preset \"" + name + "\" (no " + path + ")", origin,
                      names.empty() ? "set V1SYSID_MODELS_DIR to the sweeps/models folder of a v1sysid source tree"
                                    : "use one of: " + names + " (the model files of " + models_dir() + ")");
  }
  const YAML::Node file = load_yaml_file(path);
  YAML::Node preset(YAML::NodeType::Map);
  for (const char* section : {"core", "readout"}) {
    if (!file.IsMap() || !file[section] || !file[section].IsMap())
      throw ConfigError(std::string("the preset ") + path + " has no '" + section + "' mapping", origin,
                        "name a model file with core: and readout: sections");
    preset[section] = YAML::Clone(file[section]);
  }
  return preset;
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
