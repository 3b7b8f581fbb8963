// Configuration of `v1sysid simulate`: the digital V1 population, its stimuli, noise and trial design.
//
// YAML layout (every key optional except n_neurons and n_train or n_single_trials; see data/tiny.yaml):
//   stimuli: ../stimuli.h5          # file of `v1sysid images`; relative paths are resolved against the folder
//                                   # of the YAML file; `simulate --stimuli FILE` overrides it
//   seed: 1
//   n_animals: 1                    # populations with their own neurons and images, same cell-type mix
//   n_neurons: 60                   # or one count per animal (n_animals entries), e.g. [1000, 1000, 500]
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
//   noise:                          # opt-in per-neuron noise (noise.hpp), e.g. data/demo.yaml:
//     gain_factors: {count: 2, log_sd: 0.4, loading_mean: [1, 0], loading_sd: 0.5}   # instead of shared_gain_sd
//     private_gain: {variance_median: 0.5, variance_log_sd: 1.5}
//   retinotopy: {um_per_px: [[40, 0], [0, 40]], origin_um: [0, 0], jitter_um: 25, depth_um: [150, 350]}
//   cell_library: {kind: gabor}     # gabor (default): the population of cell_types above;
//                                   # deep: the cell-type library of neuron_model.hpp, configured by:
//   cell_library:
//     kind: deep
//     bases: {simple: 0.3, complex: 0.4, mixed: 0.3}   # base computation of the non-conjunction cells, sum to 1
//     mixed_energy_weight: [0.2, 0.8]                   # m of mixed cells (share of the energy term)
//     deep_fraction: 0.3                                # fraction of cells whose base is a conjunction
//     conjunctions: {corner: 0.5, curvature: 0.5}       # which conjunction, sum to 1
//     orientation_coupling: relative                    # relative | absolute (the rotation-equivariance null)
//     surround: {probability: 0.5, tuned_fraction: 0.5, radius: [2, 3], weight: [0.5, 2]}
//     cross_orientation: {probability: 0.3, weight: [0.5, 2]}
//     stopping: {probability: 0.17, side_fraction: 0.3, both_ends_fraction: 0.5, offset: [2, 3], weight: [0.5, 2]}
//     corner: {angles_deg: [45, 90, 135], arm_offset: [1, 1.5]}
//     curvature: {radius: [1.5, 4], spacing: [1.2, 1.8]}
//     animal_modes: [[surround, cross_orientation, end_stopping, side_stopping, corner, curvature]]
//   animal_modes (optional; absent = every mode for every animal): one list per animal (n_animals lists) of
//   the modes that animal's cells may have, from surround, cross_orientation, end_stopping, side_stopping,
//   corner, curvature. A modulator left out has probability 0 in that animal; a conjunction left out gives its
//   share to the other one, and an animal with neither has no conjunction cells (its deep_fraction is 0).
//   Radii and offsets are in envelope SDs (neuron_model.hpp); `cell_types` belongs to the gabor library and
//   is an error with kind: deep.
// Ranges [lo, hi] are drawn uniformly per neuron, except wavelength_px, mean_rate and normalization_constant,
// which are drawn log-uniformly. neuron_model.hpp gives the meaning of each parameter.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

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

// Shared multiplicative gain from latent factors (noise.hpp); count 0: none. The latents of every trial are
// stored as the dataset's `behavior`.
struct GainFactorConfig {
  int count = 0;                     // k latent factors, standard normal per trial
  double log_sd = 0.4;               // s: every neuron's gain has log-SD s (unit loadings)
  std::vector<double> loading_mean;  // (k) mean of the unnormalised loadings; default [1, 0, ...]
  double loading_sd = 0.5;           // their SD; the loadings are then normalised to unit length
};
// Private gamma gain per neuron and trial (noise.hpp); absent: none. Its variance v_j is drawn per neuron,
// log-normally: v_j = variance_median * exp(variance_log_sd * N(0, 1)).
struct PrivateGainConfig {
  bool enabled = false;
  double variance_median = 0.5;
  double variance_log_sd = 1.0;
};

struct NoiseConfig {
  std::string model = "poisson";  // poisson | negative_binomial | zero_inflated_gamma
  double nb_r = 4;                // negative binomial: var = mean + mean^2 / nb_r
  ZeroInflatedGammaConfig zig;
  double shared_gain_sd = 0;      // SD of log of the shared per-trial gain (0: no shared gain)
  GainFactorConfig gain_factors;
  PrivateGainConfig private_gain;
};

