// Sweep files (sweeps/*.yaml) and their expansion into a deterministic trial table.
//
// A sweep is: a base model config, a list of architectures (each the base with overrides, or its own model
// file), a random search (draws per architecture; each hyperparameter log_uniform / uniform / choice / fixed,
// named by its dotted key path in the model config, e.g. core.smooth_weight) and grid axes (data_fraction,
// seed). An architecture may start from another model's core (init_core: CHECKPOINT, freeze_core: true), as
// train --init-core / --freeze-core. Trials are ordered architecture-major, then grid point, then draw. Trial i is a
// pure function of (sweep seed, i): the value of a hyperparameter depends only on (sweep seed, architecture name, draw
// index, hyperparameter name), never on the number of ranks or the order trials run in. Draw d of an architecture has
// the same regulariser values at every grid point, so data-efficiency curves compare like with like.
#pragma once

#include "config/config_reader.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace v1sysid {

struct Distribution {
  enum class Kind { fixed, log_uniform, uniform, choice } kind = Kind::fixed;
  double lo = 0, hi = 0;        // log_uniform, uniform
  std::vector<double> choices;  // choice; fixed uses choices[0]
  double sample(double u) const;  // u in [0, 1)
};

struct ArchitectureSpec {
  std::string name;
  std::string model_file;  // resolved path; empty = the sweep's base model
  YAML::Node overrides;    // merged into the model config (mapping), may be null
  // When present, replaces the sweep's search.hyperparameters for this architecture (e.g. the "L1 mask,
  // L2 features" control draws mask and feature weights instead of the joint readout weight).
  std::optional<std::map<std::string, Distribution>> hyperparameters;
  // Transfer (train --init-core / --freeze-core): a checkpoint (resolved path) whose core starts every trial of
  // the architecture, and whether it stays fixed (only the readouts train).
  std::string init_core;
  bool freeze_core = false;
  bool random_core = false;  // init_core: random (with freeze_core): the core as initialised, frozen
};

struct DryRunConfig {
  double min_seconds = 0.05;  // synthetic work per trial, uniform in [min, max]
  double max_seconds = 0.2;
  int64_t neurons = 100;      // width of trials/neuron_correlation when no dataset is read
  double fail_fraction = 0.0; // fraction of trials that throw, to exercise failure recording
};

// Median stopping rule (`pruning: {rule: median, min_checks: 5, min_trials: 3}`; absent = off, the default), as
// Optuna's MedianPruner and Ray Tune's MedianStoppingRule: at validation check k (k >= min_checks) a trial whose
// best validation loss so far is worse than the median, over the finished ok trials of its architecture and data
// fraction that reached check k (at least min_trials of them), of their best loss by check k stops with status
// "pruned". It saves compute on hopeless draws, but a pruned sweep is no longer a pure function of its configs:
// which trials had finished when a check came decides it. Trials on Lurz's schedule are judged the same way by their
// validation correlation (higher is better; trials/val_correlation_curve), the criterion they are selected by.
struct PruningConfig {
  bool enabled = false;
  int64_t min_checks = 5;
  int64_t min_trials = 3;
};

// A model file the sweep names, with a checksum of its content (parsed, so comments and layout do not count),
// or an architecture's init-core checkpoint, with the checksum of its bytes (sweep/checksum.hpp).
struct ModelFileChecksum {
  std::string role;  // "base_model", "architectures[i].model" or "architectures[i].init_core"
  std::string path;
  std::string checksum;  // 16 hex digits; "missing" for a file that does not exist (a dry run reads none)
};

struct SweepConfig {
  std::string file;  // the sweep YAML it was read from
  std::string name;
  uint64_t seed = 0;
  std::string trial_kind = "train";  // train | dry_run
  std::string base_model;            // resolved path
  std::vector<ArchitectureSpec> architectures;
  int64_t draws = 1;
  std::map<std::string, Distribution> hyperparameters;  // dotted model-config key -> distribution
  std::vector<double> data_fractions{1.0};
  std::vector<int64_t> seeds{1};
  int64_t max_checks = 0;  // width of trials/val_curve; 0 = derive from the model's max_iterations/val_every
  DryRunConfig dry_run;
  PruningConfig pruning;

  static SweepConfig load(const std::string& path);
  std::string resolved_yaml() const;  // the sweep with every default, stored in results.h5
  // What a resumed sweep must match: resolved_yaml() with every model file's path replaced by the checksum of
  // its content, so neither how a path is spelled (relative, absolute, from another folder) nor where the files
  // are counts, but an edited model file does.
  std::string identity_yaml() const;
  std::vector<ModelFileChecksum> model_file_checksums() const;

 private:
  std::string emit(bool identity) const;
};

struct Trial {
  int64_t id = 0;
  int64_t architecture_index = 0;
  std::string architecture;
  int64_t draw = 0;
  double data_fraction = 1.0;
  int64_t seed = 1;
  std::map<std::string, double> hyperparameters;
};

std::vector<Trial> expand_trials(const SweepConfig& sweep);
// The hyperparameters drawn for one architecture (its own block, or the sweep's).
const std::map<std::string, Distribution>& hyperparameters_of(const SweepConfig& sweep, const ArchitectureSpec& a);
// Every hyperparameter name any architecture draws (the columns of results.h5).
std::vector<std::string> all_hyperparameter_names(const SweepConfig& sweep);

// The model config of one trial: the architecture's model (base + overrides) with the drawn hyperparameters,
// data fraction and seed written into it (train.data_fraction, train.seed).
YAML::Node trial_model_yaml(const SweepConfig& sweep, const Trial& trial);

// Overwrites a dotted key path (creating intermediate maps) in a YAML mapping.
void set_yaml_path(YAML::Node& root, const std::string& dotted, const YAML::Node& value);
// Deep-merges `overrides` into `base` (maps merge, everything else replaces).
void merge_yaml(YAML::Node& base, const YAML::Node& overrides);

// Counter-based hashing used for every random draw of the sweep (FNV-1a over bytes, then the SplitMix64 step
// of core/random.hpp).
uint64_t hash_string(const std::string& s, uint64_t seed = 0);
double unit_interval(uint64_t bits);  // [0, 1) from the top 53 bits

}  // namespace v1sysid
