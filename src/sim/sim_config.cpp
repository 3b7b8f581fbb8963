#include "sim/sim_config.hpp"

#include "config/config_reader.hpp"
#include "core/error.hpp"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <vector>

namespace v1sysid::sim {

namespace {

constexpr double kHuge = std::numeric_limits<double>::max();
constexpr int kMaxCount = 100000000;

// A [lo, hi] list inside [min, max].
void get_range(ConfigReader& r, const std::string& key, Range& value, double min, double max) {
  if (!r.has(key)) return;
  std::vector<double> v;
  r.get(key, v);
  if (v.size() != 2) r.fail(key, "expected a list [lo, hi] of two numbers, got " + std::to_string(v.size()));
  if (v[0] > v[1]) r.fail(key, "expected lo <= hi in [lo, hi]");
  if (v[0] < min || v[1] > max) {
    r.fail(key, "expected values in [" + (min == -kHuge ? std::string("-inf") : std::to_string(min)) + ", " +
                    (max == kHuge ? std::string("inf") : std::to_string(max)) + "]");
  }
  value = {v[0], v[1]};
}

void get_pair(ConfigReader& r, const std::string& key, std::array<double, 2>& value) {
  if (!r.has(key)) return;
  std::vector<double> v;
  r.get(key, v);
  if (v.size() != 2) r.fail(key, "expected a list of two numbers, got " + std::to_string(v.size()));
  value = {v[0], v[1]};
}

// Shortest text that reads back as the same double.
std::string format_double(double x) {
  char buf[40];
  for (int precision : {6, 10, 15, 17}) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, x);
    if (std::strtod(buf, nullptr) == x) break;
  }
  std::string s = buf;
  // Keep numbers recognisable as floats for readers that care (e.g. "1" -> "1.0").
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

void emit_range(YAML::Emitter& out, const std::string& key, const std::array<double, 2>& v) {
  out << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq << format_double(v[0])
      << format_double(v[1]) << YAML::EndSeq;
}

void emit_number(YAML::Emitter& out, const std::string& key, double v) {
  out << YAML::Key << key << YAML::Value << format_double(v);
}

}  // namespace

