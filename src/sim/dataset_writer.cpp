#include "sim/dataset_writer.hpp"

#include "core/error.hpp"
#include "core/version.hpp"
#include "io/h5.hpp"
#include "io/npy.hpp"
#include "io/output_file.hpp"

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
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
    // ddof 0: the SD v1sysid (data/dataset.cpp, as Ecker's np.std) divides the responses by, so that a
    // neuralpredictors NeuroNormalizer reading this field scales them exactly as v1sysid does.
    s.std.push_back(static_cast<float>(count > 0 ? std::sqrt(sum_sq / count) : std::numeric_limits<double>::quiet_NaN()));
    s.min.push_back(column.empty() ? NAN : *std::min_element(column.begin(), column.end()));
    s.max.push_back(column.empty() ? NAN : *std::max_element(column.begin(), column.end()));
    s.median.push_back(median_in_place(column));
  }
  return s;
}

namespace {

// Where write_content puts each named array: the HDF5 layout names (StaticImageSet) are the vocabulary, and
// each sink maps them onto its format, so both layouts always carry the same content.
class DatasetSink {
 public:
  using Shape = std::vector<int64_t>;
  virtual ~DatasetSink() = default;
  virtual void floats(const std::string& name, const std::vector<float>& v, const Shape& shape) = 0;
  virtual void doubles(const std::string& name, const std::vector<double>& v, const Shape& shape) = 0;
  virtual void ints(const std::string& name, const std::vector<int64_t>& v, const Shape& shape) = 0;
  // Ids and counters that neuro_data stores as uint16 (uint32 when they do not fit).
  virtual void small_uints(const std::string& name, const std::vector<int64_t>& v, const Shape& shape) = 0;
  virtual void strings(const std::string& name, const std::vector<std::string>& v) = 0;
  virtual void attribute(const std::string& object, const std::string& name, const std::string& value) = 0;
  virtual void attribute(const std::string& object, const std::string& name, double value) = 0;
  virtual void attribute(const std::string& object, const std::string& name, int64_t value) = 0;
};

class Hdf5Sink final : public DatasetSink {
 public:
  explicit Hdf5Sink(h5::File& f) : m_file(f) {}
  void floats(const std::string& name, const std::vector<float>& v, const Shape& shape) override {
    m_file.write(name, v, dims(shape));
  }
  void doubles(const std::string& name, const std::vector<double>& v, const Shape& shape) override {
    m_file.write(name, v, dims(shape));
  }
  void ints(const std::string& name, const std::vector<int64_t>& v, const Shape& shape) override {
    m_file.write(name, v, dims(shape));
  }
  void small_uints(const std::string& name, const std::vector<int64_t>& v, const Shape& shape) override {
    const int64_t most = v.empty() ? 0 : *std::max_element(v.begin(), v.end());
    if (most <= 65535) {
      m_file.write(name, std::vector<uint16_t>(v.begin(), v.end()), dims(shape));
    } else {
      m_file.write(name, std::vector<uint32_t>(v.begin(), v.end()), dims(shape));
    }
  }
  void strings(const std::string& name, const std::vector<std::string>& v) override { m_file.write_strings(name, v); }
  void attribute(const std::string& o, const std::string& n, const std::string& v) override { m_file.write_attribute(o, n, v); }
  void attribute(const std::string& o, const std::string& n, double v) override { m_file.write_attribute(o, n, v); }
  void attribute(const std::string& o, const std::string& n, int64_t v) override { m_file.write_attribute(o, n, v); }

