#include "sim/simulate.hpp"

#include "core/error.hpp"
#include "core/progress.hpp"
#include "sim/random.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>

namespace v1sysid::sim {

namespace {

std::string config_key(const SimulationConfig& c, const std::string& key) {
  return (c.source.empty() ? std::string("config") : c.source) + " " + key;
}

// The first `count` entries of a deterministic shuffle of `pool` (partial Fisher-Yates).
std::vector<int64_t> pick(std::vector<int64_t> pool, int64_t count, Rng rng) {
  for (int64_t i = 0; i < count; ++i) {
    const int64_t j = i + static_cast<int64_t>(rng.below(static_cast<uint64_t>(pool.size()) - static_cast<uint64_t>(i)));
    std::swap(pool[static_cast<size_t>(i)], pool[static_cast<size_t>(j)]);
  }
  pool.resize(static_cast<size_t>(count));
  return pool;
}

}  // namespace

NoiseParameters noise_parameters(const NoiseConfig& c) {
  NoiseParameters p;
  p.model = parse_noise_model(c.model);
  p.nb_r = c.nb_r;
  p.zig_zero_probability = c.zig.zero_probability;
  p.zig_shape = c.zig.shape;
  p.shared_gain_sd = c.shared_gain_sd;
  p.gain_factors = c.gain_factors.count;
  p.gain_log_sd = c.gain_factors.count > 0 ? c.gain_factors.log_sd : 0.0;
  p.private_gain = c.private_gain.enabled;
  return p;
}

NeuronNoiseDistribution neuron_noise_distribution(const NoiseConfig& c) {
  NeuronNoiseDistribution d;
  d.gain_factors = c.gain_factors.count;
  d.loading_mean = c.gain_factors.loading_mean;
  d.loading_sd = c.gain_factors.loading_sd;
  d.private_gain = c.private_gain.enabled;
  d.private_variance_median = c.private_gain.variance_median;
  d.private_variance_log_sd = c.private_gain.variance_log_sd;
  return d;
}

std::string animal_output_path(const std::string& out, int animal, int n_animals) {
  if (n_animals <= 1) return out;
  const std::filesystem::path p(out);
  return (p.parent_path() / (p.stem().string() + "-animal" + std::to_string(animal + 1) + p.extension().string()))
      .string();
}

SimulatedDataset simulate_animal(const SimulationConfig& config, const StimulusSet& stimuli, int animal,
                                 bool store_raw_drive) {
  const int H = config.height, W = config.width;
  if (H > stimuli.height || W > stimuli.width) {
    throw ConfigError(config_key(config, H > stimuli.height ? "image.height" : "image.width") + ": the image (" +
                          std::to_string(H) + " x " + std::to_string(W) + ") is larger than the stimulus crops (" +
                          std::to_string(stimuli.height) + " x " + std::to_string(stimuli.width) + ")",
                      stimuli.path, "lower image.height / image.width or make larger crops with 'v1sysid images'");
  }
  const std::vector<int64_t> trainval_pool = stimuli.indices(false), test_pool = stimuli.indices(true);
  const int64_t n_single = int64_t{config.n_train} + config.n_validation;
  if (n_single > static_cast<int64_t>(trainval_pool.size())) {
    throw ConfigError(config_key(config, "n_train") + ": " + std::to_string(config.n_train) + " training + " +
                          std::to_string(config.n_validation) + " validation images need as many distinct 'trainval' "
                          "images, the stimulus file has " + std::to_string(trainval_pool.size()),
                      stimuli.path, "lower n_train / n_validation or make more crops with 'v1sysid images --count'");
  }
  if (config.n_test_images > static_cast<int64_t>(test_pool.size())) {
    throw ConfigError(config_key(config, "n_test_images") + ": " + std::to_string(config.n_test_images) +
                          " test images requested, the stimulus file has " + std::to_string(test_pool.size()) +
                          " in its 'test' split",
                      stimuli.path, "lower n_test_images or make more crops with 'v1sysid images --count'");
  }
  const uint64_t a = static_cast<uint64_t>(animal);
  const std::string label = config.n_animals > 1 ? "animal " + std::to_string(animal + 1) + ": " : "";

  // Unique images: train, validation, test (ascending stimulus row).
  const std::vector<int64_t> single = pick(trainval_pool, n_single, Rng(config.seed, a, Stream::images, 0));
  std::vector<int64_t> test_ids = pick(test_pool, config.n_test_images, Rng(config.seed, a, Stream::images, 1));
  std::sort(test_ids.begin(), test_ids.end());
  std::vector<int64_t> stimulus_of(single);
  stimulus_of.insert(stimulus_of.end(), test_ids.begin(), test_ids.end());
  const int64_t n_unique = static_cast<int64_t>(stimulus_of.size());
  auto tier_of_unique = [&](int64_t u) {
    return u < config.n_train ? Tier::train : u < n_single ? Tier::validation : Tier::test;
  };

  // Centre crops, 0..255, and their z-scored copy for the filters.
  const size_t image_size = static_cast<size_t>(H) * static_cast<size_t>(W);
  const int64_t off_y = (stimuli.height - H) / 2, off_x = (stimuli.width - W) / 2;
  std::vector<float> crops(static_cast<size_t>(n_unique) * image_size);
  for (int64_t u = 0; u < n_unique; ++u) {
    const float* src = stimuli.images.data() + static_cast<size_t>(stimulus_of[static_cast<size_t>(u)]) *
                                                   static_cast<size_t>(stimuli.height * stimuli.width);
    for (int y = 0; y < H; ++y) {
      const float* row = src + static_cast<size_t>((off_y + y) * stimuli.width + off_x);
      std::copy(row, row + W, crops.begin() + static_cast<std::ptrdiff_t>(static_cast<size_t>(u) * image_size + static_cast<size_t>(y * W)));
    }
  }
  std::vector<int64_t> train_rows(static_cast<size_t>(config.n_train));
  for (int64_t u = 0; u < config.n_train; ++u) train_rows[static_cast<size_t>(u)] = u;
  double sum = 0, sum_sq = 0;
  const size_t train_pixels = static_cast<size_t>(config.n_train) * image_size;
  for (size_t k = 0; k < train_pixels; ++k) sum += crops[k];
  const double mean = sum / static_cast<double>(train_pixels);
  for (size_t k = 0; k < train_pixels; ++k) sum_sq += (crops[k] - mean) * (crops[k] - mean);
  const double sd = std::sqrt(sum_sq / static_cast<double>(train_pixels));
  if (!(sd > 1e-6)) {
    throw DataError("the training images are all one grey level", stimuli.path,
                    "the simulator needs natural images; regenerate the stimuli");
  }
  std::vector<float> normalised(crops.size());
  for (size_t k = 0; k < crops.size(); ++k) normalised[k] = static_cast<float>((crops[k] - mean) / sd);

  SimulatedDataset out;
  out.animal = animal;
  out.noise = noise_parameters(config.noise);
  out.test_repeats = config.test_repeats;
  out.image_mean = mean;
  out.image_std = sd;
  out.config_yaml = config.to_yaml();
  out.stimuli_file = std::filesystem::path(stimuli.path).filename().string();
  out.stimuli_generator = stimuli.generator;
  out.orientation_coupling = config.cell_library.orientation_coupling;

  // Neurons, drives, rates.
  out.neurons = draw_population(config, a);
  const int64_t n = config.neurons_of(animal);
  const std::vector<float> raw = compute_raw_drives(out.neurons, normalised, n_unique, H, W, train_rows,
                                                    label + "simulate: receptive fields");
  normalised = {};
  const std::vector<float> rates = calibrate_rates(out.neurons, raw, n_unique, train_rows);
  if (store_raw_drive) out.raw_drive.resize(static_cast<size_t>(config.trials_per_animal() * n));

  // Trials in a shuffled presentation order.
  std::vector<int64_t> unique_of_trial;
  unique_of_trial.reserve(static_cast<size_t>(config.trials_per_animal()));
  for (int64_t u = 0; u < n_single; ++u) unique_of_trial.push_back(u);
  for (int r = 0; r < config.test_repeats; ++r) {
    for (int64_t u = n_single; u < n_unique; ++u) unique_of_trial.push_back(u);
  }
  Rng order(config.seed, a, Stream::trial_order, 0);
  for (size_t i = unique_of_trial.size(); i > 1; --i) std::swap(unique_of_trial[i - 1], unique_of_trial[order.below(i)]);
  const int64_t N = static_cast<int64_t>(unique_of_trial.size());

  // Per-neuron noise (opt-in): loadings of the gain factors and private gain variances.
  const bool per_neuron = per_neuron_noise(out.noise);
  const int k = out.noise.gain_factors;
  if (per_neuron) {
    const NeuronNoiseDistribution nd = neuron_noise_distribution(config.noise);
    for (int64_t j = 0; j < n; ++j)
      out.neuron_noise.push_back(draw_neuron_noise(nd, config.seed, a, static_cast<uint64_t>(j)));
  }
  out.behavior.resize(static_cast<size_t>(N * k));

  Dataset& d = out.data;
  d.n_trials = N;
  d.height = H;
  d.width = W;
  d.n_neurons = n;
  d.images.resize(static_cast<size_t>(N) * image_size);
  d.responses.resize(static_cast<size_t>(N * n));
  d.tiers.resize(static_cast<size_t>(N));
  d.image_ids.resize(static_cast<size_t>(N));
  out.trial_idx.resize(static_cast<size_t>(N));
  out.source_photo.resize(static_cast<size_t>(N));
  Progress progress(label + "simulate: trials", static_cast<long>(N));
  for (int64_t t = 0; t < N; ++t) {
    const int64_t u = unique_of_trial[static_cast<size_t>(t)];
    std::copy(crops.begin() + static_cast<std::ptrdiff_t>(static_cast<size_t>(u) * image_size),
              crops.begin() + static_cast<std::ptrdiff_t>(static_cast<size_t>(u + 1) * image_size),
              d.images.begin() + static_cast<std::ptrdiff_t>(static_cast<size_t>(t) * image_size));
    d.tiers[static_cast<size_t>(t)] = tier_of_unique(u);
    if (store_raw_drive) {
      std::copy(raw.begin() + static_cast<std::ptrdiff_t>(static_cast<size_t>(u * n)),
                raw.begin() + static_cast<std::ptrdiff_t>(static_cast<size_t>((u + 1) * n)),
                out.raw_drive.begin() + static_cast<std::ptrdiff_t>(static_cast<size_t>(t * n)));
    }
    d.image_ids[static_cast<size_t>(t)] = stimulus_of[static_cast<size_t>(u)];
    out.source_photo[static_cast<size_t>(t)] =
        stimuli.photo_index[static_cast<size_t>(stimulus_of[static_cast<size_t>(u)])];
    out.trial_idx[static_cast<size_t>(t)] = static_cast<uint32_t>(t);
    simulate_trial(out.noise, out.neuron_noise, config.seed, a, static_cast<uint64_t>(t),
                   rates.data() + static_cast<size_t>(u * n), n, d.responses.data() + static_cast<size_t>(t * n),
                   k > 0 ? out.behavior.data() + static_cast<size_t>(t * k) : nullptr);
    if ((t & 255) == 255) progress.update(static_cast<long>(t + 1));
  }
  progress.finish();

  // Neurons and retinotopy: cortex = origin + M (rf - image centre) + jitter, depth uniform.
  const auto& ret = config.retinotopy;
  d.unit_ids.resize(static_cast<size_t>(n));
  d.cortical_coordinates.resize(static_cast<size_t>(3 * n));
  for (int64_t j = 0; j < n; ++j) {
    const NeuronParameters& p = out.neurons[static_cast<size_t>(j)];
    Rng rng(config.seed, a, Stream::retinotopy, static_cast<uint64_t>(j));
    const double dx = p.x - 0.5 * (W - 1), dy = p.y - 0.5 * (H - 1);
    const double jx = rng.normal() * ret.jitter_um, jy = rng.normal() * ret.jitter_um;
    const double depth = rng.uniform(ret.depth_um[0], ret.depth_um[1]);
    float* c = d.cortical_coordinates.data() + static_cast<size_t>(3 * j);
    c[0] = static_cast<float>(ret.origin_um[0] + ret.um_per_px[0][0] * dx + ret.um_per_px[0][1] * dy + jx);
    c[1] = static_cast<float>(ret.origin_um[1] + ret.um_per_px[1][0] * dx + ret.um_per_px[1][1] * dy + jy);
    c[2] = static_cast<float>(depth);
    d.unit_ids[static_cast<size_t>(j)] = j + 1;
  }

  // Ground truth.
  GroundTruth gt;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (const NeuronParameters& p : out.neurons) {
    gt.cell_type.push_back(cell_type_name(p.type));
    gt.orientation.push_back(static_cast<float>(p.type == CellType::center_surround ? nan : p.orientation));
    gt.position.push_back(static_cast<float>(p.x));
    gt.position.push_back(static_cast<float>(p.y));
  }
  gt.test_image_ids = test_ids;
  gt.test_rates.assign(rates.begin() + static_cast<std::ptrdiff_t>(n_single * n), rates.end());
  std::vector<double> column(static_cast<size_t>(config.n_test_images));
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t i = 0; i < config.n_test_images; ++i) column[static_cast<size_t>(i)] = gt.test_rates[static_cast<size_t>(i * n + j)];
    const Ceiling c = per_neuron
                          ? analytic_ceiling(out.noise, column.data(), config.n_test_images, config.test_repeats,
                                             gain_second_moment(out.noise, &out.neuron_noise[static_cast<size_t>(j)]))
                          : analytic_ceiling(out.noise, column.data(), config.n_test_images, config.test_repeats);
    out.ceilings.push_back(c);
    gt.ceiling_correlation.push_back(static_cast<float>(c.ceiling_correlation));
    gt.fev.push_back(static_cast<float>(c.fev));
  }
  d.ground_truth = std::move(gt);
  return out;
}

std::vector<float> true_rates(const SimulatedDataset& animal, const std::vector<float>& images, int64_t n_images,
                              int height, int width) {
  // z-scored as simulate_animal z-scores its crops (float of the double expression), so an image of the
  // dataset gets bit for bit the rate the dataset's gt/test_rates holds.
  std::vector<float> normalised(images.size());
  for (size_t k = 0; k < images.size(); ++k)
    normalised[k] = static_cast<float>((images[k] - animal.image_mean) / animal.image_std);
  std::vector<NeuronParameters> neurons = animal.neurons;  // calibrated: no calibration rows, nothing changes
  const std::vector<float> raw = compute_raw_drives(neurons, normalised, n_images, height, width, {},
                                                    "simulate: true rates");
  const size_t n = neurons.size();
  std::vector<float> rates(raw.size());
  for (size_t i = 0; i < static_cast<size_t>(n_images); ++i)
    for (size_t j = 0; j < n; ++j) rates[i * n + j] = static_cast<float>(rate_of_raw_drive(neurons[j], raw[i * n + j]));
  return rates;
}

}  // namespace v1sysid::sim