void SimulationConfig::decode(ConfigReader& r, const std::string& base_dir) {
  if (source.empty()) source = r.file();

  r.get("stimuli", stimuli);
  if (stimuli.empty()) r.fail("stimuli", "expected a path to the stimulus file of 'v1sysid images'");
  if (std::filesystem::path(stimuli).is_relative() && !base_dir.empty()) {
    stimuli = (std::filesystem::path(base_dir) / stimuli).lexically_normal().string();
  }
  r.get("seed", seed);
  r.get_in_range("n_animals", n_animals, 1, 1000);
  if (r.has("n_neurons") && r.node()["n_neurons"].IsSequence()) {
    // One count per animal (e.g. four core animals and a smaller target animal of a transfer experiment).
    r.get("n_neurons", n_neurons_by_animal);
    if (static_cast<int>(n_neurons_by_animal.size()) != n_animals) {
      r.fail("n_neurons", "expected one neuron count per animal (n_animals: " + std::to_string(n_animals) + "), got " +
                              std::to_string(n_neurons_by_animal.size()) +
                              "; give a single number for equal populations");
    }
    for (int count : n_neurons_by_animal) {
      if (count < 1 || count > 1000000) {
        r.fail("n_neurons", "every count must be in [1, 1000000], got " + std::to_string(count));
      }
    }
    n_neurons = n_neurons_by_animal.front();
  } else {
    r.require("n_neurons", n_neurons);
    r.get_in_range("n_neurons", n_neurons, 1, 1000000);
  }

  // Single trials: either n_train (+ n_validation) or n_single_trials (+ validation_fraction).
  const bool by_count = r.has("n_train") || r.has("n_validation");
  const bool by_fraction = r.has("n_single_trials") || r.has("validation_fraction");
  if (by_count && by_fraction) {
    r.fail(r.has("n_single_trials") ? "n_single_trials" : "validation_fraction",
           "give either n_train and n_validation, or n_single_trials and validation_fraction, not both");
  }
  if (by_fraction) {
    int n_single = 0;
    double fraction = 0.1;
    r.require("n_single_trials", n_single);
    r.get_in_range("n_single_trials", n_single, 2, kMaxCount);
    r.get_in_range("validation_fraction", fraction, 0.0, 0.99);
    n_validation = static_cast<int>(std::lround(fraction * n_single));
    n_train = n_single - n_validation;
  } else {
    r.require("n_train", n_train);
    r.get_in_range("n_train", n_train, 2, kMaxCount);
    r.get_in_range("n_validation", n_validation, 0, kMaxCount);
  }
  r.get_in_range("n_test_images", n_test_images, 2, kMaxCount);
  r.get_in_range("test_repeats", test_repeats, 1, 100000);

  {
    ConfigReader img = r.child("image");
    img.get_in_range("height", height, 4, 100000).get_in_range("width", width, 4, 100000);
    img.finish();
  }
  {
    ConfigReader c = r.child("cell_types");
    c.get_in_range("simple", cell_types.simple, 0.0, 1.0)
        .get_in_range("complex", cell_types.complex, 0.0, 1.0)
        .get_in_range("normalized_complex", cell_types.normalized_complex, 0.0, 1.0)
        .get_in_range("center_surround", cell_types.center_surround, 0.0, 1.0);
    c.finish();
    const double sum = cell_types.simple + cell_types.complex + cell_types.normalized_complex +
                       cell_types.center_surround;
    if (std::fabs(sum - 1.0) > 1e-6) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.9g", sum);
      c.fail_here(std::string("proportions of simple, complex, normalized_complex and center_surround must sum to 1, "
                              "they sum to ") + buf);
    }
  }
  {
    ConfigReader c = r.child("receptive_fields");
    auto& f = receptive_fields;
    get_range(c, "wavelength_px", f.wavelength_px, 2.0, 10000.0);
    get_range(c, "sigma_px", f.sigma_px, 0.3, 10000.0);
    get_range(c, "aspect_ratio", f.aspect_ratio, 0.05, 1.0);
    c.get_in_range("position_margin_px", f.position_margin_px, 0.0, 100000.0);
    get_range(c, "center_sigma_px", f.center_sigma_px, 0.3, 10000.0);
    get_range(c, "surround_ratio", f.surround_ratio, 1.0, 100.0);
    get_range(c, "surround_weight", f.surround_weight, 0.0, 1.0);
    c.get_in_range("on_fraction", f.on_fraction, 0.0, 1.0);
    get_range(c, "normalization_constant", f.normalization_constant, 1e-6, 1e6);
    if (2 * f.position_margin_px > std::min(height, width) - 1) {
      const std::string message = "a margin of " + format_double(f.position_margin_px) +
                                  " px leaves no room for RF centres in a " + std::to_string(height) + " x " +
                                  std::to_string(width) + " image; the margin must stay below " +
                                  format_double((std::min(height, width) - 1) / 2.0);
      if (c.has("position_margin_px")) c.fail("position_margin_px", message);
      r.fail("image", message + " (set receptive_fields.position_margin_px or enlarge the image)");
    }
    c.finish();
  }
  {
    ConfigReader c = r.child("responses");
    auto& s = responses;
    get_range(c, "mean_rate", s.mean_rate, 1e-6, 1e6);
    get_range(c, "selectivity", s.selectivity, 1e-3, 100.0);
    get_range(c, "threshold", s.threshold, -100.0, 100.0);
    get_range(c, "baseline", s.baseline, 0.0, 1e6);
    if (s.baseline[1] >= s.mean_rate[0]) {
      c.fail(c.has("baseline") ? "baseline" : "mean_rate",
             "the largest baseline must stay below the smallest mean_rate (the rate is baseline + a positive "
             "stimulus-driven part)");
    }
    c.finish();
  }
  {
    ConfigReader c = r.child("noise");
    c.get_choice("model", noise.model, {"poisson", "negative_binomial", "zero_inflated_gamma"});
    c.get_in_range("nb_r", noise.nb_r, 1e-3, 1e9);
    ConfigReader z = c.child("zig");
    z.get_in_range("zero_probability", noise.zig.zero_probability, 0.0, 0.99);
    z.get_in_range("shape", noise.zig.shape, 1e-2, 1e6);
    z.finish();
    c.get_in_range("shared_gain_sd", noise.shared_gain_sd, 0.0, 2.0);
    if (c.has("gain_factors")) {
      auto& g = noise.gain_factors;
      ConfigReader f = c.child("gain_factors");
      f.require("count", g.count);
      f.get_in_range("count", g.count, 1, 8);
      f.get_in_range("log_sd", g.log_sd, 1e-6, 2.0).get_in_range("loading_sd", g.loading_sd, 0.0, 100.0);
      g.loading_mean.assign(static_cast<size_t>(g.count), 0.0);
      g.loading_mean[0] = 1.0;
      if (f.has("loading_mean")) {
        f.get("loading_mean", g.loading_mean);
        if (static_cast<int>(g.loading_mean.size()) != g.count) {
          f.fail("loading_mean", "expected one mean per factor (count " + std::to_string(g.count) + "), got " +
                                     std::to_string(g.loading_mean.size()));
        }
      }
      if (g.loading_sd == 0 &&
          std::all_of(g.loading_mean.begin(), g.loading_mean.end(), [](double v) { return v == 0; })) {
        f.fail("loading_sd",
               "with loading_sd 0 the loadings are loading_mean, which is all zeros (give a non-zero "
               "loading_mean or a positive loading_sd)");
      }
      f.finish();
      if (noise.shared_gain_sd > 0) {
        c.fail("shared_gain_sd",
               "give either shared_gain_sd (one gain shared by all neurons) or gain_factors, not "
               "both (gain_factors with count 1, loading_sd 0 is the same single shared gain)");
      }
    }
    if (c.has("private_gain")) {
      auto& v = noise.private_gain;
      ConfigReader f = c.child("private_gain");
      v.enabled = true;
      f.get_in_range("variance_median", v.variance_median, 1e-9, 1e3)
          .get_in_range("variance_log_sd", v.variance_log_sd, 0.0, 5.0);
      f.finish();
    }
    c.finish();
  }
  {
    ConfigReader c = r.child("retinotopy");
    auto& t = retinotopy;
    if (c.has("um_per_px")) {
      std::vector<std::vector<double>> m;
      c.get("um_per_px", m);
      if (m.size() != 2 || m[0].size() != 2 || m[1].size() != 2) {
        c.fail("um_per_px", "expected a 2 x 2 matrix [[a, b], [c, d]] mapping RF (x, y) in px to cortex (x, y) in um");
      }
      t.um_per_px = {{{m[0][0], m[0][1]}, {m[1][0], m[1][1]}}};
    }
    get_pair(c, "origin_um", t.origin_um);
    c.get_in_range("jitter_um", t.jitter_um, 0.0, 1e6);
    get_range(c, "depth_um", t.depth_um, 0.0, 1e5);
    c.finish();
  }
  decode_cell_library(r);
  r.finish();
}

