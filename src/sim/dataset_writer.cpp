#include "sim/dataset_writer.hpp"

#include "core/error.hpp"
#include "core/version.hpp"
#include "io/h5.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>

namespace v1sysid::sim {

namespace {

// Median as numpy computes it (mean of the two middle values for even counts).
float median_in_place(std::vector<float>& v) {
  if (v.empty()) return std::numeric_limits<float>::quiet_NaN();
  const auto mid = static_cast<std::ptrdiff_t>(v.size() / 2);
  std::nth_element(v.begin(), v.begin() + mid, v.end());
  double m = v[static_cast<size_t>(mid)];
  if (v.size() % 2 == 0) m = 0.5 * (m + *std::max_element(v.begin(), v.begin() + mid));
  return static_cast<float>(m);
}

}  // namespace

ImageStatistics image_statistics(const Dataset& d, Tier tier) {
  const size_t image_size = static_cast<size_t>(d.height * d.width);
  std::vector<float> pixels;
  for (int64_t t = 0; t < d.n_trials; ++t) {
    if (d.tiers[static_cast<size_t>(t)] != tier) continue;
    const auto begin = d.images.begin() + static_cast<std::ptrdiff_t>(static_cast<size_t>(t) * image_size);
    pixels.insert(pixels.end(), begin, begin + static_cast<std::ptrdiff_t>(image_size));
  }
  ImageStatistics s;
  if (pixels.empty()) return s;
  double sum = 0, sum_sq = 0;
  for (float p : pixels) sum += p;
  const double mean = sum / static_cast<double>(pixels.size());
  for (float p : pixels) sum_sq += (p - mean) * (p - mean);
  s.mean = static_cast<float>(mean);
  s.std = static_cast<float>(std::sqrt(sum_sq / static_cast<double>(pixels.size())));
  s.min = *std::min_element(pixels.begin(), pixels.end());
  s.max = *std::max_element(pixels.begin(), pixels.end());
  s.median = median_in_place(pixels);
  return s;
}

ResponseStatistics response_statistics(const Dataset& d, Tier tier) {
  const int64_t n = d.n_neurons;
  std::vector<int64_t> rows;
  for (int64_t t = 0; t < d.n_trials; ++t) {
    if (d.tiers[static_cast<size_t>(t)] == tier) rows.push_back(t);
  }
  ResponseStatistics s;
  std::vector<float> column(rows.size());
  for (int64_t j = 0; j < n; ++j) {
    for (size_t k = 0; k < rows.size(); ++k) column[k] = d.responses[static_cast<size_t>(rows[k] * n + j)];
    double sum = 0, sum_sq = 0;
    for (float r : column) sum += r;
    const double count = static_cast<double>(column.size());
    const double mean = count > 0 ? sum / count : std::numeric_limits<double>::quiet_NaN();
    for (float r : column) sum_sq += (r - mean) * (r - mean);
    s.mean.push_back(static_cast<float>(mean));
    s.std.push_back(static_cast<float>(count > 1 ? std::sqrt(sum_sq / (count - 1)) : std::numeric_limits<double>::quiet_NaN()));
    s.min.push_back(column.empty() ? NAN : *std::min_element(column.begin(), column.end()));
    s.max.push_back(column.empty() ? NAN : *std::max_element(column.begin(), column.end()));
    s.median.push_back(median_in_place(column));
  }
  return s;
}

void write_static_image_set(const SimulatedDataset& sim, const std::string& path, bool force) {
  const Dataset& d = sim.data;
  const GroundTruth& gt = *d.ground_truth;
  const auto N = static_cast<hsize_t>(d.n_trials);
  const auto n = static_cast<hsize_t>(d.n_neurons);
  const auto m = static_cast<hsize_t>(gt.test_image_ids.size());
  h5::File f = h5::File::create(path, force);

  f.write("images", d.images, {N, 1, static_cast<hsize_t>(d.height), static_cast<hsize_t>(d.width)});
  f.write("responses", d.responses, {N, n});
  std::vector<std::string> tiers, types(N, "stimulus.Frame");
  for (Tier t : d.tiers) tiers.push_back(tier_name(t));
  f.write_strings("tiers", tiers);
  f.write_strings("types", types);
  f.write("trial_idx", sim.trial_idx, {N});
  f.write("item_info/trial_idx", sim.trial_idx, {N});
  f.write("item_info/frame_image_id", d.image_ids, {N});

  if (n <= 65535) {
    std::vector<uint16_t> ids(d.unit_ids.begin(), d.unit_ids.end());
    f.write("neurons/unit_ids", ids, {n});
  } else {
    std::vector<uint32_t> ids(d.unit_ids.begin(), d.unit_ids.end());
    f.write("neurons/unit_ids", ids, {n});
  }
  f.write("neurons/animal_ids", std::vector<uint16_t>(n, static_cast<uint16_t>(sim.animal + 1)), {n});
  f.write_strings("neurons/area", std::vector<std::string>(n, "V1"));
  f.write_strings("neurons/layer", std::vector<std::string>(n, "L2/3"));
  f.write("neurons/cell_motor_coordinates", d.cortical_coordinates, {n, 3});

  const ImageStatistics is = image_statistics(d, Tier::train);
  f.write_scalar("statistics/images/all/mean", is.mean);
  f.write_scalar("statistics/images/all/std", is.std);
  f.write_scalar("statistics/images/all/min", is.min);
  f.write_scalar("statistics/images/all/max", is.max);
  f.write_scalar("statistics/images/all/median", is.median);
  const ResponseStatistics rs = response_statistics(d, Tier::train);
  f.write("statistics/responses/all/mean", rs.mean, {n});
  f.write("statistics/responses/all/std", rs.std, {n});
  f.write("statistics/responses/all/min", rs.min, {n});
  f.write("statistics/responses/all/max", rs.max, {n});
  f.write("statistics/responses/all/median", rs.median, {n});

  // Ground truth.
  f.write_strings("gt/cell_type", gt.cell_type);
  f.write("gt/orientation", gt.orientation, {n});
  f.write("gt/position", gt.position, {n, 2});
  f.write("gt/test_image_ids", gt.test_image_ids, {m});
  f.write("gt/test_rates", gt.test_rates, {m, n});
  f.write("gt/ceiling_correlation", gt.ceiling_correlation, {n});
  f.write("gt/fev", gt.fev, {n});
  std::vector<float> signal, noise;
  for (const Ceiling& c : sim.ceilings) {
    signal.push_back(static_cast<float>(c.signal_variance));
    noise.push_back(static_cast<float>(c.noise_variance));
  }
  f.write("gt/signal_variance", signal, {n});
  f.write("gt/noise_variance", noise, {n});

  const double nan = std::numeric_limits<double>::quiet_NaN();
  auto per_neuron = [&](const std::string& name, auto value_of) {
    std::vector<double> v;
    for (const NeuronParameters& p : sim.neurons) v.push_back(value_of(p));
    f.write("gt/" + name, v, {n});
  };
  auto gabor = [](const NeuronParameters& p) { return p.type != CellType::center_surround; };
  per_neuron("phase", [&](const NeuronParameters& p) { return p.type == CellType::simple ? p.phase : nan; });
  per_neuron("wavelength_px", [&](const NeuronParameters& p) { return gabor(p) ? p.wavelength : nan; });
  per_neuron("spatial_frequency", [&](const NeuronParameters& p) { return gabor(p) ? 1.0 / p.wavelength : nan; });
  per_neuron("sigma_px", [&](const NeuronParameters& p) { return p.sigma; });
  per_neuron("aspect_ratio", [&](const NeuronParameters& p) { return gabor(p) ? p.aspect_ratio : nan; });
  per_neuron("surround_sigma_px", [&](const NeuronParameters& p) { return gabor(p) ? nan : p.surround_sigma; });
  per_neuron("surround_weight", [&](const NeuronParameters& p) { return gabor(p) ? nan : p.surround_weight; });
  per_neuron("polarity", [&](const NeuronParameters& p) { return gabor(p) ? 0.0 : double(p.polarity); });
  auto dn = [](const NeuronParameters& p) { return p.type == CellType::normalized_complex; };
  per_neuron("normalization_constant", [&](const NeuronParameters& p) { return dn(p) ? p.normalization_constant : nan; });
  per_neuron("semi_saturation", [&](const NeuronParameters& p) { return dn(p) ? p.semi_saturation : nan; });
  per_neuron("selectivity", [](const NeuronParameters& p) { return p.selectivity; });
  per_neuron("threshold", [](const NeuronParameters& p) { return p.threshold; });
  per_neuron("gain", [](const NeuronParameters& p) { return p.gain; });
  per_neuron("baseline", [](const NeuronParameters& p) { return p.baseline; });
  per_neuron("mean_rate", [](const NeuronParameters& p) { return p.target_mean_rate; });
  per_neuron("raw_drive_mean", [](const NeuronParameters& p) { return p.raw_drive_mean; });
  per_neuron("raw_drive_sd", [](const NeuronParameters& p) { return p.raw_drive_sd; });

  f.write_attribute("gt", "noise_model", std::string(noise_model_name(sim.noise.model)));
  f.write_attribute("gt", "nb_r", sim.noise.nb_r);
  f.write_attribute("gt", "zig_zero_probability", sim.noise.zig_zero_probability);
  f.write_attribute("gt", "zig_shape", sim.noise.zig_shape);
  f.write_attribute("gt", "shared_gain_sd", sim.noise.shared_gain_sd);
  f.write_attribute("gt", "test_repeats", int64_t{sim.test_repeats});
  f.write_attribute("gt", "image_mean", sim.image_mean);
  f.write_attribute("gt", "image_std", sim.image_std);

  f.write_attribute("/", "format_version", int64_t{1});
  f.write_attribute("/", "generator", std::string("v1sysid simulate ") + version_string());
  f.write_attribute("/", "config", sim.config_yaml);
  f.write_attribute("/", "stimuli", sim.stimuli_file);
  f.write_attribute("/", "stimuli_generator", sim.stimuli_generator);
  f.write_attribute("/", "animal", int64_t{sim.animal + 1});
  f.write_attribute("/", "data_key", data_key_from_path(path));
  f.commit();
}

}  // namespace v1sysid::sim