struct RetinotopyConfig {
  std::array<std::array<double, 2>, 2> um_per_px{{{40, 0}, {0, 40}}};  // cortex (x, y) per RF (x, y) pixel
  std::array<double, 2> origin_um{0, 0};  // cortical position of the image centre
  double jitter_um = 25;                  // SD of isotropic Gaussian scatter added to x and y
  Range depth_um{150, 350};               // cortical depth (z), uniform
};

// The deep cell-type library (cell_library.kind: deep); neuron_model.hpp gives the meaning of each value.
struct SurroundConfig {
  double probability = 0.5;     // P(cell has surround suppression); mouse V1: most cells (Self et al. 2014)
  double tuned_fraction = 0.5;  // of those, the fraction whose surround is iso-tuned (the rest untuned)
  Range radius{2, 3};           // ring radius in envelope SDs along the bars
  Range weight{0.5, 2};         // weight in the divisive pool
};
struct CrossOrientationConfig {
  double probability = 0.3;
  Range weight{0.5, 2};
};
struct StoppingConfig {
  double probability = 0.17;        // end- or side-stopped cells; about 17 % in mouse L2/3 (Samonds 2017)
  double side_fraction = 0.3;       // of those, side-stopped (zones beside the bar) instead of end-stopped
  double both_ends_fraction = 0.5;  // zones on both ends / sides (else on one, drawn)
  Range offset{2, 3};               // zone distance in envelope SDs along (end) or across (side) the bars
  Range weight{0.5, 2};
};
struct CornerConfig {
  std::vector<double> angles_deg{45, 90, 135};  // alpha, drawn uniformly from this list
  Range arm_offset{1, 1.5};                     // arm centre distance from the vertex, envelope SDs along
};
struct CurvatureConfig {
  Range radius{1.5, 4};     // arc radius, envelope SDs along the bars
  Range spacing{1.2, 1.8};  // arc length between segments, envelope SDs along the bars
};
struct CellLibraryConfig {
  std::string kind = "gabor";                       // gabor | deep
  double simple = 0.3, complex = 0.4, mixed = 0.3;  // bases
  Range mixed_energy_weight{0.2, 0.8};
  double deep_fraction = 0.3;
  double corner = 0.5, curvature = 0.5;           // conjunctions
  std::string orientation_coupling = "relative";  // relative | absolute
  SurroundConfig surround;
  CrossOrientationConfig cross_orientation;
  StoppingConfig stopping;
  CornerConfig corner_shape;
  CurvatureConfig curvature_shape;
  std::vector<std::vector<std::string>> animal_modes;  // empty: every mode for every animal

  bool deep() const { return kind == "deep"; }
  // Whether `mode` (surround, cross_orientation, end_stopping, side_stopping, corner, curvature) is allowed
  // in an animal (0-based).
  bool allows(uint64_t animal, const std::string& mode) const;
};

struct SimulationConfig {
  std::string stimuli = "stimuli.h5";  // resolved path after decoding
  uint64_t seed = 1;
  int n_animals = 1;
  int n_neurons = 0;                     // every animal's, unless n_neurons_by_animal is set
  std::vector<int> n_neurons_by_animal;  // (n_animals) from a list-valued n_neurons; empty: n_neurons each
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
  CellLibraryConfig cell_library;

  std::string source;  // the YAML file it came from ("" when built in code); named in late errors

  // Decodes and checks a config; `base_dir` resolves a relative stimuli path. Throws ConfigError naming
  // the key for unknown keys, wrong types, out-of-range values and impossible combinations.
  void decode(ConfigReader& reader, const std::string& base_dir);
  // The resolved config as YAML (all keys, defaults filled in); decoding it gives the same config.
  std::string to_yaml() const;

  int neurons_of(int animal) const {
    return n_neurons_by_animal.empty() ? n_neurons : n_neurons_by_animal[static_cast<size_t>(animal)];
  }
  int64_t trials_per_animal() const {
    return int64_t{n_train} + n_validation + int64_t{n_test_images} * test_repeats;
  }

 private:
  void decode_cell_library(ConfigReader& reader);  // part of decode
};

// Reads a YAML file into a SimulationConfig (stimuli resolved against the file's folder).
SimulationConfig load_simulation_config(const std::string& path);
// Decodes YAML text (tests, configs stored in files); `base_dir` resolves the stimuli path.
SimulationConfig parse_simulation_config(const std::string& text, const std::string& origin,
                                         const std::string& base_dir);

}  // namespace v1sysid::sim