 private:
  static h5::Shape dims(const Shape& s) { return h5::Shape(s.begin(), s.end()); }
  h5::File& m_file;
};

// FileTree layout (data-formats.md §B.2): data/<images|responses>/<trial>.npy, meta/trials, meta/neurons,
// meta/statistics, gt/ (read back by data/file_tree.cpp), attributes in meta/attributes.json, and the
// config.json that neuralpredictors' FileTreeDataset expects.
class FileTreeSink final : public DatasetSink {
 public:
  explicit FileTreeSink(std::string root) : m_root(std::move(root)) {}
  void floats(const std::string& name, const std::vector<float>& v, const Shape& shape) override {
    if (name == "images" || name == "responses" || name == "behavior") {
      const Shape row(shape.begin() + 1, shape.end());
      const auto row_size = static_cast<size_t>(shape.size() > 1 ? v.size() / static_cast<size_t>(shape[0]) : 1);
      for (int64_t i = 0; i < shape[0]; ++i) {
        const auto begin = v.begin() + static_cast<std::ptrdiff_t>(static_cast<size_t>(i) * row_size);
        save("data/" + name + "/" + std::to_string(i), npy::from_float32({begin, begin + static_cast<std::ptrdiff_t>(row_size)}, row));
      }
      return;
    }
    save(map(name), npy::from_float32(v, shape));
  }
  void doubles(const std::string& name, const std::vector<double>& v, const Shape& shape) override {
    save(map(name), npy::from_float64(v, shape));
  }
  void ints(const std::string& name, const std::vector<int64_t>& v, const Shape& shape) override {
    save(map(name), npy::from_int64(v, shape));
  }
  void small_uints(const std::string& name, const std::vector<int64_t>& v, const Shape& shape) override {
    ints(name, v, shape);
  }
  void strings(const std::string& name, const std::vector<std::string>& v) override {
    save(map(name), npy::from_unicode(v, {static_cast<int64_t>(v.size())}));
  }
  void attribute(const std::string& o, const std::string& n, const std::string& v) override { m_attributes[key(o)][n] = v; }
  void attribute(const std::string& o, const std::string& n, double v) override { m_attributes[key(o)][n] = v; }
  void attribute(const std::string& o, const std::string& n, int64_t v) override { m_attributes[key(o)][n] = v; }
  void finish() {
    write_text("meta/attributes.json", m_attributes.dump(2) + "\n");
    write_text("config.json", "{\"links\": {}}\n");
  }

 private:
  static std::string key(const std::string& object) { return object == "/" ? "root" : object; }
  static std::string map(const std::string& name) {
    for (const char* prefix : {"item_info/", "neurons/", "statistics/", "gt/"}) {
      if (name.rfind(prefix, 0) == 0) {
        const std::string rest = name.substr(std::string(prefix).size());
        if (std::string(prefix) == "item_info/") return "meta/trials/" + rest;
        if (std::string(prefix) == "gt/") return name;
        return "meta/" + name;
      }
    }
    return "meta/trials/" + name;  // tiers, types, trial_idx
  }
  void save(const std::string& relative, const npy::Array& a) {
    const std::filesystem::path p = std::filesystem::path(m_root) / (relative + ".npy");
    create_output_folder(p.parent_path().string());
    npy::save(p.string(), a);
  }
  void write_text(const std::string& relative, const std::string& text) {
    const std::filesystem::path p = std::filesystem::path(m_root) / relative;
    create_output_folder(p.parent_path().string());
    write_file_atomically(p.string(), text, Sync::none);  // commit_folder syncs the whole folder
  }
  std::string m_root;
  nlohmann::json m_attributes = nlohmann::json::object();
};

void write_content(const SimulatedDataset& sim, const std::string& data_key, DatasetSink& f);

}  // namespace

