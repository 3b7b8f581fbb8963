// Named model architectures: the whole Table 1 / Fig. 2 set of Ecker et al. 2019 with the regulariser weights
// of the reference's best models (reference-models.md §1.3, §3.2; cnn-sys-ident analysis/iclr2019/models.ipynb).
//
//   name                         Table 1 row                               core / readout
//   roteq_8 ... roteq_48         rot-eq 16x8-16x8-Nx8, N in {8,12,16,20,24,28,32,40,48}   roteq, joint L1
//   roteq_16_positive_features   control: positive feature weights         roteq 16x8 x3, joint L1, F = |F~|
//   roteq_16_l2_features         control: no feature sparsity              roteq 16x8 x3, L1 mask + L2 features
//   cnn_32, cnn_64, cnn_128      CNN 32-32-32, 64-64-64, 128-128-128       cnn, joint L1
//   cnn_128_128_256              CNN 128-128-256                           cnn, joint L1
//
// A model YAML names one with a top-level `architecture: roteq_16`; the preset gives the core and readout
// (filter sizes 13-5-5, softplus-softplus-none, BN scale on all but the last layer, rel_smooth [1, .5, .5],
// rel_sparse [0, 1, 1], the best smooth/sparse/readout weights) and every key the file sets itself overrides
// it. sweeps/models/<name>.yaml spell the same configurations out in full (a test keeps the two in sync), so a
// sweep can list them as `architectures: [{name: roteq_16, model: models/roteq_16.yaml}, ...]`.
// BatchNorm of the roteq presets is shared across rotations (this project's default, exactly equivariant);
// the paper's runs used per-channel BN: set core.batchnorm_shared_rotations: false to reproduce that.
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

namespace v1sysid {

// Every preset name, in Table 1 order.
std::vector<std::string> architecture_names();
// "roteq_8, roteq_12, ..." for error messages.
std::string architecture_names_joined();
// The paper's label of a preset, e.g. "rot-eq 16x8-16x8-16x8" or "CNN 32-32-32". ConfigError when unknown.
std::string architecture_label(const std::string& name);
// The preset as a model YAML mapping with `core` and `readout` (no `train`). ConfigError naming `origin` when
// the name is unknown.
YAML::Node architecture_preset_yaml(const std::string& name, const std::string& origin);
// Deep merge: mappings merge key by key, anything else in `over` replaces what `base` has.
void merge_yaml_over(YAML::Node& base, const YAML::Node& over);

}  // namespace v1sysid
