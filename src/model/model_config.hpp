// Model configuration: core + readout + training schedule, decoded strictly from YAML and written back as
// resolved YAML (every default spelled out) so that a checkpoint records exactly what was trained.
//
// Example (defaults shown are the reference values, reference-models.md §1.3, §2, §3.1):
//   core:
//     kind: cnn                        # cnn | roteq (rotation-equivariant Hermite core, see below)
//     filter_sizes: [13, 5, 5]         # odd kernel sizes in [1, 99], one per layer
//     channels: [32, 32, 32]
//     nonlinearities: [softplus, softplus, none]   # softplus | elu | none
//     padding: same                    # same | valid
//     batchnorm_decay: 0.98            # TF convention: running = decay * running + (1 - decay) * batch
//     batchnorm_eps: 0.001
//     batchnorm_scale: [true, true, false]  # gamma on all but the last layer
//     smooth_weight: 0.0151716         # Laplacian smoothness, normalised per output filter
//     sparse_weight: 0.0219826         # group sparsity
//     rel_smooth: [1, 0.5, 0.5]
//     rel_sparse: [0, 1, 1]
//   readout:
//     kind: factorized
//     regularizer: joint_l1            # joint_l1 | l1_mask_l2_features | separate_l1
//     weight: 0.0193531                # joint_l1: weight * sum_n |M_n|_1 |F_n|_1
//     mask_weight: 0                   # l1_mask_l2_features / separate_l1: mask_weight * sum |M|
//     feature_weight: 0                # l1_mask_l2_features: * sum F^2; separate_l1: * sum |F|
//     positive_features: false         # F = |F~| (Table 1 control)
//   A rotation-equivariant core (Ecker et al. 2019, layers/hermite.hpp) replaces `channels` by
//     kind: roteq
//     features: [16, 16, 16]           # features per rotation; the layer has rotations * features channels
//     rotations: 8                     # orientations, 360/rotations degrees apart
//     batchnorm_shared_rotations: true # BN statistics, beta and gamma per feature, shared by its rotations
//                                      # (exactly equivariant); false: per channel, as the paper's runs
//     coeff_init_sd: 0.1               # truncated-normal sd of the Hermite coefficients
//   and its defaults differ: batchnorm_decay 0.9; the other keys are those of cnn.
//   architecture: roteq_16             # optional: start from the core and readout of sweeps/models/roteq_16.yaml
//                                      # (model/architectures.hpp); the keys given in the file override them
//   train: {learning_rate: 0.002, batch_size: 256, val_every: 50, patience: 5, lr_decay_steps: 2,
//           lr_decay_factor: 10, max_iterations: 10000, data_fraction: 1.0, seed: 0,
//           restore_best_at_max_iterations: false, eval_batch_size: 256}
//
// Lurz et al. 2021 (reference-models.md §5). Giving a kind switches the defaults of the other keys of that
// mapping to the reference values (keys given explicitly still win):
//   core: {kind: stacked2d}   15x15 input conv (padding: valid applies to this layer), then depth-separable
//                             13x13 hidden layers (1x1 -> depthwise 13x13 -> 1x1, always SAME), 4 x 64
//                             channels, BN after every layer (PyTorch momentum 0.1 = batchnorm_decay 0.9, eps
//                             1e-5, gamma everywhere), ELU after every layer, xavier-normal conv init,
//                             laplace_weight 1.0 (gamma_input x LaplaceL2 on the first layer's weights).
//   readout: {kind: gaussian} FullGaussian2d: init_sigma 0.4, init_mu_range 0.55, grid_predictor none|cortex,
//                             regularizer l1_features with feature_weight 2.439 (gamma_readout), output ELU+1,
//                             bias initialised to the mean training response.
//   train: {schedule: lurz}   epoch-wise: Poisson loss (sum, eps 1e-12) scaled by sqrt(n_trials / batch),
//                             Adam lr 0.005, batch 64, validation correlation every epoch, lr / lr_decay_factor
//                             (1/0.3) after patience 5 epochs without improvement, lr_decay_steps 3 rounds,
//                             min_learning_rate 1e-4, max_epochs 200, best model restored.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace YAML {
class Node;
}

