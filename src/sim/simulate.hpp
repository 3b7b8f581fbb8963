// The digital V1 experiment of one animal: images, neurons, trials and ground truth, in memory.
//
// Design (per animal, all drawn from (seed, animal)):
//   - n_train + n_validation distinct images from the stimulus file's "trainval" split, each shown once
//     (tiers train / validation), and n_test_images distinct images from its "test" split, each shown
//     test_repeats times (tier test). Stimuli larger than image.height x image.width are centre-cropped.
//   - the presentation order of all trials is a deterministic shuffle; row t of the dataset is trial t
//     (trial_idx = t), so tiers are interleaved as in a recording.
//   - image ids (item_info/frame_image_id) are the row numbers of the images in the stimulus file: unique
//     per image, equal for repeats, and the same image has the same id in every animal.
//   - responses of trial t: simulate_trial(noise, seed, animal, t, rates of its image) (noise.hpp); with gain
//     factors or private gains, each neuron's noise parameters come from draw_neuron_noise(seed, animal, j) and
//     trial t's latents z_t are kept as behaviour (row t of `behavior`).
// Animals are numbered 0.. in code and 1.. in files (neurons/animal_ids, file names).
#pragma once

#include "data/dataset.hpp"
#include "sim/neuron_model.hpp"
#include "sim/noise.hpp"
#include "sim/sim_config.hpp"
#include "sim/photos.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace v1sysid::sim {

struct SimulatedDataset {
  // images (N, 1, H, W) 0..255, responses (N, n), tiers, image_ids, unit_ids (1..n),
  // cortical_coordinates (n, 3) um, ground_truth (cell_type, orientation (NaN for the non-oriented
  // centre-surround cells), position, test_image_ids (ascending), test_rates, ceiling_correlation, fev).
  Dataset data;
  int animal = 0;                        // 0-based
  std::vector<uint32_t> trial_idx;       // (N) presentation order, equal to the row
  std::vector<int64_t> source_photo;     // (N) photo_index of the trial's image in the stimulus file (-1: procedural)
  std::vector<NeuronParameters> neurons; // (n) true parameters, calibrated
  std::vector<Ceiling> ceilings;         // (n) analytic ceilings on the test images
  NoiseParameters noise;
  std::vector<NeuronNoise> neuron_noise; // (n) per-neuron noise; empty unless per_neuron_noise(noise)
  std::vector<float> behavior;           // (N, noise.gain_factors) latents z_t of the gain factors
  std::vector<float> raw_drive;          // (N, n) raw drive g of each trial's image; empty unless requested
  int test_repeats = 0;
  double image_mean = 0;                 // pixel z-scoring applied before the filters
  double image_std = 1;
  std::string config_yaml;               // resolved config
  std::string stimuli_file;              // file name of the stimuli
  std::string stimuli_generator;         // their "generator" label
  std::string orientation_coupling;      // deep library: relative | absolute
};

NoiseParameters noise_parameters(const NoiseConfig& config);
NeuronNoiseDistribution neuron_noise_distribution(const NoiseConfig& config);

// Simulates one animal. Config problems that only show with the stimuli (image size larger than the crops,
// too few trainval or test images) throw ConfigError naming the key. `store_raw_drive` keeps the raw drive g
// (neuron_model.hpp) of every trial for gt/raw_drive (the learnability check, analysis/learnability.py).
SimulatedDataset simulate_animal(const SimulationConfig& config, const StimulusSet& stimuli, int animal,
                                 bool store_raw_drive = false);

// The noise-free rates of a simulated animal's (calibrated) neurons on other images, in the units of
// gt/test_rates: what the neurons "really compute", to score in-silico analyses (most exciting inputs, tuning)
// against. images: (n_images, height, width) grey levels 0..255 at the animal's image size, z-scored with the
// animal's image_mean / image_std as its own images were.  returns (n_images, n_neurons)
std::vector<float> true_rates(const SimulatedDataset& animal, const std::vector<float>& images, int64_t n_images,
                              int height, int width);

// File of animal k (0-based): `out` itself for a single animal, else "<dir>/<stem>-animal<k+1><ext>".
std::string animal_output_path(const std::string& out, int animal, int n_animals);

}  // namespace v1sysid::sim