namespace {

const std::vector<std::string> kModes{"surround", "cross_orientation", "end_stopping", "side_stopping",
                                      "corner",   "curvature"};

// Two shares of one whole that must sum to 1 (e.g. bases, conjunctions); `names` are their keys.
void check_shares(ConfigReader& c, const std::vector<std::string>& names, const std::vector<double>& shares) {
  double sum = 0;
  for (double v : shares) sum += v;
  if (std::fabs(sum - 1.0) > 1e-6) {
    std::string list;
    for (size_t k = 0; k < names.size(); ++k) list += (k == 0 ? "" : k + 1 == names.size() ? " and " : ", ") + names[k];
    c.fail_here("proportions of " + list + " must sum to 1, they sum to " + format_double(sum));
  }
}

}  // namespace

bool CellLibraryConfig::allows(uint64_t animal, const std::string& mode) const {
  if (animal_modes.empty()) return true;
  const auto& allowed = animal_modes[static_cast<size_t>(animal)];
  return std::find(allowed.begin(), allowed.end(), mode) != allowed.end();
}

void SimulationConfig::decode_cell_library(ConfigReader& r) {
  ConfigReader c = r.child("cell_library");
  auto& L = cell_library;
  c.get_choice("kind", L.kind, {"gabor", "deep"});
  if (!L.deep()) {
    // Only `kind` belongs to the gabor library; anything else is a deep setting given by mistake.
    for (auto it = c.node().begin(); it != c.node().end(); ++it) {
      const std::string key = it->first.as<std::string>();
      if (key != "kind") c.fail(key, "this setting belongs to the deep library; set cell_library.kind: deep");
    }
    return;
  }
  if (r.has("cell_types")) {
    r.fail("cell_types",
           "cell_types is the mix of the gabor library; with cell_library.kind: deep the mix is "
           "cell_library.bases, deep_fraction and conjunctions (remove cell_types)");
  }
  {
    ConfigReader b = c.child("bases");
    b.get_in_range("simple", L.simple, 0.0, 1.0)
        .get_in_range("complex", L.complex, 0.0, 1.0)
        .get_in_range("mixed", L.mixed, 0.0, 1.0);
    b.finish();
    check_shares(b, {"simple", "complex", "mixed"}, {L.simple, L.complex, L.mixed});
  }
  get_range(c, "mixed_energy_weight", L.mixed_energy_weight, 0.0, 1.0);
  c.get_in_range("deep_fraction", L.deep_fraction, 0.0, 1.0);
  {
    ConfigReader j = c.child("conjunctions");
    j.get_in_range("corner", L.corner, 0.0, 1.0).get_in_range("curvature", L.curvature, 0.0, 1.0);
    j.finish();
    check_shares(j, {"corner", "curvature"}, {L.corner, L.curvature});
  }
  c.get_choice("orientation_coupling", L.orientation_coupling, {"relative", "absolute"});
  {
    ConfigReader s = c.child("surround");
    s.get_in_range("probability", L.surround.probability, 0.0, 1.0)
        .get_in_range("tuned_fraction", L.surround.tuned_fraction, 0.0, 1.0);
    get_range(s, "radius", L.surround.radius, 0.5, 20.0);
    get_range(s, "weight", L.surround.weight, 1e-6, 100.0);
    s.finish();
  }
  {
    ConfigReader x = c.child("cross_orientation");
    x.get_in_range("probability", L.cross_orientation.probability, 0.0, 1.0);
    get_range(x, "weight", L.cross_orientation.weight, 1e-6, 100.0);
    x.finish();
  }
  {
    ConfigReader s = c.child("stopping");
    s.get_in_range("probability", L.stopping.probability, 0.0, 1.0)
        .get_in_range("side_fraction", L.stopping.side_fraction, 0.0, 1.0)
        .get_in_range("both_ends_fraction", L.stopping.both_ends_fraction, 0.0, 1.0);
    get_range(s, "offset", L.stopping.offset, 0.5, 20.0);
    get_range(s, "weight", L.stopping.weight, 1e-6, 100.0);
    s.finish();
  }
  {
    ConfigReader k = c.child("corner");
    k.get("angles_deg", L.corner_shape.angles_deg);
    if (L.corner_shape.angles_deg.empty()) k.fail("angles_deg", "expected a non-empty list of angles in degrees");
    for (double a : L.corner_shape.angles_deg) {
      if (!(a > 0 && a < 180)) k.fail("angles_deg", "expected angles in (0, 180) degrees, got " + format_double(a));
    }
    get_range(k, "arm_offset", L.corner_shape.arm_offset, 0.0, 20.0);
    k.finish();
  }
  {
    ConfigReader k = c.child("curvature");
    get_range(k, "radius", L.curvature_shape.radius, 0.5, 100.0);
    get_range(k, "spacing", L.curvature_shape.spacing, 0.1, 20.0);
    k.finish();
    if (L.curvature_shape.spacing[1] > 2 * L.curvature_shape.radius[0]) {
      k.fail("spacing", "arc segments " + format_double(L.curvature_shape.spacing[1]) +
                            " apart do not fit on an arc of "
                            "radius " +
                            format_double(L.curvature_shape.radius[0]) + " (keep spacing <= 2 x radius)");
    }
  }
  if (c.has("animal_modes")) {
    c.get("animal_modes", L.animal_modes);
    if (static_cast<int>(L.animal_modes.size()) != n_animals) {
      c.fail("animal_modes", "expected one list of modes per animal (" + std::to_string(n_animals) + "), got " +
                                 std::to_string(L.animal_modes.size()));
    }
    for (const auto& modes : L.animal_modes) {
      for (const auto& m : modes) {
        if (std::find(kModes.begin(), kModes.end(), m) == kModes.end()) {
          c.fail("animal_modes", "unknown mode '" + m +
                                     "'; expected surround, cross_orientation, end_stopping, "
                                     "side_stopping, corner or curvature");
        }
      }
    }
  }
  c.finish();
}