namespace v1sysid {

class ConfigReader;

// The kinds a config chooses between; each enum's spelling in YAML is name_of (model_config.cpp lists them).
enum class Nonlinearity : uint8_t { none = 0, softplus = 1, elu = 2 };
enum class CoreKind : uint8_t { cnn, roteq, stacked2d };
enum class ReadoutKind : uint8_t { factorized, gaussian };
enum class ScheduleKind : uint8_t { ecker, lurz };
const char* name_of(Nonlinearity n);
const char* name_of(CoreKind k);
const char* name_of(ReadoutKind k);
const char* name_of(ScheduleKind s);
inline const char* nonlinearity_name(Nonlinearity n) { return name_of(n); }

// Each config struct lists its keys once, in fields(f): the key, the member and its allowed range or choices,
// in the order of the resolved YAML. Decoding (model_config.cpp FieldReader) and to_yaml (FieldWriter) both
// walk that list; a key's default is the member's initialiser, changed only by apply_kind_defaults.

struct CoreConfig {
  CoreKind kind = CoreKind::cnn;
  std::vector<int> filter_sizes{13, 5, 5};
  std::vector<int> channels{32, 32, 32};
  std::vector<Nonlinearity> nonlinearities{Nonlinearity::softplus, Nonlinearity::softplus, Nonlinearity::none};
  std::string padding = "same";
  double batchnorm_decay = 0.98;
  double batchnorm_eps = 1e-3;
  std::vector<bool> batchnorm_scale{true, true, false};
  double smooth_weight = 0.0;
  double sparse_weight = 0.0;
  std::vector<double> rel_smooth{1.0, 0.5, 0.5};
  std::vector<double> rel_sparse{0.0, 1.0, 1.0};
  // kind roteq only (channels is then derived: channels[l] = rotations * features[l]).
  std::vector<int> features;
  int rotations = 1;
  bool batchnorm_shared_rotations = true;
  double coeff_init_sd = 0.1;
  double laplace_weight = 0.0;  // gamma_input: LaplaceL2 (Lurz) on the first layer's weights

  // Padding of layer l: `padding` for the first layer; stacked2d's hidden layers are always SAME.
  std::string layer_padding(int l) const { return (l == 0 || kind != CoreKind::stacked2d) ? padding : "same"; }

  bool rotation_equivariant() const { return kind == CoreKind::roteq; }
  int num_layers() const { return static_cast<int>(channels.size()); }
  // Spatial size of the core output for an input of size h x w (SAME keeps it, VALID shrinks by k-1).
  int64_t output_height(int64_t h) const;
  int64_t output_width(int64_t w) const;
  template <class Fields>
  void fields(Fields& f);
  // The defaults `kind` changes (the reference values of that kind's paper).
  void apply_kind_defaults();
  void decode(ConfigReader& r);
};

struct ReadoutConfig {
  ReadoutKind kind = ReadoutKind::factorized;
  std::string regularizer = "joint_l1";
  double weight = 0.0;
  double mask_weight = 0.0;
  double feature_weight = 0.0;
  bool positive_features = false;
  // Gaussian readout
  double init_sigma = 0.4;
  double init_mu_range = 0.55;
  std::string grid_predictor = "none";  // none | cortex (mu = A s + a from neurons/cell_motor_coordinates)
  bool gaussian() const { return kind == ReadoutKind::gaussian; }
  template <class Fields>
  void fields(Fields& f);
  void apply_kind_defaults();
  void decode(ConfigReader& r);
};

struct TrainConfig {
  double learning_rate = 0.002;
  int batch_size = 256;
  int val_every = 50;
  int patience = 5;
  int lr_decay_steps = 2;
  double lr_decay_factor = 10.0;
  int64_t max_iterations = 10000;
  double data_fraction = 1.0;
  uint64_t seed = 0;
  // The reference keeps the last parameters when max_iterations ends the run before the patience rule does;
  // true restores the best snapshot instead.
  bool restore_best_at_max_iterations = false;
  // Batch size of evaluation-mode passes (validation loss, predictions); only memory, not results, depend on it.
  int eval_batch_size = 256;
  ScheduleKind schedule = ScheduleKind::ecker;  // ecker (iterations, validation loss) | lurz (epochs, validation correlation)
  int max_epochs = 200;            // lurz
  double min_learning_rate = 1e-4; // lurz: ReduceLROnPlateau's min_lr
  bool lurz() const { return schedule == ScheduleKind::lurz; }
  template <class Fields>
  void fields(Fields& f);
  void apply_kind_defaults();
  void decode(ConfigReader& r);
};

struct ModelConfig {
  std::string architecture;  // the preset it started from (model/architectures.hpp); empty: none
  CoreConfig core;
  ReadoutConfig readout;
  TrainConfig train;
  // Cross-field checks (list lengths agree, odd kernels, ...); throws ConfigError naming `origin`.
  void validate(const std::string& origin) const;
};

// Reads and validates a model YAML file; every problem is a ConfigError with file:line:col. The file must
// have core and readout sections or name a preset (architecture: NAME); parse_model_config has no such rule.
ModelConfig load_model_config(const std::string& path);
// The rule load_model_config applies, for models assembled elsewhere (a sweep's model file plus overrides):
// a ConfigError naming `origin` unless `root` has core and readout sections or names a preset.
void require_model_sections(const YAML::Node& root, const std::string& origin);
// Same for YAML text (the config attribute of a checkpoint); `origin` names it in errors.
ModelConfig parse_model_config(const std::string& yaml_text, const std::string& origin);
// The resolved config as YAML text with every field; parse_model_config(to_yaml(c)) == c.
std::string to_yaml(const ModelConfig& c);

}  // namespace v1sysid