namespace {
void write_content(const SimulatedDataset& sim, const std::string& data_key, DatasetSink& f) {
  const Dataset& d = sim.data;
  const GroundTruth& gt = *d.ground_truth;
  const int64_t N = d.n_trials;
  const int64_t n = d.n_neurons;
  const auto m = static_cast<int64_t>(gt.test_image_ids.size());

  f.floats("images", d.images, {N, 1, d.height, d.width});
  f.floats("responses", d.responses, {N, n});
  const int64_t k = sim.noise.gain_factors;
  if (k > 0) {
    // Latents of the shared gain, one row per trial: the behaviour variables of this digital V1.
    f.floats("behavior", sim.behavior, {N, k});
    f.attribute(
        "behavior", "description",
        std::string("latent factors z_t ~ N(0, I) of the shared multiplicative gain: trial t scales neuron j by "
                    "exp(s w_j . z_t - s^2 |w_j|^2 / 2), s = gt@gain_log_sd, w_j = gt/gain_loadings[j] "
                    "(src/sim/noise.hpp)"));
  }
  std::vector<std::string> tiers, types(static_cast<size_t>(N), "stimulus.Frame");
  for (Tier t : d.tiers) tiers.push_back(tier_name(t));
  f.strings("tiers", tiers);
  f.strings("types", types);
  const std::vector<int64_t> trial_idx(sim.trial_idx.begin(), sim.trial_idx.end());
  f.small_uints("trial_idx", trial_idx, {N});
  f.small_uints("item_info/trial_idx", trial_idx, {N});
  f.ints("item_info/frame_image_id", d.image_ids, {N});
  // Which photograph each image was cut from, so that analyses can count distinct photographs (issue 17).
  f.ints("item_info/source_photo", sim.source_photo, {N});

  f.small_uints("neurons/unit_ids", d.unit_ids, {n});
  f.small_uints("neurons/animal_ids", std::vector<int64_t>(static_cast<size_t>(n), sim.animal + 1), {n});
  f.strings("neurons/area", std::vector<std::string>(static_cast<size_t>(n), "V1"));
  f.strings("neurons/layer", std::vector<std::string>(static_cast<size_t>(n), "L2/3"));
  f.floats("neurons/cell_motor_coordinates", d.cortical_coordinates, {n, 3});

  const ImageStatistics is = image_statistics(d, Tier::train);
  f.floats("statistics/images/all/mean", {is.mean}, {});
  f.floats("statistics/images/all/std", {is.std}, {});
  f.floats("statistics/images/all/min", {is.min}, {});
  f.floats("statistics/images/all/max", {is.max}, {});
  f.floats("statistics/images/all/median", {is.median}, {});
  const ResponseStatistics rs = response_statistics(d, Tier::train);
  f.floats("statistics/responses/all/mean", rs.mean, {n});
  f.floats("statistics/responses/all/std", rs.std, {n});
  f.floats("statistics/responses/all/min", rs.min, {n});
  f.floats("statistics/responses/all/max", rs.max, {n});
  f.floats("statistics/responses/all/median", rs.median, {n});

  // Ground truth.
  f.strings("gt/cell_type", gt.cell_type);
  f.floats("gt/orientation", gt.orientation, {n});
  f.floats("gt/position", gt.position, {n, 2});
  f.ints("gt/test_image_ids", gt.test_image_ids, {m});
  f.floats("gt/test_rates", gt.test_rates, {m, n});
  f.floats("gt/ceiling_correlation", gt.ceiling_correlation, {n});
  f.floats("gt/fev", gt.fev, {n});
  std::vector<float> signal, noise;
  for (const Ceiling& c : sim.ceilings) {
    signal.push_back(static_cast<float>(c.signal_variance));
    noise.push_back(static_cast<float>(c.noise_variance));
  }
  f.floats("gt/signal_variance", signal, {n});
  f.floats("gt/noise_variance", noise, {n});
  // Opt-in (simulate --store-raw-drive): written only when asked, so other files keep their bytes.
  if (!sim.raw_drive.empty()) f.floats("gt/raw_drive", sim.raw_drive, {N, n});

  const double nan = std::numeric_limits<double>::quiet_NaN();
  auto per_neuron = [&](const std::string& name, auto value_of) {
    std::vector<double> v;
    for (const NeuronParameters& p : sim.neurons) v.push_back(value_of(p));
    f.doubles("gt/" + name, v, {n});
  };
  auto gabor = [](const NeuronParameters& p) { return p.type != CellType::center_surround; };
  per_neuron("phase", [&](const NeuronParameters& p) {
    return p.type == CellType::simple || p.type == CellType::mixed ? p.phase : nan;
  });
  per_neuron("wavelength_px", [&](const NeuronParameters& p) { return gabor(p) ? p.wavelength : nan; });
  per_neuron("spatial_frequency", [&](const NeuronParameters& p) { return gabor(p) ? 1.0 / p.wavelength : nan; });
  per_neuron("sigma_px", [&](const NeuronParameters& p) { return p.sigma; });
  per_neuron("aspect_ratio", [&](const NeuronParameters& p) { return gabor(p) ? p.aspect_ratio : nan; });
  per_neuron("surround_sigma_px", [&](const NeuronParameters& p) { return gabor(p) ? nan : p.surround_sigma; });
  per_neuron("surround_weight", [&](const NeuronParameters& p) { return gabor(p) ? nan : p.surround_weight; });
  per_neuron("polarity", [&](const NeuronParameters& p) { return gabor(p) ? 0.0 : double(p.polarity); });
  auto dn = [](const NeuronParameters& p) { return p.type == CellType::normalized_complex || p.deep; };
  per_neuron("normalization_constant", [&](const NeuronParameters& p) { return dn(p) ? p.normalization_constant : nan; });
  per_neuron("semi_saturation", [&](const NeuronParameters& p) { return dn(p) ? p.semi_saturation : nan; });
  per_neuron("selectivity", [](const NeuronParameters& p) { return p.selectivity; });
  per_neuron("threshold", [](const NeuronParameters& p) { return p.threshold; });
  per_neuron("gain", [](const NeuronParameters& p) { return p.gain; });
  per_neuron("baseline", [](const NeuronParameters& p) { return p.baseline; });
  per_neuron("mean_rate", [](const NeuronParameters& p) { return p.target_mean_rate; });
  per_neuron("raw_drive_mean", [](const NeuronParameters& p) { return p.raw_drive_mean; });
  per_neuron("raw_drive_sd", [](const NeuronParameters& p) { return p.raw_drive_sd; });
  const bool deep = !sim.neurons.empty() && sim.neurons.front().deep;
  if (deep) {
    // Deep library (neuron_model.hpp): the base is gt/cell_type; each modulator's parameters, NaN (or a
    // weight of 0) where the cell lacks it. Written only for deep populations, so gabor files keep their bytes.
    std::vector<std::string> modulators, stopping;
    for (const NeuronParameters& p : sim.neurons) {
      modulators.push_back(modulator_names(p));
      stopping.push_back(stopping_name(p.stopping));
    }
    f.strings("gt/modulators", modulators);
    f.strings("gt/stopping", stopping);
    auto conj = [](const NeuronParameters& p) { return p.type == CellType::corner || p.type == CellType::curvature; };
    auto surround = [](const NeuronParameters& p) { return p.surround_suppression_weight > 0; };
    auto stopped = [](const NeuronParameters& p) { return p.stopping != Stopping::none; };
    auto corner = [](const NeuronParameters& p) { return p.type == CellType::corner; };
    auto curved = [](const NeuronParameters& p) { return p.type == CellType::curvature; };
    per_neuron("energy_weight", [&](const NeuronParameters& p) { return conj(p) ? nan : p.energy_weight; });
    per_neuron("modulator_angle", [](const NeuronParameters& p) { return p.modulator_angle; });
    per_neuron("surround_suppression_weight", [](const NeuronParameters& p) { return p.surround_suppression_weight; });
    per_neuron("surround_radius_px", [&](const NeuronParameters& p) { return surround(p) ? p.surround_radius : nan; });
    per_neuron("surround_tuned",
               [&](const NeuronParameters& p) { return surround(p) ? double(p.surround_tuned) : nan; });
    per_neuron("cross_orientation_weight", [](const NeuronParameters& p) { return p.cross_orientation_weight; });
    per_neuron("stopping_weight", [](const NeuronParameters& p) { return p.stopping_weight; });
    per_neuron("stopping_offset_px", [&](const NeuronParameters& p) { return stopped(p) ? p.stopping_offset : nan; });
    per_neuron("stopping_side", [&](const NeuronParameters& p) { return stopped(p) ? double(p.stopping_side) : nan; });
    per_neuron("corner_angle", [&](const NeuronParameters& p) { return corner(p) ? p.corner_angle : nan; });
    per_neuron("arm_offset_px", [&](const NeuronParameters& p) { return corner(p) ? p.arm_offset : nan; });
    per_neuron("arm_sign", [&](const NeuronParameters& p) { return corner(p) ? double(p.arm_sign) : nan; });
    per_neuron("curvature_radius_px", [&](const NeuronParameters& p) { return curved(p) ? p.curvature_radius : nan; });
    per_neuron("arc_spacing_px", [&](const NeuronParameters& p) { return curved(p) ? p.arc_spacing : nan; });
    per_neuron("curvature_sign", [&](const NeuronParameters& p) { return curved(p) ? double(p.curvature_sign) : nan; });
  }

  f.attribute("gt", "noise_model", std::string(noise_model_name(sim.noise.model)));
  f.attribute("gt", "nb_r", sim.noise.nb_r);
  f.attribute("gt", "zig_zero_probability", sim.noise.zig_zero_probability);
  f.attribute("gt", "zig_shape", sim.noise.zig_shape);
  f.attribute("gt", "shared_gain_sd", sim.noise.shared_gain_sd);
  if (per_neuron_noise(sim.noise)) {
    // Opt-in per-neuron noise (noise.hpp); written only when used, so other files keep their bytes.
    const int64_t k = sim.noise.gain_factors;
    if (k > 0) {
      std::vector<double> loadings;
      for (const NeuronNoise& nn : sim.neuron_noise)
        loadings.insert(loadings.end(), nn.loadings.begin(), nn.loadings.end());
      f.doubles("gt/gain_loadings", loadings, {n, k});
    }
    std::vector<double> private_variance, second_moment;
    for (const NeuronNoise& nn : sim.neuron_noise) {
      private_variance.push_back(sim.noise.private_gain ? nn.private_gain_variance : 0.0);
      second_moment.push_back(gain_second_moment(sim.noise, &nn));
    }
    f.doubles("gt/private_gain_variance", private_variance, {n});
    f.doubles("gt/gain_second_moment", second_moment, {n});
    f.attribute("gt", "gain_factors", k);
    f.attribute("gt", "gain_log_sd", sim.noise.gain_log_sd);
    f.attribute("gt", "private_gain", int64_t{sim.noise.private_gain ? 1 : 0});
  }
  f.attribute("gt", "test_repeats", int64_t{sim.test_repeats});
  f.attribute("gt", "image_mean", sim.image_mean);
  f.attribute("gt", "image_std", sim.image_std);
  if (deep) {
    f.attribute("gt", "cell_library", std::string("deep"));
    f.attribute("gt", "orientation_coupling", sim.orientation_coupling);
  }

  f.attribute("/", "format_version", int64_t{1});
  f.attribute("/", "generator", std::string("v1sysid simulate ") + version_string());
  f.attribute("/", "config", sim.config_yaml);
  f.attribute("/", "stimuli", sim.stimuli_file);
  f.attribute("/", "stimuli_generator", sim.stimuli_generator);
  f.attribute("/", "animal", int64_t{sim.animal + 1});
  f.attribute("/", "data_key", data_key);
}

}  // namespace

void write_static_image_set(const SimulatedDataset& sim, const std::string& path, bool force) {
  h5::File f = h5::File::create(path, force);
  Hdf5Sink sink(f);
  write_content(sim, data_key_from_path(path), sink);
  f.commit();
}

void write_file_tree(const SimulatedDataset& sim, const std::string& folder, bool force) {
  namespace fs = std::filesystem;
  if (fs::exists(folder) && !force) {
    throw IoError("output folder already exists", folder, "choose another --out or pass --force to replace it");
  }
  // Built under a temporary name and renamed when complete, so no half-written dataset carries the name.
  const std::string partial = partial_path(folder);
  std::error_code ec;
  fs::remove_all(partial, ec);
  try {
    FileTreeSink sink(partial);
    write_content(sim, data_key_from_path(folder), sink);
    sink.finish();
    commit_folder(partial, folder);
  } catch (...) {
    fs::remove_all(partial, ec);
    throw;
  }
}

}  // namespace v1sysid::sim