std::string SimulationConfig::to_yaml() const {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "stimuli" << YAML::Value << stimuli;
  out << YAML::Key << "seed" << YAML::Value << seed;
  out << YAML::Key << "n_animals" << YAML::Value << n_animals;
  if (n_neurons_by_animal.empty()) {
    out << YAML::Key << "n_neurons" << YAML::Value << n_neurons;
  } else {
    out << YAML::Key << "n_neurons" << YAML::Value << YAML::Flow << n_neurons_by_animal;
  }
  out << YAML::Key << "n_train" << YAML::Value << n_train;
  out << YAML::Key << "n_validation" << YAML::Value << n_validation;
  out << YAML::Key << "n_test_images" << YAML::Value << n_test_images;
  out << YAML::Key << "test_repeats" << YAML::Value << test_repeats;
  out << YAML::Key << "image" << YAML::Value << YAML::Flow << YAML::BeginMap << YAML::Key << "height" << YAML::Value
      << height << YAML::Key << "width" << YAML::Value << width << YAML::EndMap;

  if (!cell_library.deep()) {  // the gabor mix; the deep library's mix is under cell_library
    out << YAML::Key << "cell_types" << YAML::Value << YAML::BeginMap;
    emit_number(out, "simple", cell_types.simple);
    emit_number(out, "complex", cell_types.complex);
    emit_number(out, "normalized_complex", cell_types.normalized_complex);
    emit_number(out, "center_surround", cell_types.center_surround);
    out << YAML::EndMap;
  }

  const auto& f = receptive_fields;
  out << YAML::Key << "receptive_fields" << YAML::Value << YAML::BeginMap;
  emit_range(out, "wavelength_px", f.wavelength_px);
  emit_range(out, "sigma_px", f.sigma_px);
  emit_range(out, "aspect_ratio", f.aspect_ratio);
  emit_number(out, "position_margin_px", f.position_margin_px);
  emit_range(out, "center_sigma_px", f.center_sigma_px);
  emit_range(out, "surround_ratio", f.surround_ratio);
  emit_range(out, "surround_weight", f.surround_weight);
  emit_number(out, "on_fraction", f.on_fraction);
  emit_range(out, "normalization_constant", f.normalization_constant);
  out << YAML::EndMap;

  const auto& s = responses;
  out << YAML::Key << "responses" << YAML::Value << YAML::BeginMap;
  emit_range(out, "mean_rate", s.mean_rate);
  emit_range(out, "selectivity", s.selectivity);
  emit_range(out, "threshold", s.threshold);
  emit_range(out, "baseline", s.baseline);
  out << YAML::EndMap;

  out << YAML::Key << "noise" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "model" << YAML::Value << noise.model;
  emit_number(out, "nb_r", noise.nb_r);
  out << YAML::Key << "zig" << YAML::Value << YAML::Flow << YAML::BeginMap;
  emit_number(out, "zero_probability", noise.zig.zero_probability);
  emit_number(out, "shape", noise.zig.shape);
  out << YAML::EndMap;
  emit_number(out, "shared_gain_sd", noise.shared_gain_sd);
  // The opt-in parts only when used, so that the resolved config (stored in every file) stays as it was.
  if (noise.gain_factors.count > 0) {
    const auto& g = noise.gain_factors;
    out << YAML::Key << "gain_factors" << YAML::Value << YAML::Flow << YAML::BeginMap;
    out << YAML::Key << "count" << YAML::Value << g.count;
    emit_number(out, "log_sd", g.log_sd);
    out << YAML::Key << "loading_mean" << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (double v : g.loading_mean) out << format_double(v);
    out << YAML::EndSeq;
    emit_number(out, "loading_sd", g.loading_sd);
    out << YAML::EndMap;
  }
  if (noise.private_gain.enabled) {
    out << YAML::Key << "private_gain" << YAML::Value << YAML::Flow << YAML::BeginMap;
    emit_number(out, "variance_median", noise.private_gain.variance_median);
    emit_number(out, "variance_log_sd", noise.private_gain.variance_log_sd);
    out << YAML::EndMap;
  }
  out << YAML::EndMap;

  const auto& t = retinotopy;
  out << YAML::Key << "retinotopy" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "um_per_px" << YAML::Value << YAML::Flow << YAML::BeginSeq;
  for (const auto& row : t.um_per_px) {
    out << YAML::Flow << YAML::BeginSeq << format_double(row[0]) << format_double(row[1]) << YAML::EndSeq;
  }
  out << YAML::EndSeq;
  emit_range(out, "origin_um", t.origin_um);
  emit_number(out, "jitter_um", t.jitter_um);
  emit_range(out, "depth_um", t.depth_um);
  out << YAML::EndMap;

  // Only a deep library is written, so that the resolved config (stored in every file) of a gabor
  // population stays what it was before the library existed.
  if (cell_library.deep()) {
    const auto& L = cell_library;
    out << YAML::Key << "cell_library" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "kind" << YAML::Value << L.kind;
    out << YAML::Key << "bases" << YAML::Value << YAML::Flow << YAML::BeginMap;
    emit_number(out, "simple", L.simple);
    emit_number(out, "complex", L.complex);
    emit_number(out, "mixed", L.mixed);
    out << YAML::EndMap;
    emit_range(out, "mixed_energy_weight", L.mixed_energy_weight);
    emit_number(out, "deep_fraction", L.deep_fraction);
    out << YAML::Key << "conjunctions" << YAML::Value << YAML::Flow << YAML::BeginMap;
    emit_number(out, "corner", L.corner);
    emit_number(out, "curvature", L.curvature);
    out << YAML::EndMap;
    out << YAML::Key << "orientation_coupling" << YAML::Value << L.orientation_coupling;
    out << YAML::Key << "surround" << YAML::Value << YAML::Flow << YAML::BeginMap;
    emit_number(out, "probability", L.surround.probability);
    emit_number(out, "tuned_fraction", L.surround.tuned_fraction);
    emit_range(out, "radius", L.surround.radius);
    emit_range(out, "weight", L.surround.weight);
    out << YAML::EndMap;
    out << YAML::Key << "cross_orientation" << YAML::Value << YAML::Flow << YAML::BeginMap;
    emit_number(out, "probability", L.cross_orientation.probability);
    emit_range(out, "weight", L.cross_orientation.weight);
    out << YAML::EndMap;
    out << YAML::Key << "stopping" << YAML::Value << YAML::Flow << YAML::BeginMap;
    emit_number(out, "probability", L.stopping.probability);
    emit_number(out, "side_fraction", L.stopping.side_fraction);
    emit_number(out, "both_ends_fraction", L.stopping.both_ends_fraction);
    emit_range(out, "offset", L.stopping.offset);
    emit_range(out, "weight", L.stopping.weight);
    out << YAML::EndMap;
    out << YAML::Key << "corner" << YAML::Value << YAML::Flow << YAML::BeginMap;
    out << YAML::Key << "angles_deg" << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (double a : L.corner_shape.angles_deg) out << format_double(a);
    out << YAML::EndSeq;
    emit_range(out, "arm_offset", L.corner_shape.arm_offset);
    out << YAML::EndMap;
    out << YAML::Key << "curvature" << YAML::Value << YAML::Flow << YAML::BeginMap;
    emit_range(out, "radius", L.curvature_shape.radius);
    emit_range(out, "spacing", L.curvature_shape.spacing);
    out << YAML::EndMap;
    if (!L.animal_modes.empty()) {
      out << YAML::Key << "animal_modes" << YAML::Value << YAML::Flow << YAML::BeginSeq;
      for (const auto& modes : L.animal_modes) {
        out << YAML::Flow << YAML::BeginSeq;
        for (const auto& m : modes) out << m;
        out << YAML::EndSeq;
      }
      out << YAML::EndSeq;
    }
    out << YAML::EndMap;
  }

  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

SimulationConfig load_simulation_config(const std::string& path) {
  YAML::Node node = load_yaml_file(path);
  ConfigReader reader(node, path);
  SimulationConfig config;
  config.source = path;
  config.decode(reader, std::filesystem::path(path).parent_path().string());
  return config;
}

SimulationConfig parse_simulation_config(const std::string& text, const std::string& origin,
                                         const std::string& base_dir) {
  ConfigReader reader(load_yaml_string(text, origin), origin);
  SimulationConfig config;
  config.source = origin;
  config.decode(reader, base_dir);
  return config;
}

}  // namespace v1sysid::sim
