// Named model architectures are the model files of sweeps/models/: a model YAML with a top-level
// `architecture: NAME` starts from the core and readout sections of NAME.yaml there (its train section is not
// taken), and every key the file sets itself overrides them. So the whole Table 1 / Fig. 2 set of Ecker et al.
// 2019 (roteq_8 ... roteq_48, roteq_16_positive_features, roteq_16_l2_features, cnn_32, cnn_64, cnn_128,
// cnn_128_128_256, with the regulariser weights of the reference's best models; reference-models.md §1.3,
// §3.2) and the Lurz and demo models are written once, as files a sweep can list too.
// The folder is $V1SYSID_MODELS_DIR when set, else the sweeps/models of the source tree v1sysid was built from.
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

namespace v1sysid {

// The folder the presets are read from.
std::string models_dir();
// Every preset name (the .yaml files of models_dir(), without the extension), sorted.
std::vector<std::string> architecture_names();
// "cnn_128, cnn_128_128_256, ..." for error messages.
std::string architecture_names_joined();
// The preset as a model YAML mapping with its `core` and `readout`. ConfigError naming `origin` when there is no
// such file, or when it is not a model file with both sections.
YAML::Node architecture_preset_yaml(const std::string& name, const std::string& origin);
// Deep merge: mappings merge key by key, anything else in `over` replaces what `base` has.
void merge_yaml_over(YAML::Node& base, const YAML::Node& over);

}  // namespace v1sysid
