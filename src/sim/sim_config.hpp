// Configuration of `v1sysid simulate`: the digital V1 population, its stimuli, noise and trial design.
//
// YAML layout (every key optional except n_neurons and n_train or n_single_trials; see data/tiny.yaml):
//   stimuli: ../stimuli.h5          # file of `v1sysid images`; relative paths are resolved against the folder
//                                   # of the YAML file; `simulate --stimuli FILE` overrides it
//   seed: 1
//   n_animals: 1                    # populations with their own neurons and images, same cell-type mix
//   n_neurons: 60
//   n_train: 600                    # single-trial training images, and either
//   n_validation: 60                #   single-trial validation images,
//   # n_single_trials: 5400         # or all single trials
//   # validation_fraction: 0.1      #   of which this fraction is validation
//   n_test_images: 20               # from the stimulus file's "test" split only
//   test_repeats: 10
//   image: {height: 36, width: 64}  # central crop of the stimulus crops; must not be larger than them
//   cell_types: {simple: 0.4, complex: 0.3, normalized_complex: 0.2, center_surround: 0.1}   # sum to 1
//   receptive_fields: {wavelength_px: [6, 25], sigma_px: [2, 5], aspect_ratio: [0.6, 1.0],
//                      position_margin_px: 4, center_sigma_px: [1, 2.5], surround_ratio: [2, 4],
//                      surround_weight: [0.5, 1.0], on_fraction: 0.5, normalization_constant: [0.1, 1.0]}
//   responses: {mean_rate: [0.1, 1.0], selectivity: [0.5, 2], threshold: [0, 1.5], baseline: [0, 0.02]}
//   noise: {model: poisson, nb_r: 4, zig: {zero_probability: 0.3, shape: 2}, shared_gain_sd: 0}
//   retinotopy: {um_per_px: [[40, 0], [0, 40]], origin_um: [0, 0], jitter_um: 25, depth_um: [150, 350]}
// Ranges [lo, hi] are drawn uniformly per neuron, except wavelength_px, mean_rate and normalization_constant,
// which are drawn log-uniformly. neuron_model.hpp gives the meaning of each parameter.
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace v1sysid {
class ConfigReader;
}

namespace v1sysid::sim {

using Range = std::array<double, 2>;  // [lo, hi], lo <= hi

struct CellTypeProportions {
  double simple = 0.4;
  double complex = 0.3;
  double normalized_complex = 0.2;
  double center_surround = 0.1;
};

struct ReceptiveFieldConfig {
  Range wavelength_px{6, 25};      // Gabor carrier wavelength (1 / spatial frequency), log-uniform
  Range sigma_px{2, 5};            // Gabor envelope SD across the bars
  Range aspect_ratio{0.6, 1.0};    // envelope SD along the bars = sigma / aspect_ratio
  double position_margin_px = 4;   // RF centres keep this distance from the image border
  Range center_sigma_px{1, 2.5};   // centre-surround: centre SD
  Range surround_ratio{2, 4};      // surround SD / centre SD
  Range surround_weight{0.5, 1.0}; // surround integral relative to the centre's
  double on_fraction = 0.5;        // fraction of ON centre-surround cells (the rest are OFF)
  Range normalization_constant{0.1, 1.0};  // semi-saturation relative to the median pooled energy, log-uniform
};

struct ResponseConfig {
  Range mean_rate{0.1, 1.0};   // mean rate over the training images; sets the gain (log-uniform)
  Range selectivity{0.5, 2};   // slope of the drive, per SD of the raw drive over the training images
  Range threshold{0, 1.5};     // threshold of the softplus, in the same units as the drive
  Range baseline{0, 0.02};     // rate added to every response
};

struct ZeroInflatedGammaConfig {
  double zero_probability = 0.3;  // P(r = 0)
  double shape = 2;               // Gamma shape of the non-zero part
};

struct NoiseConfig {
  std::string model = "poisson";  // poisson | negative_binomial | zero_inflated_gamma
  double nb_r = 4;                // negative binomial: var = mean + mean^2 / nb_r
  ZeroInflatedGammaConfig zig;
  double shared_gain_sd = 0;      // SD of log of the shared per-trial gain (0: no shared gain)
};

struct RetinotopyConfig {
  std::array<std::array<double, 2>, 2> um_per_px{{{40, 0}, {0, 40}}};  // cortex (x, y) per RF (x, y) pixel
  std::array<double, 2> origin_um{0, 0};  // cortical position of the image centre
  double jitter_um = 25;                  // SD of isotropic Gaussian scatter added to x and y
  Range depth_um{150, 350};               // cortical depth (z), uniform
};

struct SimulationConfig {
  std::string stimuli = "stimuli.h5";  // resolved path after decoding
  uint64_t seed = 1;
  int n_animals = 1;
  int n_neurons = 0;
  int n_train = 0;
  int n_validation = 0;
  int n_test_images = 100;
  int test_repeats = 10;
  int height = 36;
  int width = 64;
  CellTypeProportions cell_types;
  ReceptiveFieldConfig receptive_fields;
  ResponseConfig responses;
  NoiseConfig noise;
  RetinotopyConfig retinotopy;

  std::string source;  // the YAML file it came from ("" when built in code); named in late errors

  // Decodes and checks a config; `base_dir` resolves a relative stimuli path. Throws ConfigError naming
  // the key for unknown keys, wrong types, out-of-range values and impossible combinations.
  void decode(ConfigReader& reader, const std::string& base_dir);
  // The resolved config as YAML (all keys, defaults filled in); decoding it gives the same config.
  std::string to_yaml() const;

  int64_t trials_per_animal() const {
    return int64_t{n_train} + n_validation + int64_t{n_test_images} * test_repeats;
  }
};

// Reads a YAML file into a SimulationConfig (stimuli resolved against the file's folder).
SimulationConfig load_simulation_config(const std::string& path);
// Decodes YAML text (tests, configs stored in files); `base_dir` resolves the stimuli path.
SimulationConfig parse_simulation_config(const std::string& text, const std::string& origin,
                                         const std::string& base_dir);

}  // namespace v1sysid::sim
