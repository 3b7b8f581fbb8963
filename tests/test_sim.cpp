// Digital V1 (src/sim/): samplers, analytic ceilings against Monte Carlo, config errors, the written file.
// Stimuli are smoothed random fields written by the test in the layout of `v1sysid images`.
#include "config/config_reader.hpp"
#include "data/dataset.hpp"
#include "metrics/metrics.hpp"
#include "core/progress.hpp"
#include "io/h5.hpp"
#include "io/npy.hpp"
#include "sim/dataset_writer.hpp"
#include "sim/neuron_model.hpp"
#include "sim/noise.hpp"
#include "sim/random.hpp"
#include "sim/sim_config.hpp"
#include "sim/simulate.hpp"
#include "sim/photos.hpp"
#include "test_support.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <iterator>
#include <map>
#include <set>

namespace {

namespace sim = v1sysid::sim;
namespace h5 = v1sysid::h5;
using v1sysid::ConfigError;
using v1sysid::testing::run_v1sysid;
using v1sysid::testing::ScratchDir;

constexpr double kPi = 3.14159265358979323846;

// Gaussian-smoothed white noise (sigma 1.5 px), scaled to mean 128 and SD 40 and clipped to 0..255.
// Rows [0, n_trainval) are split "trainval" (photos 0..), the rest "test" (photos 1000..).
void write_test_stimuli(const std::string& path, int n_trainval, int n_test, int height, int width) {
  const int count = n_trainval + n_test;
  sim::Rng rng(99, 0, sim::Stream::images, 7);
  std::vector<double> kernel;
  for (int k = -4; k <= 4; ++k) kernel.push_back(std::exp(-k * k / (2 * 1.5 * 1.5)));
  std::vector<float> images(static_cast<size_t>(count * height * width));
  std::vector<double> noise(static_cast<size_t>(height * width)), tmp(noise.size());
  for (int i = 0; i < count; ++i) {
    for (auto& v : noise) v = rng.normal();
    for (int y = 0; y < height; ++y) {
      for (int x = 0; x < width; ++x) {
        double s = 0;
        for (int k = -4; k <= 4; ++k) s += kernel[static_cast<size_t>(k + 4)] * noise[static_cast<size_t>(y * width + (x + k + width) % width)];
        tmp[static_cast<size_t>(y * width + x)] = s;
      }
    }
    double mean = 0, sq = 0;
    for (int y = 0; y < height; ++y) {
      for (int x = 0; x < width; ++x) {
        double s = 0;
        for (int k = -4; k <= 4; ++k) s += kernel[static_cast<size_t>(k + 4)] * tmp[static_cast<size_t>(((y + k + height) % height) * width + x)];
        noise[static_cast<size_t>(y * width + x)] = s;
        mean += s;
      }
    }
    mean /= height * width;
    for (double v : noise) sq += (v - mean) * (v - mean);
    const double sd = std::sqrt(sq / (height * width));
    for (int k = 0; k < height * width; ++k) {
      const double v = 128 + 40 * (noise[static_cast<size_t>(k)] - mean) / sd;
      images[static_cast<size_t>(i * height * width + k)] = static_cast<float>(std::min(255.0, std::max(0.0, v)));
    }
  }
  sim::StimulusSet set;
  set.height = height;
  set.width = width;
  set.images = std::move(images);
  for (int i = 0; i < count; ++i) {
    set.split.push_back(i < n_trainval ? "trainval" : "test");
    set.photo_index.push_back(-1);
    set.scale.push_back(1.0f);
    set.position.insert(set.position.end(), {0, 0});
  }
  set.generator = "smoothed noise (test)";
  set.seed = 99;
  sim::write_stimuli(set, path, /*force=*/true);
}

// A small config: 24 x 40 stimuli centre-cropped to 20 x 36.
std::string tiny_config(const std::string& extra = "") {
  return "stimuli: stimuli.h5\n"
         "seed: 7\n"
         "n_neurons: 40\n"
         "n_train: 300\n"
         "n_validation: 30\n"
         "n_test_images: 30\n"
         "test_repeats: 10\n"
         "image: {height: 20, width: 36}\n"
         "cell_types: {simple: 0.4, complex: 0.3, normalized_complex: 0.2, center_surround: 0.1}\n" +
         extra;
}

// Scratch folder with stimuli.h5 (400 trainval + 40 test, 24 x 40); shared by the tests of this file.
class SimTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    v1sysid::Progress::set_enabled(false);
    dir = new ScratchDir();
    write_test_stimuli(*dir / "stimuli.h5", 400, 40, 24, 40);
  }
  static void TearDownTestSuite() {
    delete dir;
    dir = nullptr;
  }
  static std::string write_config(const std::string& name, const std::string& text) {
    std::ofstream(*dir / name) << text;
    return *dir / name;
  }
  static sim::SimulationConfig config(const std::string& extra = "") {
    return sim::parse_simulation_config(tiny_config(extra), "tiny.yaml", dir->path.string());
  }
  static inline ScratchDir* dir = nullptr;
};

std::string config_error(const std::string& text) {
  try {
    sim::parse_simulation_config(text, "bad.yaml", "");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

// ---- samplers -------------------------------------------------------------------------------------------

TEST(SimRandom, StreamsArePureFunctionsOfTheirKey) {
  sim::Rng a(1, 2, sim::Stream::trial, 3), b(1, 2, sim::Stream::trial, 3), c(1, 2, sim::Stream::trial, 4);
  const uint64_t a0 = a.next(), c0 = c.next();
  EXPECT_EQ(a0, b.next());
  EXPECT_NE(a0, c0);
  EXPECT_NE(sim::stream_key(1, 2, sim::Stream::trial, 3), sim::stream_key(1, 3, sim::Stream::trial, 2));
}

// Sample mean and variance of n draws, with the z-scores of their deviations from the expected values
// (the SE of the variance uses the fourth central moment estimated from the same draws).
struct Moments {
  double mean, var, z_mean, z_var;
};
template <class Draw>
Moments moments(Draw draw, int n, double mean, double var) {
  std::vector<double> x(static_cast<size_t>(n));
  for (auto& v : x) v = draw();
  double m = 0;
  for (double v : x) m += v;
  m /= n;
  double s2 = 0, m4 = 0;
  for (double v : x) {
    s2 += (v - m) * (v - m);
    m4 += std::pow(v - m, 4);
  }
  s2 /= n - 1;
  m4 /= n;
  return {m, s2, (m - mean) / std::sqrt(var / n), (s2 - var) / std::sqrt((m4 - s2 * s2) / n)};
}

TEST(SimRandom, SamplersHaveTheirMoments) {
  sim::Rng rng(5, 0, sim::Stream::trial, 0);
  for (double mu : {0.05, 0.7, 3.0, 9.9, 10.0, 25.0, 300.0}) {  // both Poisson algorithms (switch at 10)
    Moments p = moments([&] { return static_cast<double>(rng.poisson(mu)); }, 40000, mu, mu);
    EXPECT_LT(std::fabs(p.z_mean), 4) << "poisson mean " << mu << " got " << p.mean;
    EXPECT_LT(std::fabs(p.z_var), 4) << "poisson var " << mu << " got " << p.var;
  }
  for (double k : {0.4, 1.0, 2.5, 12.0}) {
    Moments g = moments([&] { return rng.gamma(k); }, 40000, k, k);
    EXPECT_LT(std::fabs(g.z_mean), 4) << "gamma shape " << k << " mean " << g.mean;
    EXPECT_LT(std::fabs(g.z_var), 4) << "gamma shape " << k << " var " << g.var;
  }
  Moments z = moments([&] { return rng.normal(); }, 40000, 0, 1);
  EXPECT_LT(std::fabs(z.z_mean), 4);
  EXPECT_LT(std::fabs(z.z_var), 4);
}

TEST(SimNoise, ConditionalMomentsOfEachModel) {
  // Response moments at a fixed mean match Var(r | mu) of noise.hpp, and E[r] = mu.
  sim::Rng rng(6, 0, sim::Stream::trial, 0);
  for (auto model : {sim::NoiseModel::poisson, sim::NoiseModel::negative_binomial, sim::NoiseModel::zero_inflated_gamma}) {
    sim::NoiseParameters p;
    p.model = model;
    p.nb_r = 3;
    p.zig_zero_probability = 0.4;
    p.zig_shape = 1.5;
    for (double mu : {0.3, 2.0, 15.0}) {
      Moments m = moments([&] { return sim::draw_response(p, mu, rng); }, 40000, mu, sim::conditional_variance(p, mu));
      EXPECT_LT(std::fabs(m.z_mean), 4) << sim::noise_model_name(model) << " mu " << mu << " mean " << m.mean;
      EXPECT_LT(std::fabs(m.z_var), 4) << sim::noise_model_name(model) << " mu " << mu << " var " << m.var
                                       << " expected " << sim::conditional_variance(p, mu);
    }
  }
}

// ---- config ----------------------------------------------------------------------------------------------

TEST(SimConfig, ImpossibleConfigsNameTheKey) {
  const std::string base = "n_neurons: 10\nn_train: 100\n";
  std::string e = config_error("n_neurons: 0\nn_train: 100\n");
  EXPECT_NE(e.find("n_neurons"), std::string::npos) << e;
  e = config_error("n_train: 100\n");
  EXPECT_NE(e.find("missing required key 'n_neurons'"), std::string::npos) << e;
  e = config_error(base + "test_repeats: 0\n");
  EXPECT_NE(e.find("bad.yaml:3:15 test_repeats"), std::string::npos) << e;
  e = config_error(base + "cell_types: {simple: 0.5, complex: 0.3, normalized_complex: 0.1, center_surround: 0.05}\n");
  EXPECT_NE(e.find("cell_types: proportions"), std::string::npos) << e;
  EXPECT_NE(e.find("sum to 0.95"), std::string::npos) << e;
  e = config_error(base + "cell_types: {simple: 1.0, complex: 0.0, normalized_complex: 0.0, center_surround: 0.0}\n");
  EXPECT_EQ(e, "");  // a single type is fine
  e = config_error(base + "cell_types: {simple: 1.0, complx: 0.0}\n");
  EXPECT_NE(e.find("cell_types.complx: unknown key"), std::string::npos) << e;
  e = config_error(base + "noise: {model: gaussian}\n");
  EXPECT_NE(e.find("noise.model"), std::string::npos) << e;
  e = config_error(base + "n_single_trials: 500\n");
  EXPECT_NE(e.find("n_single_trials"), std::string::npos) << e;
  e = config_error(base + "receptive_fields: {sigma_px: [5, 2]}\n");
  EXPECT_NE(e.find("receptive_fields.sigma_px"), std::string::npos) << e;
  e = config_error(base + "receptive_fields: {position_margin_px: 20}\n");
  EXPECT_NE(e.find("receptive_fields.position_margin_px"), std::string::npos) << e;
  e = config_error(base + "responses: {mean_rate: [0.1, 1], baseline: [0, 0.2]}\n");
  EXPECT_NE(e.find("responses.baseline"), std::string::npos) << e;
  e = config_error(base + "retinotopy: {um_per_px: [1, 2]}\n");
  EXPECT_NE(e.find("retinotopy.um_per_px"), std::string::npos) << e;
}

TEST(SimConfig, ValidationFractionAndResolvedYamlRoundTrip) {
  sim::SimulationConfig c = sim::parse_simulation_config(
      "stimuli: s.h5\nn_neurons: 5\nn_single_trials: 5400\nvalidation_fraction: 0.1\nnoise: {nb_r: 2.5}\n", "c.yaml",
      "/data/here");
  EXPECT_EQ(c.n_train, 4860);
  EXPECT_EQ(c.n_validation, 540);
  EXPECT_EQ(c.stimuli, "/data/here/s.h5");
  EXPECT_EQ(c.test_repeats, 10);  // default
  const std::string yaml = c.to_yaml();
  sim::SimulationConfig again = sim::parse_simulation_config(yaml, "stored", "/elsewhere");
  EXPECT_EQ(again.to_yaml(), yaml);
  EXPECT_EQ(again.stimuli, "/data/here/s.h5");
  EXPECT_DOUBLE_EQ(again.noise.nb_r, 2.5);
}

TEST_F(SimTest, ImagesLargerThanTheCropsAreAConfigError) {
  const sim::StimulusSet s = sim::read_stimuli(*dir / "stimuli.h5");
  sim::SimulationConfig c = config();
  c.height = 30;  // crops are 24 x 40
  try {
    sim::simulate_animal(c, s, 0);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("image.height"), std::string::npos) << e.what();
  }
  c = config();
  c.n_test_images = 41;  // the test split has 40
  try {
    sim::simulate_animal(c, s, 0);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("n_test_images"), std::string::npos) << e.what();
  }
}

// ---- neuron model ----------------------------------------------------------------------------------------

// A sinusoidal grating whose bars have orientation `theta` (same convention as NeuronParameters).
std::vector<float> grating(int h, int w, double theta, double wavelength, double phase) {
  std::vector<float> img(static_cast<size_t>(h * w));
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      const double u = -x * std::sin(theta) + y * std::cos(theta);
      img[static_cast<size_t>(y * w + x)] = static_cast<float>(std::cos(2 * kPi * u / wavelength + phase));
    }
  }
  return img;
}

TEST(SimNeurons, GaborCellsPreferTheirOrientationAndCentreSurroundCellsDoNot) {
  const int h = 32, w = 48;
  for (auto type : {sim::CellType::simple, sim::CellType::complex, sim::CellType::normalized_complex,
                    sim::CellType::center_surround}) {
    sim::NeuronParameters p;
    p.type = type;
    p.x = 23.3;
    p.y = 15.6;
    p.orientation = 0.7;
    p.wavelength = 9;
    p.sigma = 3;
    p.aspect_ratio = 0.7;
    p.surround_sigma = 6;
    p.surround_weight = 1;
    p.normalization_constant = 0.5;
    // Orientation tuning: gratings at 16 orientations x 8 phases; best response per orientation.
    std::vector<float> images;
    const int n_orient = 16, n_phase = 8;
    for (int o = 0; o < n_orient; ++o) {
      for (int ph = 0; ph < n_phase; ++ph) {
        const auto g = grating(h, w, o * kPi / n_orient, p.wavelength, ph * 2 * kPi / n_phase);
        images.insert(images.end(), g.begin(), g.end());
      }
    }
    std::vector<sim::NeuronParameters> neurons{p};
    std::vector<int64_t> all(n_orient * n_phase);
    for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int64_t>(i);
    const auto drive = sim::compute_raw_drives(neurons, images, n_orient * n_phase, h, w, all);
    std::vector<double> tuning(n_orient, 0);
    for (int o = 0; o < n_orient; ++o) {
      for (int ph = 0; ph < n_phase; ++ph) tuning[static_cast<size_t>(o)] = std::max<double>(tuning[static_cast<size_t>(o)], drive[static_cast<size_t>(o * n_phase + ph)]);
    }
    const auto best = std::max_element(tuning.begin(), tuning.end()) - tuning.begin();
    const double peak = tuning[static_cast<size_t>(best)];
    const double orthogonal = tuning[static_cast<size_t>((best + n_orient / 2) % n_orient)];
    if (type == sim::CellType::center_surround) {
      EXPECT_LT(peak - *std::min_element(tuning.begin(), tuning.end()), 0.25 * peak) << "DoG should be untuned";
    } else {
      const double preferred = best * kPi / n_orient;
      EXPECT_LT(std::fabs(preferred - p.orientation), kPi / n_orient) << sim::cell_type_name(type);
      EXPECT_LT(orthogonal, 0.35 * peak) << sim::cell_type_name(type);
    }
    if (type == sim::CellType::complex) {
      // Energy: nearly phase-invariant at the preferred orientation.
      double lo = 1e9, hi = 0;
      for (int ph = 0; ph < n_phase; ++ph) {
        lo = std::min<double>(lo, drive[static_cast<size_t>(best * n_phase + ph)]);
        hi = std::max<double>(hi, drive[static_cast<size_t>(best * n_phase + ph)]);
      }
      EXPECT_GT(lo, 0.8 * hi);
    }
    if (type == sim::CellType::simple) {
      // Half-wave rectified: some phases of the preferred grating give exactly zero.
      int zeros = 0;
      for (int ph = 0; ph < n_phase; ++ph) zeros += drive[static_cast<size_t>(best * n_phase + ph)] == 0.0f;
      EXPECT_GE(zeros, 2);
    }
  }
}

TEST_F(SimTest, CalibrationMeetsTheTargetMeanRateAndTheCellTypeMix) {
  const sim::StimulusSet s = sim::read_stimuli(*dir / "stimuli.h5");
  const sim::SimulationConfig c = config();
  const sim::SimulatedDataset d = sim::simulate_animal(c, s, 0);
  std::map<std::string, int> counts;
  for (const auto& t : d.data.ground_truth->cell_type) counts[t]++;
  EXPECT_EQ(counts["simple"], 16);
  EXPECT_EQ(counts["complex"], 12);
  EXPECT_EQ(counts["normalized_complex"], 8);
  EXPECT_EQ(counts["center_surround"], 4);
  // Mean noise-free rate over the training images equals each neuron's target; positions inside the frame.
  const int64_t n = d.data.n_neurons;
  for (int64_t j = 0; j < n; ++j) {
    const auto& p = d.neurons[static_cast<size_t>(j)];
    EXPECT_GE(p.x, 4.0);
    EXPECT_LE(p.x, c.width - 1 - 4.0);
    EXPECT_GE(p.y, 4.0);
    EXPECT_LE(p.y, c.height - 1 - 4.0);
    EXPECT_GT(p.gain, 0);
    EXPECT_GE(p.target_mean_rate, 0.1);
    EXPECT_LE(p.target_mean_rate, 1.0);
  }
  // Recompute rates of the training images from the stored trials and parameters: mean = target.
  std::vector<float> normalised;
  std::vector<int64_t> train_rows;
  std::set<int64_t> seen;
  for (int64_t t = 0; t < d.data.n_trials; ++t) {
    if (d.data.tiers[static_cast<size_t>(t)] != v1sysid::Tier::train) continue;
    const size_t size = static_cast<size_t>(c.height * c.width);
    for (size_t k = 0; k < size; ++k) {
      normalised.push_back(static_cast<float>((d.data.images[static_cast<size_t>(t) * size + k] - d.image_mean) / d.image_std));
    }
    train_rows.push_back(static_cast<int64_t>(train_rows.size()));
    seen.insert(d.data.image_ids[static_cast<size_t>(t)]);
  }
  ASSERT_EQ(seen.size(), train_rows.size());  // each training image once
  std::vector<sim::NeuronParameters> neurons = d.neurons;
  const auto raw = sim::compute_raw_drives(neurons, normalised, static_cast<int64_t>(train_rows.size()), c.height,
                                           c.width, train_rows);
  for (int64_t j = 0; j < n; ++j) {
    double mean = 0;
    for (size_t i = 0; i < train_rows.size(); ++i) {
      mean += sim::rate_of_raw_drive(d.neurons[static_cast<size_t>(j)], raw[i * static_cast<size_t>(n) + static_cast<size_t>(j)]);
    }
    mean /= static_cast<double>(train_rows.size());
    EXPECT_NEAR(mean, d.neurons[static_cast<size_t>(j)].target_mean_rate, 1e-4 * mean) << "neuron " << j;
  }
}

// ---- analytic ceilings vs Monte Carlo ---------------------------------------------------------------------

struct CeilingCheck {
  double mean_abs_ceiling_error = 0;  // mean over neurons of |MC - analytic| ceiling correlation
  double mean_ceiling_bias = 0;       // mean over neurons of (MC - analytic)
  double max_ceiling_z = 0;           // max over neurons of |MC - analytic| / SE
  double max_noise_z = 0;             // max over neurons of |N_MC - N| / SE
  double mean_abs_fev_error = 0;
};

// Draws `groups` x R repeats of every test image through simulate_trial (trial numbers beyond the design),
// then per neuron: the correlation of the true rates with the mean of each group of R repeats (groups are
// independent, so their spread gives the SE), and the mean trial-to-trial variance.
CeilingCheck check_ceilings(const sim::NoiseParameters& p, const std::vector<float>& rates, int64_t m, int64_t n, int R,
                            int groups, const std::vector<sim::NeuronNoise>& neuron_noise = {}) {
  const int draws = R * groups;
  std::vector<float> r(static_cast<size_t>(draws * m * n));
  for (int d = 0; d < draws; ++d) {
    for (int64_t i = 0; i < m; ++i) {
      sim::simulate_trial(p, neuron_noise, 7, 0, 1000000000ULL + static_cast<uint64_t>(d * m + i), rates.data() + i * n, n,
                          r.data() + (static_cast<size_t>(d) * static_cast<size_t>(m) + static_cast<size_t>(i)) * static_cast<size_t>(n),
                          nullptr);
    }
  }
  auto at = [&](int d, int64_t i, int64_t j) { return double{r[(static_cast<size_t>(d) * static_cast<size_t>(m) + static_cast<size_t>(i)) * static_cast<size_t>(n) + static_cast<size_t>(j)]}; };
  CeilingCheck out;
  int used = 0;
  for (int64_t j = 0; j < n; ++j) {
    std::vector<double> lambda(static_cast<size_t>(m));
    for (int64_t i = 0; i < m; ++i) lambda[static_cast<size_t>(i)] = rates[static_cast<size_t>(i * n + j)];
    const sim::Ceiling c =
        neuron_noise.empty()
            ? sim::analytic_ceiling(p, lambda.data(), m, R)
            : sim::analytic_ceiling(p, lambda.data(), m, R, sim::gain_second_moment(p, &neuron_noise[static_cast<size_t>(j)]));
    if (c.signal_variance <= 0) continue;
    // Correlations per group.
    std::vector<double> corr;
    std::vector<double> noise_per_group;
    for (int g = 0; g < groups; ++g) {
      std::vector<double> mean(static_cast<size_t>(m), 0.0);
      double noise = 0;
      for (int64_t i = 0; i < m; ++i) {
        double s = 0, s2 = 0;
        for (int k = 0; k < R; ++k) {
          const double v = at(g * R + k, i, j);
          s += v;
          s2 += v * v;
        }
        mean[static_cast<size_t>(i)] = s / R;
        noise += (s2 - s * s / R) / (R - 1);
      }
      noise_per_group.push_back(noise / static_cast<double>(m));
      double ml = 0, mm = 0;
      for (int64_t i = 0; i < m; ++i) {
        ml += lambda[static_cast<size_t>(i)];
        mm += mean[static_cast<size_t>(i)];
      }
      ml /= static_cast<double>(m);
      mm /= static_cast<double>(m);
      double sxy = 0, sxx = 0, syy = 0;
      for (int64_t i = 0; i < m; ++i) {
        const double a = lambda[static_cast<size_t>(i)] - ml, b = mean[static_cast<size_t>(i)] - mm;
        sxy += a * b;
        sxx += a * a;
        syy += b * b;
      }
      corr.push_back(syy > 0 ? sxy / std::sqrt(sxx * syy) : 0);
    }
    auto mean_and_se = [](const std::vector<double>& v) {
      double mu = 0, s2 = 0;
      for (double x : v) mu += x;
      mu /= static_cast<double>(v.size());
      for (double x : v) s2 += (x - mu) * (x - mu);
      return std::pair<double, double>{mu, std::sqrt(s2 / static_cast<double>(v.size() - 1) / static_cast<double>(v.size()))};
    };
    const auto [corr_mc, corr_se] = mean_and_se(corr);
    const auto [noise_mc, noise_se] = mean_and_se(noise_per_group);
    const double fev_mc = c.signal_variance / (c.signal_variance + noise_mc);
    out.mean_abs_ceiling_error += std::fabs(corr_mc - c.ceiling_correlation);
    out.mean_ceiling_bias += corr_mc - c.ceiling_correlation;
    out.max_ceiling_z = std::max(out.max_ceiling_z, std::fabs(corr_mc - c.ceiling_correlation) / corr_se);
    out.max_noise_z = std::max(out.max_noise_z, std::fabs(noise_mc - c.noise_variance) / noise_se);
    out.mean_abs_fev_error += std::fabs(fev_mc - c.fev);
    ++used;
  }
  out.mean_abs_ceiling_error /= used;
  out.mean_ceiling_bias /= used;
  out.mean_abs_fev_error /= used;
  return out;
}

TEST_F(SimTest, AnalyticCeilingsMatchMonteCarloForEveryNoiseModel) {
  const sim::StimulusSet s = sim::read_stimuli(*dir / "stimuli.h5");
  const sim::SimulatedDataset d = sim::simulate_animal(config(), s, 0);
  const auto& gt = *d.data.ground_truth;
  const int64_t m = static_cast<int64_t>(gt.test_image_ids.size()), n = d.data.n_neurons;
  // The written ground truth is the analytic ceiling of the noise-free test rates.
  for (int64_t j = 0; j < n; ++j) {
    std::vector<double> lambda(static_cast<size_t>(m));
    for (int64_t i = 0; i < m; ++i) lambda[static_cast<size_t>(i)] = gt.test_rates[static_cast<size_t>(i * n + j)];
    const auto c = sim::analytic_ceiling(d.noise, lambda.data(), m, 10);
    EXPECT_FLOAT_EQ(gt.ceiling_correlation[static_cast<size_t>(j)], static_cast<float>(c.ceiling_correlation));
    EXPECT_FLOAT_EQ(gt.fev[static_cast<size_t>(j)], static_cast<float>(c.fev));
  }

  // Monte Carlo on many images, so that the O(1/m) bias of a sample correlation over m images (noise.hpp)
  // stays below the sampling error: the same kind of neurons, rates on all 440 stimuli.
  std::vector<float> crops;
  const int H = d.data.height, W = d.data.width;
  for (int64_t i = 0; i < static_cast<int64_t>(s.size()); ++i) {
    for (int y = 0; y < H; ++y) {
      for (int x = 0; x < W; ++x) crops.push_back(s.images[static_cast<size_t>((i * s.height + y + 2) * s.width + x + 2)]);
    }
  }
  double mu = 0, sd = 0;
  for (float v : crops) mu += v;
  mu /= static_cast<double>(crops.size());
  for (float v : crops) sd += (v - mu) * (v - mu);
  sd = std::sqrt(sd / static_cast<double>(crops.size()));
  for (float& v : crops) v = static_cast<float>((v - mu) / sd);
  std::vector<int64_t> all(static_cast<size_t>(static_cast<int64_t>(s.size())));
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int64_t>(i);
  std::vector<sim::NeuronParameters> neurons = sim::draw_population(config(), 3);
  const auto raw = sim::compute_raw_drives(neurons, crops, static_cast<int64_t>(s.size()), H, W, all);
  const std::vector<float> rates = sim::calibrate_rates(neurons, raw, static_cast<int64_t>(s.size()), all);

  struct Case {
    const char* name;
    sim::NoiseParameters p;
    std::vector<sim::NeuronNoise> neurons = {};
    double abs_tolerance = 0.004;  // of the mean |MC - analytic| ceiling, mostly MC sampling error
  };
  std::vector<Case> cases;
  sim::NoiseParameters p;
  cases.push_back({"poisson", p});
  p.model = sim::NoiseModel::negative_binomial;
  p.nb_r = 3;
  cases.push_back({"negative_binomial r=3", p});
  p.model = sim::NoiseModel::zero_inflated_gamma;
  p.zig_zero_probability = 0.3;
  p.zig_shape = 2;
  cases.push_back({"zero_inflated_gamma p0=0.3 k=2", p});
  p = sim::NoiseParameters{};
  p.shared_gain_sd = 0.5;
  cases.push_back({"poisson + shared gain sd 0.5", p});
  p.model = sim::NoiseModel::negative_binomial;
  p.nb_r = 3;
  cases.push_back({"negative_binomial r=3 + shared gain sd 0.5", p});
  // Per-neuron noise: 2 gain factors (s 0.4) and private gamma gains with log-normally spread variances. The spread
  // is narrower than data/demo.yaml's (log-SD 1 instead of 2.4): the variances far in its tail (v ~ 20) make the
  // noise so heavy-tailed that the O(1/m) bias of the sample correlation outgrows these tolerances; V itself is
  // checked against Monte Carlo up to v = 2 in PerNeuronTrialVarianceMatchesMonteCarloForEveryModel.
  sim::NeuronNoiseDistribution dist;
  dist.gain_factors = 2;
  dist.loading_mean = {1.0, 0.0};
  dist.loading_sd = 0.5;
  dist.private_gain = true;
  dist.private_variance_median = 0.2;
  dist.private_variance_log_sd = 1.0;
  std::vector<sim::NeuronNoise> per_neuron;
  for (int64_t j = 0; j < n; ++j) per_neuron.push_back(sim::draw_neuron_noise(dist, 7, 0, static_cast<uint64_t>(j)));
  p = sim::NoiseParameters{};
  p.gain_factors = 2;
  p.gain_log_sd = 0.4;
  p.private_gain = true;
  cases.push_back({"poisson + 2 gain factors s 0.4 + private gains", p, per_neuron});
  p.model = sim::NoiseModel::zero_inflated_gamma;
  // About twice the noise of the other cases, so each MC ceiling has a larger SE (the z-scores stay the check).
  cases.push_back({"zero_inflated_gamma + 2 gain factors s 0.4 + private gains", p, per_neuron, 0.006});
  for (const Case& c : cases) {
    const CeilingCheck r = check_ceilings(c.p, rates, static_cast<int64_t>(s.size()), n, 10, 30, c.neurons);
    std::cout << "[ceiling vs MC, " << static_cast<int64_t>(s.size()) << " images] " << c.name << ": mean |MC - analytic| ceiling "
              << r.mean_abs_ceiling_error << ", mean bias " << r.mean_ceiling_bias << ", max |z| ceiling "
              << r.max_ceiling_z << ", max |z| noise variance " << r.max_noise_z << ", mean |MC - analytic| fev "
              << r.mean_abs_fev_error << "\n";
    EXPECT_LT(r.mean_abs_ceiling_error, c.abs_tolerance) << c.name;
    EXPECT_LT(std::fabs(r.mean_ceiling_bias), 0.003) << c.name;
    EXPECT_LT(r.max_ceiling_z, 4.5) << c.name;
    EXPECT_LT(r.max_noise_z, 4.5) << c.name;
    EXPECT_LT(r.mean_abs_fev_error, 0.01) << c.name;
  }
  // For the record: the finite-m bias on the smaller test sets of the real designs (not asserted).
  for (int64_t m_small : {30, 100}) {
    const CeilingCheck r = check_ceilings(cases[0].p, rates, m_small, n, 10, 30);
    std::cout << "[ceiling vs MC, " << m_small << " images] poisson: mean bias " << r.mean_ceiling_bias << "\n";
  }
}

// ---- the command and its file ----------------------------------------------------------------------------

// Every dataset of a file, recursively: name -> values as doubles (numeric) or joined strings.
void collect(const h5::File& f, const std::string& group, std::map<std::string, std::string>& out) {
  for (const auto& name : f.list(group)) {
    const std::string path = group == "/" ? name : group + "/" + name;
    if (f.is_group(path)) {
      collect(f, path, out);
    } else if (f.is_string(path)) {
      std::string joined;
      for (const auto& s : f.read_strings(path)) joined += s + '\n';
      out[path] = joined;
    } else {
      const auto v = f.read<double>(path);
      out[path] = std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(double));
    }
  }
}

TEST_F(SimTest, SameSeedGivesIdenticalDatasetsAndAnotherSeedDoesNot) {
  const std::string cfg = write_config("det.yaml", tiny_config());
  const std::string cfg2 = write_config("det2.yaml", tiny_config("noise: {shared_gain_sd: 0.0}\n"));  // same content
  std::string seed8 = tiny_config();
  seed8.replace(seed8.find("seed: 7"), 7, "seed: 8");
  const std::string cfg3 = write_config("det3.yaml", seed8);
  for (auto [c, out] : {std::pair{cfg, "a.h5"}, std::pair{cfg2, "b.h5"}, std::pair{cfg3, "c.h5"}}) {
    const auto r = run_v1sysid("simulate " + c + " --out " + (*dir / out) + " --force");
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  // --seed 8 on the seed-7 config is the seed-8 config (the replication's fresh seeds come from it).
  const auto r = run_v1sysid("simulate " + cfg + " --seed 8 --out " + (*dir / "d.h5") + " --force");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::map<std::string, std::string> a, b, c, d;
  collect(h5::File::open(*dir / "a.h5"), "/", a);
  collect(h5::File::open(*dir / "b.h5"), "/", b);
  collect(h5::File::open(*dir / "c.h5"), "/", c);
  collect(h5::File::open(*dir / "d.h5"), "/", d);
  ASSERT_GT(a.size(), 40u);
  for (const auto& [name, bytes] : a) EXPECT_TRUE(b.count(name) && b[name] == bytes) << name << " differs";
  for (const auto& [name, bytes] : c) EXPECT_TRUE(d.count(name) && d[name] == bytes) << name << " differs (--seed)";
  EXPECT_EQ(sim::parse_simulation_config(h5::File::open(*dir / "d.h5").read_attribute_string("/", "config"), "attr", "")
                .seed,
            8u);
  EXPECT_NE(a["responses"], c["responses"]);
  EXPECT_NE(a["gt/orientation"], c["gt/orientation"]);
}

// --rates-for (issue 22): the population of the same config and seed, asked for its noise-free rates on the
// dataset's own test images, gives back gt/test_rates bit for bit, for the Gabor and the deep library (whose
// normalisation constants were calibrated on the training images and must be kept, not re-calibrated on the
// images asked about); the rates of shuffled images follow the images; bad input names file and field.
TEST_F(SimTest, RatesForTheTestImagesAreTheGroundTruthTestRates) {
  std::string deep = tiny_config();
  deep.erase(deep.find("cell_types:"));  // the gabor mix
  deep += "cell_library:\n  kind: deep\n  deep_fraction: 0.5\n";
  for (const std::string& text : {tiny_config(), deep}) {
    SCOPED_TRACE(text == deep ? "deep library" : "gabor library");
    const std::string cfg = write_config("rates.yaml", text);
    const std::string data = *dir / "rates_data.h5", images = *dir / "rates_images.h5", out = *dir / "rates.h5";
    auto r = run_v1sysid("simulate " + cfg + " --out " + data + " --force");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const v1sysid::Dataset d = v1sysid::load_dataset(data);
    auto f = h5::File::open(data);
    const auto test_ids = f.read<int64_t>("gt/test_image_ids");
    const auto test_rates = f.read<float>("gt/test_rates");  // (n_test_images, n)
    const size_t n = static_cast<size_t>(d.n_neurons), pixels = static_cast<size_t>(d.height * d.width);
    // The test images in gt/test_image_ids order, then reversed: the rates must follow the images.
    std::vector<float> picked;
    for (int64_t id : test_ids) {
      const auto row = std::find(d.image_ids.begin(), d.image_ids.end(), id) - d.image_ids.begin();
      ASSERT_LT(static_cast<size_t>(row), d.image_ids.size());
      picked.insert(picked.end(), d.images.begin() + static_cast<std::ptrdiff_t>(row * pixels),
                    d.images.begin() + static_cast<std::ptrdiff_t>((row + 1) * pixels));
    }
    const size_t T = test_ids.size();
    for (size_t t = 0; t < T; ++t)
      picked.insert(picked.end(), picked.begin() + static_cast<std::ptrdiff_t>((T - 1 - t) * pixels),
                    picked.begin() + static_cast<std::ptrdiff_t>((T - t) * pixels));
    {
      auto w = h5::File::create(images, true);
      w.write("images", picked, {2 * T, 1, static_cast<hsize_t>(d.height), static_cast<hsize_t>(d.width)});
      w.commit();
    }
    r = run_v1sysid("simulate " + cfg + " --rates-for " + images + " --out " + out + " --force");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto rates = h5::File::open(out).read<float>("rates");
    ASSERT_EQ(rates.size(), 2 * T * n);
    ASSERT_EQ(test_rates.size(), T * n);
    for (size_t t = 0; t < T; ++t) {
      for (size_t j = 0; j < n; ++j) {
        ASSERT_EQ(rates[t * n + j], test_rates[t * n + j]) << "image " << t << " neuron " << j;
        ASSERT_EQ(rates[(T + t) * n + j], test_rates[(T - 1 - t) * n + j]) << "reversed image " << t;
      }
    }
  }
  // Bad input: images of another size, no 'images', an animal the config does not have.
  const std::string cfg = write_config("rates_bad.yaml", tiny_config());
  const std::string wrong = *dir / "rates_wrong.h5";
  {
    auto w = h5::File::create(wrong, true);
    w.write("images", std::vector<float>(2 * 8 * 8, 100.f), {2, 1, 8, 8});
    w.write("other", std::vector<float>{1.f}, {1});
    w.commit();
  }
  auto r = run_v1sysid("simulate " + cfg + " --rates-for " + wrong + " --out " + (*dir / "rw.h5") + " --force");
  EXPECT_EQ(r.exit_code, 4) << r.output;
  EXPECT_NE(r.output.find("expected T x 1 x 20 x 36"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(wrong), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(*dir / "rw.h5"));
  r = run_v1sysid("simulate " + cfg + " --rates-for " + cfg + " --out " + (*dir / "rw.h5") + " --force");
  EXPECT_NE(r.exit_code, 0) << r.output;
  r = run_v1sysid("simulate " + cfg + " --rates-for " + wrong + " --animal 2 --out " + (*dir / "rw.h5") + " --force");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--animal 2 is not an animal"), std::string::npos) << r.output;
}

TEST_F(SimTest, FileTreeOutputHoldsTheSameDatasetAsTheHdf5File) {
  const std::string cfg = write_config("ft.yaml", tiny_config());
  const std::string h5_out = *dir / "ft.h5", tree_out = *dir / "ft_tree";
  auto r = run_v1sysid("simulate " + cfg + " --out " + h5_out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_v1sysid("simulate " + cfg + " --out " + tree_out + " --format filetree");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(std::filesystem::exists(tree_out + "/config.json"));
  EXPECT_TRUE(std::filesystem::exists(tree_out + "/data/images/0.npy"));
  const v1sysid::Dataset a = v1sysid::load_dataset(h5_out), b = v1sysid::load_dataset(tree_out);
  EXPECT_EQ(a.images, b.images);
  EXPECT_EQ(a.responses, b.responses);
  EXPECT_EQ(a.tiers, b.tiers);
  EXPECT_EQ(a.image_ids, b.image_ids);
  EXPECT_EQ(a.unit_ids, b.unit_ids);
  EXPECT_EQ(a.cortical_coordinates, b.cortical_coordinates);
  ASSERT_TRUE(a.ground_truth && b.ground_truth);
  EXPECT_EQ(a.ground_truth->cell_type, b.ground_truth->cell_type);
  EXPECT_EQ(a.ground_truth->ceiling_correlation, b.ground_truth->ceiling_correlation);
  EXPECT_EQ(a.ground_truth->test_rates, b.ground_truth->test_rates);
  r = run_v1sysid("simulate " + cfg + " --out " + tree_out + " --format filetree");
  EXPECT_EQ(r.exit_code, 3) << r.output;  // an existing folder is not replaced without --force
}

TEST_F(SimTest, SourcePhotoIsTheStimulusFilesPhotoIndexOfEachTrialsImage) {
  // The shared stimuli have no photos; give a copy photo rows (trainval photos 0..6, test photos 7..9).
  sim::StimulusSet stim = sim::read_stimuli(*dir / "stimuli.h5");
  for (int p = 0; p < 10; ++p) stim.photos.push_back({"p" + std::to_string(p), "path", "package", "author", "CC0-1.0"});
  for (size_t i = 0; i < stim.size(); ++i)
    stim.photo_index[i] = stim.split[i] == "test" ? static_cast<int32_t>(7 + i % 3) : static_cast<int32_t>(i % 7);
  sim::write_stimuli(stim, *dir / "photo_stimuli.h5", /*force=*/true);
  std::string text = tiny_config();
  text.replace(text.find("stimuli.h5"), std::string("stimuli.h5").size(), "photo_stimuli.h5");
  const std::string cfg = write_config("source_photo.yaml", text);
  const std::string h5_out = *dir / "source_photo.h5", tree_out = *dir / "source_photo_tree";
  auto r = run_v1sysid("simulate " + cfg + " --out " + h5_out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_v1sysid("simulate " + cfg + " --out " + tree_out + " --format filetree");
  ASSERT_EQ(r.exit_code, 0) << r.output;

  h5::File f = h5::File::open(h5_out);
  const auto ids = f.read<int64_t>("item_info/frame_image_id");
  const auto source = f.read<int64_t>("item_info/source_photo");
  const auto tiers = f.read_strings("tiers");
  ASSERT_EQ(source.size(), ids.size());
  std::set<int64_t> seen;
  for (size_t t = 0; t < ids.size(); ++t) {
    ASSERT_EQ(source[t], stim.photo_index[static_cast<size_t>(ids[t])]) << "trial " << t;
    EXPECT_EQ(source[t] >= 7, tiers[t] == "test") << "trial " << t;
    seen.insert(source[t]);
  }
  EXPECT_EQ(seen.size(), 10u);
  EXPECT_EQ(v1sysid::npy::read(tree_out + "/meta/trials/source_photo.npy").values<int64_t>(), source);
  // Readers that do not know the field load both layouts as before.
  const v1sysid::Dataset a = v1sysid::load_dataset(h5_out), b = v1sysid::load_dataset(tree_out);
  EXPECT_EQ(a.image_ids, b.image_ids);
  // Procedural images (the shared stimuli) give -1.
  const std::string plain = *dir / "source_photo_plain.h5";
  r = run_v1sysid("simulate " + write_config("plain.yaml", tiny_config()) + " --out " + plain);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (int64_t v : h5::File::open(plain).read<int64_t>("item_info/source_photo")) ASSERT_EQ(v, -1);
}

TEST_F(SimTest, SimulateWritesTheStaticImageSetLayout) {
  const std::string cfg = write_config("layout.yaml", tiny_config("noise: {model: negative_binomial, nb_r: 3}\n"));
  const std::string out = *dir / "layout.h5";
  auto r = run_v1sysid("simulate " + cfg + " --out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_v1sysid("simulate " + cfg + " --out " + out);
  EXPECT_EQ(r.exit_code, 3) << r.output;  // IoError: exists, no --force
  EXPECT_NE(r.output.find("--force"), std::string::npos) << r.output;

  const int N = 300 + 30 + 30 * 10, n = 40, H = 20, W = 36;
  h5::File f = h5::File::open(out);
  EXPECT_EQ(f.read_attribute_int("/", "format_version"), 1);
  EXPECT_EQ(f.read_attribute_string("/", "stimuli_generator"), "smoothed noise (test)");
  EXPECT_EQ(f.read_attribute_string("/", "data_key"), "layout");
  const auto stored = sim::parse_simulation_config(f.read_attribute_string("/", "config"), "attr", "");
  EXPECT_EQ(stored.noise.model, "negative_binomial");
  EXPECT_EQ(f.shape("images"), (h5::Shape{N, 1, H, W}));
  EXPECT_EQ(f.shape("responses"), (h5::Shape{N, n}));
  EXPECT_EQ(f.shape("neurons/cell_motor_coordinates"), (h5::Shape{n, 3}));
  EXPECT_EQ(f.shape("gt/test_rates"), (h5::Shape{30, n}));
  EXPECT_EQ(f.shape("gt/position"), (h5::Shape{n, 2}));
  EXPECT_EQ(f.shape("statistics/images/all/mean"), h5::Shape{});
  EXPECT_EQ(f.shape("statistics/responses/all/std"), (h5::Shape{n}));
  EXPECT_TRUE(f.is_string("tiers"));
  EXPECT_EQ(f.read_strings("neurons/area")[0], "V1");

  const auto tiers = f.read_strings("tiers");
  const auto ids = f.read<int64_t>("item_info/frame_image_id");
  const auto trial_idx = f.read<int64_t>("item_info/trial_idx");
  const auto images = f.read<float>("images");
  const auto responses = f.read<float>("responses");
  const auto stim = sim::read_stimuli(*dir / "stimuli.h5");
  std::map<std::string, int> tier_count;
  std::map<int64_t, int> repeats;
  std::map<int64_t, std::string> tier_of_id;
  for (int t = 0; t < N; ++t) {
    tier_count[tiers[static_cast<size_t>(t)]]++;
    EXPECT_EQ(trial_idx[static_cast<size_t>(t)], t);
    const int64_t id = ids[static_cast<size_t>(t)];
    ASSERT_GE(id, 0);
    ASSERT_LT(id, static_cast<int64_t>(stim.size()));
    // Test images only from the test split, the others only from trainval.
    EXPECT_EQ(stim.split[static_cast<size_t>(id)] == "test", tiers[static_cast<size_t>(t)] == "test") << "row " << t;
    if (tier_of_id.count(id)) EXPECT_EQ(tier_of_id[id], tiers[static_cast<size_t>(t)]) << "image in two tiers";
    tier_of_id[id] = tiers[static_cast<size_t>(t)];
    repeats[id]++;
    // The stored image is the centre crop of that stimulus, 0..255.
    for (int y = 0; y < H; y += 7) {
      for (int x = 0; x < W; x += 5) {
        EXPECT_EQ(images[static_cast<size_t>((t * H + y) * W + x)],
                  stim.images[static_cast<size_t>((id * 24 + y + 2) * 40 + x + 2)]);
      }
    }
  }
  EXPECT_EQ(tier_count["train"], 300);
  EXPECT_EQ(tier_count["validation"], 30);
  EXPECT_EQ(tier_count["test"], 300);
  for (const auto& [id, k] : repeats) EXPECT_EQ(k, tier_of_id[id] == "test" ? 10 : 1) << "image " << id;
  // Presentation order is shuffled: the test trials are not one block.
  int first_test = -1, last_test = -1;
  for (int t = 0; t < N; ++t) {
    if (tiers[static_cast<size_t>(t)] == "test") {
      if (first_test < 0) first_test = t;
      last_test = t;
    }
  }
  EXPECT_GT(last_test - first_test, 300 + 100);
  for (float v : responses) {
    ASSERT_TRUE(std::isfinite(v));
    ASSERT_GE(v, 0.0f);
  }
  const auto test_ids = f.read<int64_t>("gt/test_image_ids");
  EXPECT_TRUE(std::is_sorted(test_ids.begin(), test_ids.end()));
  for (int64_t id : test_ids) EXPECT_EQ(tier_of_id[id], "test");
  const auto orientation = f.read<float>("gt/orientation");
  const auto cell_type = f.read_strings("gt/cell_type");
  for (int j = 0; j < n; ++j) {
    if (cell_type[static_cast<size_t>(j)] == "center_surround") EXPECT_TRUE(std::isnan(orientation[static_cast<size_t>(j)]));
    else EXPECT_TRUE(orientation[static_cast<size_t>(j)] >= 0 && orientation[static_cast<size_t>(j)] < kPi);
  }
  // Response statistics: train tier, std with ddof 0, the very divisor v1sysid's preprocessing computes (so that
  // neuralpredictors' NeuroNormalizer, which reads this field, scales the responses as v1sysid does).
  const auto stat_std = f.read<float>("statistics/responses/all/std");
  double s = 0, s2 = 0;
  int count = 0;
  for (int t = 0; t < N; ++t) {
    if (tiers[static_cast<size_t>(t)] != "train") continue;
    const double v = responses[static_cast<size_t>(t * n)];
    s += v;
    s2 += v * v;
    ++count;
  }
  EXPECT_NEAR(stat_std[0], std::sqrt((s2 - s * s / count) / count), 1e-5 * stat_std[0]);
  const v1sysid::Preprocessing pre = v1sysid::compute_preprocessing(v1sysid::load_dataset(out));
  for (int j = 0; j < n; ++j)
    EXPECT_NEAR(stat_std[static_cast<size_t>(j)], pre.response_std[static_cast<size_t>(j)], 1e-5 * stat_std[static_cast<size_t>(j)]) << j;
}

TEST_F(SimTest, InfoAndDataBasedEstimatorsRecoverTheGroundTruth) {
  // All 40 test stimuli x 20 repeats, so the data-based estimates have a usable sampling error.
  std::string text = tiny_config();
  text.replace(text.find("n_test_images: 30"), 17, "n_test_images: 40");
  text.replace(text.find("test_repeats: 10"), 16, "test_repeats: 20");
  text.replace(text.find("n_neurons: 40"), 13, "n_neurons: 200");
  const std::string out = *dir / "static42-1-1-preproc0.h5";
  auto r = run_v1sysid("simulate " + write_config("recover.yaml", text) + " --out " + out + " --force");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_v1sysid("info --json " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto info = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  EXPECT_EQ(info["trials"]["train"], 300);
  EXPECT_EQ(info["trials"]["validation"], 30);
  EXPECT_EQ(info["trials"]["test"], 800);
  EXPECT_EQ(info["neurons"], 200);
  EXPECT_EQ(info["image_shape"], nlohmann::json::array({1, 20, 36}));
  EXPECT_EQ(info["test_images"], 40);
  EXPECT_EQ(info["test_repeats"], 20);
  EXPECT_EQ(info["data_key"], "42-1-1-0");
  EXPECT_EQ(info["has_ground_truth"], true);
  EXPECT_EQ(info["has_cortical_coordinates"], true);
  EXPECT_EQ(info["has_statistics"], true);

  const v1sysid::Dataset d = v1sysid::load_dataset(out);
  ASSERT_TRUE(d.ground_truth.has_value());
  const auto& gt = *d.ground_truth;
  namespace m = v1sysid::metrics;
  const auto groups = m::group_repeats(d.indices(v1sysid::Tier::test), d.image_ids);
  ASSERT_EQ(groups.image_ids, gt.test_image_ids);
  const m::ConstMatrix<float> responses(d.responses, d.n_trials, d.n_neurons, "responses");
  const auto v = m::variance_decomposition(responses, groups);
  const auto fev_mean = m::fev_per_neuron(v);                  // of the repeat means: ~ ceiling^2
  const auto fev_single = m::fev_single_trial_per_neuron(v);   // Lurz FEV: ~ gt/fev
  const auto oracle = m::oracle_correlation_per_neuron(responses, groups);
  double gt_ceiling = 0, data_ceiling = 0, gt_fev = 0, data_fev = 0, gt_oracle = 0, data_oracle = 0;
  std::vector<double> a, b;
  const double R = 20;
  for (int64_t j = 0; j < d.n_neurons; ++j) {
    const double f = gt.fev[static_cast<size_t>(j)];
    // The FEV of the repeat means estimates ceiling^2 (compared squared: a sqrt of a noisy estimate is biased).
    gt_ceiling += std::pow(gt.ceiling_correlation[static_cast<size_t>(j)], 2);
    data_ceiling += fev_mean[static_cast<size_t>(j)];
    gt_fev += f;
    data_fev += fev_single[static_cast<size_t>(j)];
    // Jackknife oracle in expectation: corr(one trial, mean of the other R - 1) with signal S and noise N,
    // S / sqrt((S + N) (S + N / (R - 1))), written with fev = S / (S + N).
    gt_oracle += f / std::sqrt(f + (1 - f) / (R - 1));
    data_oracle += oracle[static_cast<size_t>(j)];
    a.push_back(f);
    b.push_back(fev_single[static_cast<size_t>(j)]);
  }
  const double n = static_cast<double>(d.n_neurons);
  std::cout << "[data-based vs gt, 200 neurons, 40 images x 20 repeats] mean ceiling^2 " << data_ceiling / n << " vs "
            << gt_ceiling / n << ", mean single-trial FEV " << data_fev / n << " vs " << gt_fev / n
            << ", mean jackknife oracle " << data_oracle / n << " vs " << gt_oracle / n
            << ", corr(FEV data, gt) across neurons " << m::pearson_per_neuron(m::ConstMatrix<double>(a, 200, 1),
                                                                               m::ConstMatrix<double>(b, 200, 1))[0]
            << "\n";
  // Tolerances: the spread of these means over seeds is about 0.005 to 0.01 (ratio estimators are biased low
  // by about that much too), so 0.02 is a few sampling SDs.
  EXPECT_NEAR(data_ceiling / n, gt_ceiling / n, 0.02);
  EXPECT_NEAR(data_fev / n, gt_fev / n, 0.02);
  EXPECT_NEAR(data_oracle / n, gt_oracle / n, 0.02);
  EXPECT_GT(m::pearson_per_neuron(m::ConstMatrix<double>(a, 200, 1), m::ConstMatrix<double>(b, 200, 1))[0], 0.9);
}

TEST_F(SimTest, SeveralAnimalsGetOwnFilesNeuronsAndImages) {
  const std::string cfg = write_config("animals.yaml", tiny_config("n_animals: 2\n"));
  const auto r = run_v1sysid("simulate " + cfg + " --out " + (*dir / "pop.h5") + " --force");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  h5::File a = h5::File::open(*dir / "pop-animal1.h5");
  h5::File b = h5::File::open(*dir / "pop-animal2.h5");
  EXPECT_FALSE(std::filesystem::exists(*dir / "pop.h5"));
  EXPECT_EQ(a.read<int64_t>("neurons/animal_ids")[0], 1);
  EXPECT_EQ(b.read<int64_t>("neurons/animal_ids")[0], 2);
  EXPECT_NE(a.read_attribute_string("/", "data_key"), b.read_attribute_string("/", "data_key"));
  EXPECT_NE(a.read<float>("gt/position"), b.read<float>("gt/position"));
  EXPECT_NE(a.read<int64_t>("item_info/frame_image_id"), b.read<int64_t>("item_info/frame_image_id"));
  std::map<std::string, int> ta, tb;
  for (const auto& t : a.read_strings("gt/cell_type")) ta[t]++;
  for (const auto& t : b.read_strings("gt/cell_type")) tb[t]++;
  EXPECT_EQ(ta, tb);
}

// n_neurons as a list: one count per animal (transfer presets: four core animals and a smaller target).
TEST_F(SimTest, AnimalsCanHaveDifferentNeuronCounts) {
  std::string text = tiny_config("n_animals: 3\n");
  text.replace(text.find("n_neurons: 40"), 13, "n_neurons: [40, 40, 15]");
  const auto r =
      run_v1sysid("simulate " + write_config("unequal.yaml", text) + " --out " + (*dir / "uneq.h5") + " --force");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const char* files[] = {"uneq-animal1.h5", "uneq-animal2.h5", "uneq-animal3.h5"};
  const size_t counts[] = {40, 40, 15};
  for (int k = 0; k < 3; ++k) {
    h5::File f = h5::File::open(*dir / files[k]);
    EXPECT_EQ(f.read<int64_t>("neurons/unit_ids").size(), counts[k]) << files[k];
    EXPECT_EQ(f.read<float>("gt/fev").size(), counts[k]) << files[k];
    EXPECT_EQ(f.read<float>("responses").size(), counts[k] * 630) << files[k];  // 300 + 30 + 30 x 10 trials
  }
  // The resolved config keeps the list and decodes to itself.
  const sim::SimulationConfig c = sim::parse_simulation_config(text, "unequal.yaml", dir->path.string());
  EXPECT_EQ(c.neurons_of(2), 15);
  const sim::SimulationConfig again = sim::parse_simulation_config(c.to_yaml(), "stored", "");
  EXPECT_EQ(again.n_neurons_by_animal, (std::vector<int>{40, 40, 15}));
  EXPECT_EQ(again.to_yaml(), c.to_yaml());

  auto error_of = [&](const std::string& animals, const std::string& neurons) {
    std::string bad = tiny_config(animals);
    bad.replace(bad.find("n_neurons: 40"), 13, neurons);
    try {
      sim::parse_simulation_config(bad, "bad.yaml", dir->path.string());
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  std::string e = error_of("n_animals: 3\n", "n_neurons: [40, 15]");
  EXPECT_NE(e.find("n_neurons"), std::string::npos) << e;
  EXPECT_NE(e.find("one neuron count per animal (n_animals: 3), got 2"), std::string::npos) << e;
  e = error_of("n_animals: 2\n", "n_neurons: [40, 0]");
  EXPECT_NE(e.find("n_neurons"), std::string::npos) << e;
  EXPECT_NE(e.find("[1, 1000000], got 0"), std::string::npos) << e;
  e = error_of("", "n_neurons: [40, 15]");  // n_animals defaults to 1
  EXPECT_NE(e.find("(n_animals: 1), got 2"), std::string::npos) << e;
  e = error_of("n_animals: 2\n", "n_neurons: [40, many]");
  EXPECT_NE(e.find("n_neurons[1]"), std::string::npos) << e;
}

// --store-raw-drive: gt/raw_drive holds every trial's raw drive g, from which the rates follow through the
// stored calibration (neuron_model.hpp: rate = gain softplus(selectivity (g - mean) / sd - threshold) + baseline).
TEST_F(SimTest, StoreRawDriveWritesTheDriveOfTheRates) {
  const std::string cfg = write_config("raw.yaml", tiny_config());
  auto r = run_v1sysid("simulate " + cfg + " --out " + (*dir / "raw.h5") + " --force --store-raw-drive");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_v1sysid("simulate " + cfg + " --out " + (*dir / "noraw.h5") + " --force");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  h5::File with = h5::File::open(*dir / "raw.h5"), without = h5::File::open(*dir / "noraw.h5");
  EXPECT_FALSE(without.exists("gt/raw_drive"));
  EXPECT_EQ(with.read<float>("responses"), without.read<float>("responses"));  // the flag changes nothing else
  const auto g = with.read<float>("gt/raw_drive");
  const size_t n = 40, N = 630;
  ASSERT_EQ(g.size(), N * n);
  const auto tiers = with.read_strings("tiers");
  const auto ids = with.read<int64_t>("item_info/frame_image_id");
  const auto test_ids = with.read<int64_t>("gt/test_image_ids");
  const auto test_rates = with.read<float>("gt/test_rates");
  const auto gain = with.read<double>("gt/gain"), sel = with.read<double>("gt/selectivity");
  const auto thr = with.read<double>("gt/threshold"), base = with.read<double>("gt/baseline");
  const auto mean = with.read<double>("gt/raw_drive_mean"), sd = with.read<double>("gt/raw_drive_sd");
  int checked = 0;
  for (size_t t = 0; t < N; ++t) {
    if (tiers[t] != "test") continue;
    const size_t i = static_cast<size_t>(std::find(test_ids.begin(), test_ids.end(), ids[t]) - test_ids.begin());
    ASSERT_LT(i, test_ids.size());
    for (size_t j = 0; j < n; ++j) {
      const double drive = sel[j] * (g[t * n + j] - mean[j]) / sd[j] - thr[j];
      const double softplus = drive > 30 ? drive : std::log1p(std::exp(drive));
      EXPECT_NEAR(gain[j] * softplus + base[j], test_rates[i * n + j], 1e-4 * (1 + test_rates[i * n + j]));
      ++checked;
    }
  }
  EXPECT_EQ(checked, 300 * 40);
}

TEST_F(SimTest, MissingOrForeignStimuliAreClearErrors) {
  const std::string cfg = write_config("nostim.yaml", tiny_config());
  auto r = run_v1sysid("simulate " + cfg + " --out " + (*dir / "x.h5") + " --stimuli " + (*dir / "none.h5"));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("v1sysid images"), std::string::npos) << r.output;
  {
    h5::File f = h5::File::create(*dir / "foreign.h5", true);
    f.write("images", std::vector<float>(24 * 40, 1.0f), {1, 24, 40});
    f.commit();
  }
  r = run_v1sysid("simulate " + cfg + " --out " + (*dir / "x.h5") + " --stimuli " + (*dir / "foreign.h5"));
  EXPECT_EQ(r.exit_code, 4) << r.output;
  EXPECT_NE(r.output.find("format_version"), std::string::npos) << r.output;
  std::string zero_repeats = tiny_config();
  zero_repeats.replace(zero_repeats.find("test_repeats: 10"), 16, "test_repeats: 0");
  r = run_v1sysid("simulate " + write_config("bad.yaml", zero_repeats) + " --out " + (*dir / "y.h5"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("test_repeats"), std::string::npos) << r.output;
}

// ---- deep cell-type library (neuron_model.hpp, "Deep library") --------------------------------------------

// Square stimuli of side kSide with the cell at the centre pixel, so that a 90-degree rotation about the cell
// maps pixel centres onto pixel centres.
constexpr int kSide = 49;
constexpr double kCentre = 24;
using Image = std::vector<float>;

// A deep cell at the centre: lambda 8, sigma 2.5, gamma 0.8 (sigma_v = 3.125 px), no modulators.
sim::NeuronParameters deep_cell(sim::CellType type, double theta = 0.3) {
  sim::NeuronParameters p;
  p.deep = true;
  p.type = type;
  p.x = p.y = kCentre;
  p.orientation = p.modulator_angle = theta;
  p.phase = 0.4;
  p.wavelength = 8;
  p.sigma = 2.5;
  p.aspect_ratio = 0.8;
  p.normalization_constant = 0.3;
  p.energy_weight = type == sim::CellType::simple ? 0 : type == sim::CellType::complex ? 1 : 0.5;
  if (type == sim::CellType::corner) {
    p.corner_angle = kPi / 2;
    p.arm_offset = 1.2 * 3.125;
  }
  if (type == sim::CellType::curvature) {
    p.curvature_radius = 2.5 * 3.125;
    p.arc_spacing = 1.5 * 3.125;
  }
  return p;
}

// Direct evaluation of the formulas of neuron_model.hpp, written independently of FilterBank and the dot
// product: the probe pair at q with orientation phi on its full (2r + 1)^2 window, summed over the pixels that
// lie in the image.
std::array<double, 2> direct_pair(const Image& img, const sim::NeuronParameters& c, double qx, double qy, double phi) {
  const int r = static_cast<int>(std::ceil(3 * c.sigma / c.aspect_ratio));
  const long cx = std::lround(qx), cy = std::lround(qy);
  std::array<double, 2> out{0, 0};
  for (int k = 0; k < 2; ++k) {
    std::vector<double> env, g;
    std::vector<long> px, py;
    double sum_env = 0, sum_g = 0;
    for (long y = cy - r; y <= cy + r; ++y) {
      for (long x = cx - r; x <= cx + r; ++x) {
        const double dx = x - qx, dy = y - qy;
        const double u = -dx * std::sin(phi) + dy * std::cos(phi), v = dx * std::cos(phi) + dy * std::sin(phi);
        const double e = std::exp(-(u * u + c.aspect_ratio * c.aspect_ratio * v * v) / (2 * c.sigma * c.sigma));
        env.push_back(e);
        g.push_back(e * std::cos(2 * kPi * u / c.wavelength + k * kPi / 2));
        px.push_back(x);
        py.push_back(y);
        sum_env += e;
        sum_g += g.back();
      }
    }
    double norm = 0;
    for (size_t i = 0; i < g.size(); ++i) {
      g[i] -= env[i] * sum_g / sum_env;
      norm += g[i] * g[i];
    }
    for (size_t i = 0; i < g.size(); ++i) {
      if (px[i] < 0 || py[i] < 0 || px[i] >= kSide || py[i] >= kSide) continue;
      out[static_cast<size_t>(k)] += g[i] / std::sqrt(norm) * img[static_cast<size_t>(py[i] * kSide + px[i])];
    }
  }
  return out;
}
double direct_energy(const Image& img, const sim::NeuronParameters& c, double dx, double dy, double phi) {
  const auto ab = direct_pair(img, c, c.x + dx, c.y + dy, phi);
  return std::hypot(ab[0], ab[1]);
}

struct DirectParts {
  double base, pool, modulators;
};
DirectParts direct_parts(const Image& img, const sim::NeuronParameters& c) {
  const double t = c.orientation, psi = c.modulator_angle;
  DirectParts d{0, 0, 0};
  for (int k = 0; k < 8; ++k) d.pool += direct_energy(img, c, 0, 0, t + k * kPi / 8) / 8;
  if (c.type == sim::CellType::corner) {
    const double r = c.arm_sign * c.arm_offset, t2 = t + c.corner_angle;
    d.base = std::sqrt(direct_energy(img, c, r * std::cos(t), r * std::sin(t), t) *
                       direct_energy(img, c, r * std::cos(t2), r * std::sin(t2), t2));
  } else if (c.type == sim::CellType::curvature) {
    const double R = c.curvature_radius, s = c.curvature_sign;
    double product = 1;
    for (int k = -1; k <= 1; ++k) {
      const double beta = k * c.arc_spacing / R, v = R * std::sin(beta), u = s * R * (1 - std::cos(beta));
      product *=
          direct_energy(img, c, v * std::cos(t) - u * std::sin(t), v * std::sin(t) + u * std::cos(t), t + s * beta);
    }
    d.base = std::cbrt(product);
  } else {
    const auto ab = direct_pair(img, c, c.x, c.y, t);
    d.base = (1 - c.energy_weight) * std::max(0.0, std::cos(c.phase) * ab[0] + std::sin(c.phase) * ab[1]) +
             c.energy_weight * std::hypot(ab[0], ab[1]);
  }
  if (c.surround_suppression_weight > 0) {
    double s = 0;
    for (int k = 0; k < 8; ++k) {
      const double a = psi + k * kPi / 4, dx = c.surround_radius * std::cos(a), dy = c.surround_radius * std::sin(a);
      if (c.surround_tuned) {
        s += direct_energy(img, c, dx, dy, psi) / 8;
      } else {
        for (int l = 0; l < 4; ++l) s += direct_energy(img, c, dx, dy, psi + l * kPi / 4) / 8;
      }
    }
    d.modulators += c.surround_suppression_weight * s;
  }
  if (c.cross_orientation_weight > 0)
    d.modulators += c.cross_orientation_weight * direct_energy(img, c, 0, 0, psi + kPi / 2);
  if (c.stopping != sim::Stopping::none) {
    const double a = c.stopping == sim::Stopping::end ? psi : psi + kPi / 2;
    double z = 0;
    int zones = 0;
    for (int side : {1, -1}) {
      if (c.stopping_side != 0 && side != c.stopping_side) continue;
      z += direct_energy(img, c, side * c.stopping_offset * std::cos(a), side * c.stopping_offset * std::sin(a), psi);
      ++zones;
    }
    d.modulators += c.stopping_weight * z / zones;
  }
  return d;
}

// Raw drives of one cell on a set of stimuli from the library (compute_raw_drives, calibrated on the whole
// set), after checking them against the direct evaluation.
std::vector<double> deep_drives(const sim::NeuronParameters& cell, const std::vector<Image>& stimuli) {
  std::vector<float> images;
  std::vector<int64_t> rows;
  for (const Image& s : stimuli) {
    rows.push_back(static_cast<int64_t>(rows.size()));
    images.insert(images.end(), s.begin(), s.end());
  }
  std::vector<sim::NeuronParameters> neurons{cell};
  const auto drive = sim::compute_raw_drives(neurons, images, static_cast<int64_t>(stimuli.size()), kSide, kSide, rows);
  std::vector<DirectParts> parts;
  std::vector<double> pools;
  for (const Image& s : stimuli) {
    parts.push_back(direct_parts(s, cell));
    pools.push_back(parts.back().pool);
  }
  std::sort(pools.begin(), pools.end());
  const size_t m = pools.size() / 2;
  const double median = pools.size() % 2 ? pools[m] : 0.5 * (pools[m - 1] + pools[m]);
  const double semi_saturation = cell.normalization_constant * median;
  EXPECT_NEAR(neurons[0].semi_saturation, semi_saturation, 1e-4 * semi_saturation);
  std::vector<double> out;
  for (size_t i = 0; i < stimuli.size(); ++i) {
    const double direct = parts[i].base / (semi_saturation + parts[i].pool + parts[i].modulators);
    EXPECT_NEAR(drive[i], direct, 1e-4 * std::max(1e-3, direct)) << sim::cell_type_name(cell.type) << " stimulus " << i;
    out.push_back(drive[i]);
  }
  return out;
}

// A sinusoidal grating at orientation theta (phase 0 on the cell's centre) inside a disc of radius `radius`
// around it; contrast 1.
Image grating_disc(double theta, double wavelength, double radius) {
  Image img(static_cast<size_t>(kSide * kSide));
  for (int y = 0; y < kSide; ++y) {
    for (int x = 0; x < kSide; ++x) {
      const double dx = x - kCentre, dy = y - kCentre;
      const double u = -dx * std::sin(theta) + dy * std::cos(theta);
      img[static_cast<size_t>(y * kSide + x)] =
          std::hypot(dx, dy) <= radius ? static_cast<float>(std::cos(2 * kPi * u / wavelength)) : 0.0f;
    }
  }
  return img;
}

// Bright strokes of Gaussian profile (SD 1 px) along segments from (x0, y0) to (x1, y1), relative to the centre.
struct Segment {
  double x0, y0, x1, y1;
};
Image strokes(const std::vector<Segment>& segments) {
  Image img(static_cast<size_t>(kSide * kSide));
  for (int y = 0; y < kSide; ++y) {
    for (int x = 0; x < kSide; ++x) {
      double best = 1e9;
      for (const Segment& s : segments) {
        const double px = x - kCentre - s.x0, py = y - kCentre - s.y0, ex = s.x1 - s.x0, ey = s.y1 - s.y0;
        const double t = std::clamp((px * ex + py * ey) / (ex * ex + ey * ey), 0.0, 1.0);
        best = std::min(best, std::hypot(px - t * ex, py - t * ey));
      }
      img[static_cast<size_t>(y * kSide + x)] = static_cast<float>(std::exp(-best * best / 2));
    }
  }
  return img;
}
// A ray from the centre in direction a, of length `length`.
Segment ray(double a, double length) { return {0, 0, length * std::cos(a), length * std::sin(a)}; }
// A bar through the centre along a, from -back to +ahead.
Segment bar(double a, double back, double ahead) {
  return {-back * std::cos(a), -back * std::sin(a), ahead * std::cos(a), ahead * std::sin(a)};
}
// An arc through the centre, tangent to direction t, bending towards s * (normal), radius R, +-span radians.
Image arc(double t, double R, int s, double span) {
  std::vector<Segment> pieces;
  const double ox = -R * s * std::sin(t), oy = R * s * std::cos(t);  // centre of curvature
  const int n = 40;
  auto point = [&](double b) {
    // Angle of the centre point seen from the centre of curvature is t - s pi / 2; walk +-b along the arc.
    const double a = t - s * kPi / 2 + s * b;
    return std::array<double, 2>{ox + R * std::cos(a), oy + R * std::sin(a)};
  };
  for (int k = 0; k < n; ++k) {
    const auto p = point(-span + 2 * span * k / n), q = point(-span + 2 * span * (k + 1) / n);
    pieces.push_back({p[0], p[1], q[0], q[1]});
  }
  return strokes(pieces);
}

TEST(SimDeepCells, SurroundSuppressionAppearsPastTheClassicalReceptiveField) {
  for (bool tuned : {true, false}) {
    sim::NeuronParameters plain = deep_cell(sim::CellType::complex), surround = plain;
    surround.surround_suppression_weight = 1.5;
    surround.surround_radius = 2.5 * 3.125;
    surround.surround_tuned = tuned;
    std::vector<Image> sizes;
    for (double r = 2; r <= 24; r += 2) sizes.push_back(grating_disc(plain.orientation, plain.wavelength, r));
    const auto a = deep_drives(plain, sizes), b = deep_drives(surround, sizes);
    const double peak_a = *std::max_element(a.begin(), a.end()), peak_b = *std::max_element(b.begin(), b.end());
    const size_t at_peak_b = static_cast<size_t>(std::max_element(b.begin(), b.end()) - b.begin());
    // Without a surround the response saturates; with one it peaks at a small size and falls beyond it.
    EXPECT_GT(a.back(), 0.97 * peak_a) << "tuned " << tuned;
    EXPECT_LT(b.back(), 0.75 * peak_b) << "tuned " << tuned;
    EXPECT_LT(2.0 * (static_cast<double>(at_peak_b) + 1), 2.5 * 3.125 + 3) << "peak radius, tuned " << tuned;
  }
  // An iso-tuned surround ignores an orthogonal surround grating more than an untuned one does.
  sim::NeuronParameters iso = deep_cell(sim::CellType::complex), untuned;
  iso.surround_suppression_weight = 1.5;
  iso.surround_radius = 2.5 * 3.125;
  iso.surround_tuned = true;
  untuned = iso;
  untuned.surround_tuned = false;
  Image centre = grating_disc(iso.orientation, 8, 5), cross = centre;
  const Image orthogonal = grating_disc(iso.orientation + kPi / 2, 8, 24);
  for (int y = 0; y < kSide; ++y) {
    for (int x = 0; x < kSide; ++x) {
      if (std::hypot(x - kCentre, y - kCentre) > 6)
        cross[static_cast<size_t>(y * kSide + x)] = orthogonal[static_cast<size_t>(y * kSide + x)];
    }
  }
  const auto di = deep_drives(iso, {centre, cross}), du = deep_drives(untuned, {centre, cross});
  EXPECT_LT(du[1] / du[0], di[1] / di[0] - 0.05);
}

TEST(SimDeepCells, APlaidShowsCrossOrientationSuppression) {
  sim::NeuronParameters plain = deep_cell(sim::CellType::complex), cross = plain;
  cross.cross_orientation_weight = 1.5;
  const Image g = grating_disc(plain.orientation, 8, 30), o = grating_disc(plain.orientation + kPi / 2, 8, 30);
  Image plaid(g.size());
  for (size_t k = 0; k < g.size(); ++k) plaid[k] = g[k] + o[k];
  const auto a = deep_drives(plain, {g, plaid, o}), b = deep_drives(cross, {g, plaid, o});
  EXPECT_LT(b[2], 0.1 * b[0]);  // the orthogonal grating alone does not drive it
  EXPECT_LT(b[1] / b[0], 0.8 * (a[1] / a[0])) << "plaid / grating: with " << b[1] / b[0] << ", without " << a[1] / a[0];
}

TEST(SimDeepCells, BarsBeyondTheEndsOrBesideTheBarStopTheCell) {
  const double t = 0.3, o = 2.5 * 3.125;
  sim::NeuronParameters plain = deep_cell(sim::CellType::complex, t), end = plain, one_end = plain, side = plain;
  end.stopping = sim::Stopping::end;
  end.stopping_side = 0;
  end.stopping_offset = o;
  end.stopping_weight = 1.5;
  one_end = end;
  one_end.stopping_side = 1;
  side = end;
  side.stopping = sim::Stopping::side;
  side.stopping_offset = 2.5 * 2.5;
  std::vector<Image> lengths;
  for (double half = 2; half <= 22; half += 2) lengths.push_back(strokes({bar(t, half, half)}));
  const auto a = deep_drives(plain, lengths), b = deep_drives(end, lengths);
  const double peak_a = *std::max_element(a.begin(), a.end()), peak_b = *std::max_element(b.begin(), b.end());
  EXPECT_GT(a.back(), 0.97 * peak_a);
  EXPECT_LT(b.back(), 0.75 * peak_b);
  // One zone: extending the bar on its side suppresses, on the other side it does not.
  const std::vector<Image> ends{strokes({bar(t, 3, 3)}), strokes({bar(t, 3, 22)}), strokes({bar(t, 22, 3)})};
  const auto c = deep_drives(one_end, ends);
  EXPECT_LT(c[1], 0.8 * c[2]);
  // Side-stopping: parallel flanking bars beside the bar suppress it; the plain cell barely notices them.
  const double nx = -std::sin(t) * side.stopping_offset, ny = std::cos(t) * side.stopping_offset;
  const Segment centre = bar(t, 6, 6);
  const std::vector<Image> flanks{strokes({centre}),
                                  strokes({centre,
                                           {centre.x0 + nx, centre.y0 + ny, centre.x1 + nx, centre.y1 + ny},
                                           {centre.x0 - nx, centre.y0 - ny, centre.x1 - nx, centre.y1 - ny}})};
  const auto p = deep_drives(plain, flanks), s = deep_drives(side, flanks);
  EXPECT_LT(s[1] / s[0], 0.8 * (p[1] / p[0]))
      << "flanked / alone: side-stopped " << s[1] / s[0] << ", plain " << p[1] / p[0];
}

TEST(SimDeepCells, ACornerCellPrefersItsCornerAndACurvatureCellItsArc) {
  const double t = 0.3, L = 14;
  for (double alpha_deg : {45.0, 90.0, 135.0}) {
    sim::NeuronParameters corner = deep_cell(sim::CellType::corner, t);
    corner.corner_angle = alpha_deg * kPi / 180;
    for (int sign : {1, -1}) {
      corner.arm_sign = sign;
      const double d = sign > 0 ? 0 : kPi;  // arms leave the vertex along d + theta and d + theta + alpha
      const double wrong = (alpha_deg == 90 ? 45.0 : 90.0) * kPi / 180;
      const std::vector<Image> s{strokes({ray(d + t, L), ray(d + t + corner.corner_angle, L)}),   // its corner
                                 strokes({bar(t, L, L)}),                                         // a line
                                 strokes({ray(d + t, L), ray(d + t + wrong, L)}),                 // another angle
                                 strokes({ray(d + t, L), ray(d + t - corner.corner_angle, L)})};  // mirrored
      const auto g = deep_drives(corner, s);
      EXPECT_GT(g[0], 1.15 * g[1]) << "alpha " << alpha_deg << " sign " << sign << ": corner vs line";
      EXPECT_GT(g[0], 1.15 * g[2]) << "alpha " << alpha_deg << " sign " << sign << ": corner vs wrong angle";
      EXPECT_GT(g[0], 1.15 * g[3]) << "alpha " << alpha_deg << " sign " << sign << ": corner vs mirror image";
    }
  }
  for (int sign : {1, -1}) {
    sim::NeuronParameters curved = deep_cell(sim::CellType::curvature, t);
    curved.curvature_sign = sign;
    const std::vector<Image> s{arc(t, curved.curvature_radius, sign, 1.2), strokes({bar(t, L, L)}),
                               arc(t, curved.curvature_radius, -sign, 1.2)};
    const auto g = deep_drives(curved, s);
    EXPECT_GT(g[0], 1.15 * g[1]) << "sign " << sign << ": arc vs line";
    EXPECT_GT(g[0], 1.15 * g[2]) << "sign " << sign << ": arc vs opposite arc";
  }
}

// Rotates a square image by 90 degrees about its centre pixel: (x, y) -> (c - (y - c), c + (x - c)), the
// direction in which orientations grow.
Image rotate90(const Image& img) {
  Image out(img.size());
  for (int y = 0; y < kSide; ++y) {
    for (int x = 0; x < kSide; ++x) {
      const int nx = static_cast<int>(kCentre - (y - kCentre)), ny = static_cast<int>(kCentre + (x - kCentre));
      out[static_cast<size_t>(ny * kSide + nx)] = img[static_cast<size_t>(y * kSide + x)];
    }
  }
  return out;
}

// Smoothed noise stimuli for the rotation test (unit SD, no structure at any particular angle).
std::vector<Image> noise_stimuli(int count) {
  sim::Rng rng(3, 0, sim::Stream::images, 0);
  std::vector<Image> out;
  for (int i = 0; i < count; ++i) {
    Image img(static_cast<size_t>(kSide * kSide)), smooth(img.size());
    for (auto& v : img) v = static_cast<float>(rng.normal());
    for (int y = 0; y < kSide; ++y) {
      for (int x = 0; x < kSide; ++x) {
        double s = 0;
        for (int dy = -1; dy <= 1; ++dy) {
          for (int dx = -1; dx <= 1; ++dx)
            s += img[static_cast<size_t>(((y + dy + kSide) % kSide) * kSide + (x + dx + kSide) % kSide)];
        }
        smooth[static_cast<size_t>(y * kSide + x)] = static_cast<float>(s / 3);
      }
    }
    out.push_back(smooth);
  }
  return out;
}

// Every type with each modulator: rotating the stimulus and the cell's theta by 90 degrees gives the same
// drive (relative coupling); an absolute-coupled modulator does not follow the rotation.
TEST(SimDeepCells, RotatingStimulusAndCellTogetherLeavesTheResponseUnchanged) {
  const double o = 2.5 * 3.125;
  std::vector<std::pair<std::string, sim::NeuronParameters>> cells;
  for (auto type : {sim::CellType::simple, sim::CellType::complex, sim::CellType::mixed, sim::CellType::corner,
                    sim::CellType::curvature}) {
    cells.push_back({sim::cell_type_name(type), deep_cell(type)});
  }
  sim::NeuronParameters p = deep_cell(sim::CellType::mixed);
  p.surround_suppression_weight = 1;
  p.surround_radius = o;
  p.surround_tuned = true;
  cells.push_back({"surround_tuned", p});
  p.surround_tuned = false;
  cells.push_back({"surround_untuned", p});
  p = deep_cell(sim::CellType::simple);
  p.cross_orientation_weight = 1;
  cells.push_back({"cross_orientation", p});
  p = deep_cell(sim::CellType::complex);
  p.stopping = sim::Stopping::end;
  p.stopping_side = 1;
  p.stopping_offset = o;
  p.stopping_weight = 1.5;
  cells.push_back({"end_stopping", p});
  p.stopping = sim::Stopping::side;
  cells.push_back({"side_stopping", p});
  p = deep_cell(sim::CellType::corner);
  p.corner_angle = 0.75 * kPi;
  p.arm_sign = -1;
  p.surround_suppression_weight = 1;
  p.surround_radius = o;
  cells.push_back({"corner 135 with surround", p});
  p = deep_cell(sim::CellType::curvature);
  p.curvature_sign = -1;
  cells.push_back({"curvature, other sign", p});

  // The stimuli and their three rotations, so both cells are calibrated on the same set of images.
  std::vector<Image> stimuli = noise_stimuli(6);
  stimuli.push_back(strokes({ray(0.3, 14), ray(0.3 + kPi / 2, 14)}));
  stimuli.push_back(arc(0.3, 7.8, 1, 1.2));
  const size_t m = stimuli.size();
  for (int k = 0; k < 3; ++k) {
    for (size_t i = 0; i < m; ++i) stimuli.push_back(rotate90(stimuli[k * m + i]));
  }
  for (auto& [name, cell] : cells) {
    sim::NeuronParameters turned = cell;
    turned.orientation += kPi / 2;
    turned.modulator_angle += kPi / 2;
    const auto a = deep_drives(cell, stimuli), b = deep_drives(turned, stimuli);
    const double scale = *std::max_element(a.begin(), a.end());
    double worst = 0;
    for (size_t i = 0; i < 3 * m; ++i) worst = std::max(worst, std::fabs(a[i] - b[i + m]) / scale);
    EXPECT_LT(worst, 2e-3) << name;
    // The rates follow (same calibration set, drives permuted).
    std::vector<sim::NeuronParameters> na{cell}, nb{turned};
    std::vector<float> fa(a.begin(), a.end()), fb(b.begin(), b.end());
    std::vector<int64_t> rows(stimuli.size());
    for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<int64_t>(i);
    const auto ra = sim::calibrate_rates(na, fa, static_cast<int64_t>(rows.size()), rows);
    const auto rb = sim::calibrate_rates(nb, fb, static_cast<int64_t>(rows.size()), rows);
    for (size_t i = 0; i < 3 * m; ++i) EXPECT_NEAR(ra[i], rb[i + m], 2e-2 * na[0].target_mean_rate) << name;
  }
  // The null: the end zone of an absolute-coupled cell stays on the image horizontal when the cell turns.
  sim::NeuronParameters fixed = deep_cell(sim::CellType::complex, 0.1);
  fixed.modulator_angle = 0;
  fixed.stopping = sim::Stopping::end;
  fixed.stopping_side = 1;
  fixed.stopping_offset = o;
  fixed.stopping_weight = 1.5;
  sim::NeuronParameters turned = fixed;
  turned.orientation += kPi / 2;
  const std::vector<Image> bars{strokes({bar(0.1, 3, 22)}), rotate90(strokes({bar(0.1, 3, 22)}))};
  const auto a = deep_drives(fixed, bars), b = deep_drives(turned, bars);
  EXPECT_GT(b[1], 1.25 * a[0]) << "an absolute end zone should not turn with the cell";
}

// ---- deep library: population, config and files -------------------------------------------------------------

std::string deep_library(const std::string& extra = "") { return "cell_library:\n  kind: deep\n" + extra; }

TEST(SimDeepConfig, DeepKeysAreCheckedAndTheResolvedYamlRoundTrips) {
  const std::string base = "n_neurons: 10\nn_train: 100\n";
  EXPECT_EQ(config_error(base + deep_library()), "");
  std::string e =
      config_error(base + "cell_types: {simple: 1.0, complex: 0.0, normalized_complex: 0.0, center_surround: 0.0}\n" +
                   deep_library());
  EXPECT_NE(e.find("cell_types: cell_types is the mix of the gabor library"), std::string::npos) << e;
  e = config_error(base + "cell_library: {deep_fraction: 0.5}\n");
  EXPECT_NE(e.find("cell_library.deep_fraction: this setting belongs to the deep library; set cell_library.kind: deep"),
            std::string::npos)
      << e;
  e = config_error(base + deep_library("  bases: {simple: 0.5, complex: 0.4, mixed: 0.3}\n"));
  EXPECT_NE(e.find("cell_library.bases: proportions of simple, complex and mixed must sum to 1"), std::string::npos)
      << e;
  e = config_error(base + deep_library("  animal_modes: [[surround], [corner]]\n"));
  EXPECT_NE(e.find("cell_library.animal_modes: expected one list of modes per animal (1), got 2"), std::string::npos)
      << e;
  e = config_error(base + deep_library("  animal_modes: [[surround, corners]]\n"));
  EXPECT_NE(e.find("unknown mode 'corners'"), std::string::npos) << e;
  e = config_error(base + deep_library("  orientation_coupling: sideways\n"));
  EXPECT_NE(e.find("cell_library.orientation_coupling"), std::string::npos) << e;
  e = config_error(base + deep_library("  surround: {probability: 1.5}\n"));
  EXPECT_NE(e.find("cell_library.surround.probability"), std::string::npos) << e;
  e = config_error(base + deep_library("  corner: {angles_deg: [90, 180]}\n"));
  EXPECT_NE(e.find("cell_library.corner.angles_deg"), std::string::npos) << e;
  e = config_error(base + deep_library("  stoping: {probability: 0.2}\n"));
  EXPECT_NE(e.find("cell_library.stoping: unknown key"), std::string::npos) << e;

  const sim::SimulationConfig c = sim::parse_simulation_config(
      "n_neurons: 5\nn_train: 100\nn_animals: 2\n" +
          deep_library(
              "  orientation_coupling: absolute\n  deep_fraction: 0.4\n  animal_modes: [[surround, corner], []]\n"),
      "c.yaml", "");
  const std::string yaml = c.to_yaml();
  EXPECT_EQ(yaml.find("cell_types"), std::string::npos) << yaml;
  const sim::SimulationConfig again = sim::parse_simulation_config(yaml, "stored", "");
  EXPECT_EQ(again.to_yaml(), yaml);
  EXPECT_EQ(again.cell_library.orientation_coupling, "absolute");
  EXPECT_TRUE(again.cell_library.allows(0, "corner"));
  EXPECT_FALSE(again.cell_library.allows(1, "corner"));
  // The gabor library writes no cell_library key, so the config stored in its files is unchanged.
  const sim::SimulationConfig g = sim::parse_simulation_config(base + "cell_library: {kind: gabor}\n", "g.yaml", "");
  EXPECT_EQ(g.to_yaml().find("cell_library"), std::string::npos);
  EXPECT_EQ(g.to_yaml(), sim::parse_simulation_config(base, "g.yaml", "").to_yaml());
}

sim::SimulationConfig population_config(const std::string& library, int n_neurons = 4000, int n_animals = 1) {
  return sim::parse_simulation_config("n_neurons: " + std::to_string(n_neurons) + "\nn_train: 100\nn_animals: " +
                                          std::to_string(n_animals) + "\nimage: {height: 36, width: 64}\n" + library,
                                      "pop.yaml", "");
}

TEST(SimDeepPopulation, TypesAndModulatorsComeInTheirConfiguredProportions) {
  const auto neurons = sim::draw_population(population_config(deep_library()), 0);
  std::map<std::string, int> types;
  int surround = 0, tuned = 0, cross = 0, stopped = 0, side = 0, both = 0;
  std::set<double> alphas;
  for (const auto& p : neurons) {
    ASSERT_TRUE(p.deep);
    types[sim::cell_type_name(p.type)]++;
    EXPECT_GE(p.orientation, 0);
    EXPECT_LT(p.orientation, kPi);
    EXPECT_EQ(p.modulator_angle, p.orientation);
    surround += p.surround_suppression_weight > 0;
    tuned += p.surround_suppression_weight > 0 && p.surround_tuned;
    cross += p.cross_orientation_weight > 0;
    stopped += p.stopping != sim::Stopping::none;
    side += p.stopping == sim::Stopping::side;
    both += p.stopping != sim::Stopping::none && p.stopping_side == 0;
    if (p.surround_suppression_weight > 0) {
      EXPECT_GE(p.surround_radius, 2 * p.sigma / p.aspect_ratio - 1e-9);
      EXPECT_LE(p.surround_radius, 3 * p.sigma / p.aspect_ratio + 1e-9);
    }
    if (p.type == sim::CellType::corner) alphas.insert(std::round(p.corner_angle * 180 / kPi));
    if (p.type == sim::CellType::mixed) {
      EXPECT_GE(p.energy_weight, 0.2);
      EXPECT_LE(p.energy_weight, 0.8);
    }
  }
  // Counts are exact (largest remainder): 0.3 x 4000 conjunctions, 0.7 x 4000 x bases.
  EXPECT_EQ(types["corner"], 600);
  EXPECT_EQ(types["curvature"], 600);
  EXPECT_EQ(types["simple"], 840);
  EXPECT_EQ(types["complex"], 1120);
  EXPECT_EQ(types["mixed"], 840);
  EXPECT_EQ(alphas, (std::set<double>{45, 90, 135}));
  // Bernoulli draws: within 4 binomial SDs of the configured probabilities.
  auto near = [](int count, int n, double p) { return std::fabs(count - n * p) < 4 * std::sqrt(n * p * (1 - p)); };
  EXPECT_TRUE(near(surround, 4000, 0.5)) << surround;
  EXPECT_TRUE(near(tuned, surround, 0.5)) << tuned;
  EXPECT_TRUE(near(cross, 4000, 0.3)) << cross;
  EXPECT_TRUE(near(stopped, 4000, 0.17)) << stopped;
  EXPECT_TRUE(near(side, stopped, 0.3)) << side;
  EXPECT_TRUE(near(both, stopped, 0.5)) << both;
  // Modulators are drawn independently of each other: P(surround and cross) ~ P(surround) P(cross).
  int joint = 0;
  for (const auto& p : neurons) joint += p.surround_suppression_weight > 0 && p.cross_orientation_weight > 0;
  EXPECT_TRUE(near(joint, 4000, 0.15)) << joint;
}

TEST(SimDeepPopulation, AbsoluteCouplingTiesModulatorsToTheImageHorizontal) {
  const auto neurons = sim::draw_population(population_config(deep_library("  orientation_coupling: absolute\n")), 0);
  int surround = 0, stopped = 0, cross = 0;
  for (const auto& p : neurons) {
    EXPECT_EQ(p.modulator_angle, 0.0);
    const bool conjunction = p.type == sim::CellType::corner || p.type == sim::CellType::curvature;
    if (conjunction) EXPECT_EQ(p.orientation, 0.0);
    // Only within (pi / 2) max(1/4, p) of horizontal: surround (p 0.5) pi / 4, cross-orientation (0.3)
    // 0.15 pi, stopping (0.17) pi / 8.
    const double d = std::min(p.orientation, kPi - p.orientation);
    if (!conjunction && p.surround_suppression_weight > 0) EXPECT_LT(d, kPi / 4 + 1e-12);
    if (!conjunction && p.cross_orientation_weight > 0) EXPECT_LT(d, 0.15 * kPi + 1e-12);
    if (!conjunction && p.stopping != sim::Stopping::none) EXPECT_LT(d, kPi / 8 + 1e-12);
    surround += p.surround_suppression_weight > 0;
    stopped += p.stopping != sim::Stopping::none;
    cross += p.cross_orientation_weight > 0;
  }
  auto near = [](int count, int n, double p) { return std::fabs(count - n * p) < 4 * std::sqrt(n * p * (1 - p)); };
  EXPECT_TRUE(near(surround, 4000, 0.5)) << surround;
  EXPECT_TRUE(near(stopped, 4000, 0.17)) << stopped;
  EXPECT_TRUE(near(cross, 4000, 0.3)) << cross;
}

TEST(SimDeepPopulation, AnimalModesRemoveModesFromAnAnimal) {
  const auto config = population_config(
      deep_library(
          "  animal_modes: [[surround, end_stopping, corner], [cross_orientation, side_stopping, curvature], []]\n"),
      2000, 3);
  std::vector<std::map<std::string, int>> seen(3);
  for (uint64_t a = 0; a < 3; ++a) {
    for (const auto& p : sim::draw_population(config, a)) {
      auto& s = seen[a];
      s[sim::cell_type_name(p.type)]++;
      s["surround"] += p.surround_suppression_weight > 0;
      s["cross_orientation"] += p.cross_orientation_weight > 0;
      s["end_stopping"] += p.stopping == sim::Stopping::end;
      s["side_stopping"] += p.stopping == sim::Stopping::side;
    }
  }
  EXPECT_EQ(seen[0]["corner"], 600);  // all of deep_fraction goes to the allowed conjunction
  EXPECT_EQ(seen[0]["curvature"], 0);
  EXPECT_GT(seen[0]["surround"], 0);
  EXPECT_GT(seen[0]["end_stopping"], 0);
  EXPECT_EQ(seen[0]["cross_orientation"] + seen[0]["side_stopping"], 0);
  EXPECT_EQ(seen[1]["curvature"], 600);
  EXPECT_EQ(seen[1]["corner"], 0);
  EXPECT_EQ(seen[1]["surround"] + seen[1]["end_stopping"], 0);
  EXPECT_GT(seen[1]["cross_orientation"], 0);
  EXPECT_GT(seen[1]["side_stopping"], 0);
  EXPECT_EQ(seen[2]["corner"] + seen[2]["curvature"], 0);  // no conjunction allowed: no conjunction cells
  EXPECT_EQ(seen[2]["surround"] + seen[2]["cross_orientation"] + seen[2]["end_stopping"] + seen[2]["side_stopping"], 0);
}

std::string file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

TEST_F(SimTest, DeepLibrarySimulatesReproduciblyAndRecordsItsGroundTruth) {
  std::string text = tiny_config();
  text.erase(text.find("cell_types:"));  // the gabor mix
  text +=
      deep_library("  animal_modes: [[surround, cross_orientation, end_stopping, side_stopping, corner, curvature]]\n");
  const std::string cfg = write_config("deep.yaml", text);
  std::filesystem::create_directories(*dir / "deep1");
  std::filesystem::create_directories(*dir / "deep2");
  for (const char* sub : {"deep1", "deep2"}) {
    const auto r = run_v1sysid("simulate " + cfg + " --out " + (*dir / sub) + "/deep.h5 --force");
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  const std::string a = file_bytes(*dir / "deep1/deep.h5");
  ASSERT_GT(a.size(), 10000u);
  EXPECT_TRUE(a == file_bytes(*dir / "deep2/deep.h5")) << "same config and seed, different bytes";

  h5::File f = h5::File::open(*dir / "deep1/deep.h5");
  const int n = 40;
  EXPECT_EQ(f.read_attribute_string("gt", "cell_library"), "deep");
  EXPECT_EQ(f.read_attribute_string("gt", "orientation_coupling"), "relative");
  const auto types = f.read_strings("gt/cell_type");
  const auto modulators = f.read_strings("gt/modulators");
  const auto stopping = f.read_strings("gt/stopping");
  const auto weight_s = f.read<double>("gt/surround_suppression_weight");
  const auto radius_s = f.read<double>("gt/surround_radius_px");
  const auto alpha = f.read<double>("gt/corner_angle");
  const auto curvature = f.read<double>("gt/curvature_radius_px");
  const auto energy = f.read<double>("gt/energy_weight");
  const auto semi = f.read<double>("gt/semi_saturation");
  const auto orientation = f.read<float>("gt/orientation");
  const auto phase = f.read<double>("gt/phase");
  ASSERT_EQ(static_cast<int>(types.size()), n);
  std::map<std::string, int> count;
  for (int j = 0; j < n; ++j) {
    const size_t k = static_cast<size_t>(j);
    count[types[k]]++;
    EXPECT_TRUE(orientation[k] >= 0 && orientation[k] < kPi);
    EXPECT_GT(semi[k], 0);
    EXPECT_EQ(weight_s[k] > 0, !std::isnan(radius_s[k])) << j;
    EXPECT_EQ(weight_s[k] > 0, modulators[k].find("surround") != std::string::npos) << j;
    EXPECT_EQ(stopping[k] != "none", modulators[k].find("stopping") != std::string::npos) << j;
    EXPECT_EQ(types[k] == "corner", !std::isnan(alpha[k])) << j;
    EXPECT_EQ(types[k] == "curvature", !std::isnan(curvature[k])) << j;
    EXPECT_EQ(types[k] == "corner" || types[k] == "curvature", std::isnan(energy[k])) << j;
    EXPECT_EQ(types[k] == "simple" || types[k] == "mixed", !std::isnan(phase[k])) << j;
  }
  EXPECT_EQ(count["corner"] + count["curvature"], 12);  // 0.3 x 40
  // The file holds what the simulator computed in memory.
  const auto ids = f.read<int64_t>("gt/test_image_ids");
  const auto rates = f.read<float>("gt/test_rates");
  const sim::StimulusSet s = sim::read_stimuli(*dir / "stimuli.h5");
  const sim::SimulationConfig c = sim::parse_simulation_config(text, "deep.yaml", dir->path.string());
  const sim::SimulatedDataset sd = sim::simulate_animal(c, s, 0);
  for (int j = 0; j < n; ++j) {
    const auto& p = sd.neurons[static_cast<size_t>(j)];
    EXPECT_DOUBLE_EQ(p.surround_suppression_weight, weight_s[static_cast<size_t>(j)]);
  }
  EXPECT_EQ(sd.data.ground_truth->test_rates, rates);
  EXPECT_EQ(sd.data.ground_truth->test_image_ids, ids);
}

// Computed by main's v1sysid (built before the deep library existed) on this test's stimuli and config.
constexpr double kPinnedTotalResponse = 8267;
constexpr double kPinnedRateSum = 395.439878247;

TEST_F(SimTest, TheDefaultGaborPopulationIsUnchanged) {
  // The default population and an explicit `cell_library: {kind: gabor}` give the same file, whose responses
  // and noise-free rates are those of the simulator before the deep library existed.
  const std::string plain = write_config("gabor_default.yaml", tiny_config());
  const std::string named = write_config("gabor_named.yaml", tiny_config("cell_library: {kind: gabor}\n"));
  std::filesystem::create_directories(*dir / "g1");
  std::filesystem::create_directories(*dir / "g2");
  auto r = run_v1sysid("simulate " + plain + " --out " + (*dir / "g1/gabor.h5") + " --force");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_v1sysid("simulate " + named + " --out " + (*dir / "g2/gabor.h5") + " --force");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(file_bytes(*dir / "g1/gabor.h5") == file_bytes(*dir / "g2/gabor.h5"));
  h5::File f = h5::File::open(*dir / "g1/gabor.h5");
  EXPECT_FALSE(f.exists("gt/modulators"));
  EXPECT_EQ(f.read_attribute_string("/", "config").find("cell_library"), std::string::npos);
  const auto responses = f.read<double>("responses");
  const auto rates = f.read<double>("gt/test_rates");
  double total = 0, rate_sum = 0;
  for (double v : responses) total += v;
  for (double v : rates) rate_sum += v;
  std::cout << std::setprecision(12) << "[gabor pin] total response " << total << ", sum of test rates " << rate_sum
            << "\n";
  EXPECT_EQ(total, kPinnedTotalResponse);
  EXPECT_NEAR(rate_sum, kPinnedRateSum, 1e-6 * kPinnedRateSum);
}


// ---- per-neuron noise: gain factors, private gains, behaviour (noise.hpp) -------------------------------------

// Mean and variance of a sample with the standard errors of both; the SE of the variance comes from the sample's
// own fourth central moment, sqrt((m4 - var^2) / T), so it holds for the heavy-tailed gains and responses too.
struct SampleMoments {
  double mean = 0, mean_se = 0, var = 0, var_se = 0;
};
SampleMoments sample_moments(const std::vector<double>& x) {
  const double T = static_cast<double>(x.size());
  SampleMoments m;
  for (double v : x) m.mean += v;
  m.mean /= T;
  double m2 = 0, m4 = 0;
  for (double v : x) {
    const double d = (v - m.mean) * (v - m.mean);
    m2 += d;
    m4 += d * d;
  }
  m2 /= T;
  m4 /= T;
  m.var = m2 * T / (T - 1);
  m.mean_se = std::sqrt(m2 / T);
  m.var_se = std::sqrt(std::max(0.0, m4 - m2 * m2) / T);
  return m;
}

TEST(SimNoise, FactorGainsHaveMeanOneAndTheirAnalyticSecondMoment) {
  // g = exp(s w.z - s^2 |w|^2 / 2) over 20,000 standard normal latents: E[g] = 1, E[g^2] = exp(s^2 |w|^2).
  // Tolerance 5 standard errors of the sample (at s |w| = 0.8 the relative SE of the mean is ~0.6 %).
  const int T = 20000;
  sim::Rng rng(3, 0, sim::Stream::trial, 0);
  std::vector<std::array<double, 2>> z(T);
  for (auto& v : z) v = {rng.normal(), rng.normal()};
  for (const std::array<double, 2> w : {std::array<double, 2>{1, 0}, {0.6, -0.8}, {1.2, 1.6}}) {
    for (double s : {0.3, 0.4, 0.5}) {
      std::vector<double> g, g2;
      for (const auto& zt : z) {
        g.push_back(sim::factor_gain(s, w.data(), zt.data(), 2));
        g2.push_back(g.back() * g.back());
      }
      const SampleMoments a = sample_moments(g), b = sample_moments(g2);
      const double w2 = w[0] * w[0] + w[1] * w[1];
      EXPECT_NEAR(a.mean, 1.0, 5 * a.mean_se) << "s " << s << " |w|^2 " << w2;
      EXPECT_NEAR(b.mean, std::exp(s * s * w2), 5 * b.mean_se) << "s " << s << " |w|^2 " << w2;
    }
  }
  // Unit loadings from draw_neuron_noise: every neuron's gain then has log-SD s.
  sim::NeuronNoiseDistribution d;
  d.gain_factors = 3;
  d.loading_mean = {1, 0, 0};
  d.loading_sd = 0.5;
  for (uint64_t j = 0; j < 50; ++j) {
    const sim::NeuronNoise nn = sim::draw_neuron_noise(d, 1, 0, j);
    ASSERT_EQ(nn.loadings.size(), 3u);
    double w2 = 0;
    for (double w : nn.loadings) w2 += w * w;
    EXPECT_NEAR(w2, 1.0, 1e-12);
    EXPECT_EQ(nn.private_gain_variance, 0.0);
  }
}

TEST(SimNoise, PerNeuronTrialVarianceMatchesMonteCarloForEveryModel) {
  // 20,000 trials of 6 neurons with a fixed rate each, through simulate_trial with 2 gain factors (s 0.4) and
  // private gains: per neuron the sample mean is lambda and the sample variance V(lambda) with the neuron's
  // M_j = e^{s^2 |w_j|^2} (1 + v_j), within 5 standard errors. At T = 20,000 the SE of a variance is 1-5 % of it,
  // so a missing term (e.g. the private variance v_j = 0.5, or the gain part e^{0.16} - 1 = 17 % of M_j) shows.
  const int T = 20000;
  const std::vector<float> rates{0.2f, 0.5f, 1.0f, 2.0f, 4.0f, 1.5f};
  const int64_t n = static_cast<int64_t>(rates.size());
  std::vector<sim::NeuronNoise> neurons(rates.size());
  const double v[] = {0.0, 0.05, 0.5, 2.0, 0.2, 1.0};
  // Unit loadings as draw_neuron_noise makes them, and two others (|w|^2 = 2.25 and 0.25) so that M_j's |w_j|^2 shows.
  const std::array<double, 2> w[] = {{1, 0}, {0.6, 0.8}, {0.8, -0.6}, {1.2, 0.9}, {-1, 0}, {0.3, 0.4}};
  for (size_t j = 0; j < neurons.size(); ++j) {
    neurons[j].loadings = {w[j][0], w[j][1]};
    neurons[j].private_gain_variance = v[j];
  }
  struct Case {
    const char* name;
    sim::NoiseModel model;
    int factors;
    bool private_gain;
  };
  for (const Case& c : {Case{"poisson", sim::NoiseModel::poisson, 2, true},
                        Case{"negative_binomial r=3", sim::NoiseModel::negative_binomial, 2, true},
                        Case{"zero_inflated_gamma p0=0.3 k=2", sim::NoiseModel::zero_inflated_gamma, 2, true},
                        Case{"poisson, private gains only", sim::NoiseModel::poisson, 0, true},
                        Case{"zero_inflated_gamma, gain factors only", sim::NoiseModel::zero_inflated_gamma, 2, false}}) {
    sim::NoiseParameters p;
    p.model = c.model;
    p.nb_r = 3;
    p.gain_factors = c.factors;
    p.gain_log_sd = c.factors > 0 ? 0.4 : 0.0;
    p.private_gain = c.private_gain;
    std::vector<sim::NeuronNoise> nn = neurons;
    if (c.factors == 0) {
      for (auto& x : nn) x.loadings.clear();
    }
    std::vector<float> r(static_cast<size_t>(T * n)), z(2);
    for (int t = 0; t < T; ++t) {
      sim::simulate_trial(p, nn, 11, 0, static_cast<uint64_t>(t), rates.data(), n, r.data() + static_cast<size_t>(t * n),
                          z.data());
    }
    for (int64_t j = 0; j < n; ++j) {
      std::vector<double> x(static_cast<size_t>(T));
      for (int t = 0; t < T; ++t) x[static_cast<size_t>(t)] = r[static_cast<size_t>(t * n + j)];
      const SampleMoments m = sample_moments(x);
      const double M = sim::gain_second_moment(p, &nn[static_cast<size_t>(j)]);
      const double V = sim::trial_variance(p, rates[static_cast<size_t>(j)], M);
      EXPECT_NEAR(m.mean, rates[static_cast<size_t>(j)], 5 * m.mean_se) << c.name << ", neuron " << j;
      EXPECT_NEAR(m.var, V, 5 * m.var_se) << c.name << ", neuron " << j << " (M " << M << ")";
    }
  }
  // Without the per-neuron parts, M is the legacy shared gain's e^{s^2}.
  sim::NoiseParameters legacy;
  legacy.shared_gain_sd = 0.5;
  EXPECT_DOUBLE_EQ(sim::gain_second_moment(legacy, nullptr), std::exp(0.25));
  EXPECT_DOUBLE_EQ(sim::trial_variance(legacy, 2.0), sim::trial_variance(legacy, 2.0, std::exp(0.25)));
}

TEST(SimNoise, NoiseKeysAreCheckedAndTheResolvedYamlRoundTrips) {
  const std::string base = "stimuli: s.h5\nn_neurons: 5\nn_train: 10\n";
  EXPECT_NE(config_error(base + "noise: {shared_gain_sd: 0.3, gain_factors: {count: 2}}\n").find("shared_gain_sd"),
            std::string::npos);
  EXPECT_NE(config_error(base + "noise: {gain_factors: {count: 2, loading_mean: [1]}}\n").find("loading_mean"),
            std::string::npos);
  EXPECT_NE(config_error(base + "noise: {gain_factors: {log_sd: 0.4}}\n").find("count"), std::string::npos);
  EXPECT_NE(config_error(base + "noise: {gain_factors: {count: 9}}\n").find("count"), std::string::npos);
  EXPECT_NE(config_error(base + "noise: {private_gain: {variance_median: -1}}\n").find("variance_median"),
            std::string::npos);
  EXPECT_NE(config_error(base + "noise: {private_gain: {median: 1}}\n").find("median"), std::string::npos);
  const sim::SimulationConfig c = sim::parse_simulation_config(
      base + "noise: {gain_factors: {count: 2, log_sd: 0.35}, private_gain: {variance_median: 0.2, variance_log_sd: 2.4}}\n",
      "c.yaml", "");
  EXPECT_EQ(c.noise.gain_factors.loading_mean, (std::vector<double>{1.0, 0.0}));
  const sim::SimulationConfig again = sim::parse_simulation_config(c.to_yaml(), "again.yaml", "");
  EXPECT_EQ(again.to_yaml(), c.to_yaml());
  EXPECT_EQ(again.noise.gain_factors.count, 2);
  EXPECT_DOUBLE_EQ(again.noise.gain_factors.log_sd, 0.35);
  EXPECT_TRUE(again.noise.private_gain.enabled);
  EXPECT_DOUBLE_EQ(again.noise.private_gain.variance_log_sd, 2.4);
  // Without them the resolved config names neither (files of legacy configs keep their bytes).
  const std::string legacy = sim::parse_simulation_config(base, "l.yaml", "").to_yaml();
  EXPECT_EQ(legacy.find("gain_factors"), std::string::npos);
  EXPECT_EQ(legacy.find("private_gain"), std::string::npos);
}

TEST_F(SimTest, BehaviourHoldsTheLatentsThatDroveEachTrialsGains) {
  // Re-simulates every test trial of the written file from its stored latents, loadings, private variances
  // and noise-free rates, with the trial's own generator: the responses must come out bit for bit.
  const std::string noise =
      "noise: {model: poisson, gain_factors: {count: 2, log_sd: 0.4}, "
      "private_gain: {variance_median: 0.2, variance_log_sd: 2.4}}\n";
  const std::string cfg = write_config("behavior.yaml", tiny_config(noise));
  const std::string h5_out = *dir / "behavior.h5", tree_out = *dir / "behavior_tree";
  auto r = run_v1sysid("simulate " + cfg + " --out " + h5_out + " --force");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_v1sysid("simulate " + cfg + " --out " + tree_out + " --format filetree --force");
  ASSERT_EQ(r.exit_code, 0) << r.output;

  h5::File f = h5::File::open(h5_out);
  const auto behavior = f.read<float>("behavior");
  const auto loadings = f.read<double>("gt/gain_loadings");
  const auto variance = f.read<double>("gt/private_gain_variance");
  const auto second = f.read<double>("gt/gain_second_moment");
  const auto responses = f.read<float>("responses");
  const auto rates = f.read<float>("gt/test_rates");
  const auto test_ids = f.read<int64_t>("gt/test_image_ids");
  const auto image_ids = f.read<int64_t>("item_info/frame_image_id");
  const auto tiers = f.read_strings("tiers");
  const auto fev = f.read<float>("gt/fev");
  const double s = f.read_attribute_double("gt", "gain_log_sd");
  EXPECT_EQ(f.read_attribute_int("gt", "gain_factors"), 2);
  EXPECT_NE(f.read_attribute_string("behavior", "description").find("latent factors"), std::string::npos);
  const int64_t n = 40, N = 300 + 30 + 30 * 10, m = 30;
  ASSERT_EQ(static_cast<int64_t>(behavior.size()), N * 2);
  ASSERT_EQ(static_cast<int64_t>(loadings.size()), n * 2);

  sim::NoiseParameters p;
  p.gain_factors = 2;
  p.gain_log_sd = s;
  p.private_gain = true;
  int checked = 0;
  for (int64_t t = 0; t < N; ++t) {
    if (tiers[static_cast<size_t>(t)] != "test") continue;
    const int64_t image = std::find(test_ids.begin(), test_ids.end(), image_ids[static_cast<size_t>(t)]) - test_ids.begin();
    ASSERT_LT(image, m);
    sim::Rng rng(7, 0, sim::Stream::trial, static_cast<uint64_t>(t));
    const double z[2] = {rng.normal(), rng.normal()};
    ASSERT_EQ(behavior[static_cast<size_t>(2 * t)], static_cast<float>(z[0])) << "trial " << t;
    ASSERT_EQ(behavior[static_cast<size_t>(2 * t + 1)], static_cast<float>(z[1])) << "trial " << t;
    const double stored[2] = {behavior[static_cast<size_t>(2 * t)], behavior[static_cast<size_t>(2 * t + 1)]};
    for (int64_t j = 0; j < n; ++j) {
      const double* w = loadings.data() + 2 * j;
      const double g = sim::factor_gain(s, w, z, 2);
      // The gain from the stored (float32) latents is the same gain to float precision.
      EXPECT_NEAR(sim::factor_gain(s, w, stored, 2), g, 1e-6 * g);
      double q = g;
      const double v = variance[static_cast<size_t>(j)];
      if (v > 0) q *= rng.gamma(1.0 / v) * v;
      const double lambda = rates[static_cast<size_t>(image * n + j)];
      ASSERT_EQ(static_cast<float>(sim::draw_response(p, q * lambda, rng)), responses[static_cast<size_t>(t * n + j)])
          << "trial " << t << ", neuron " << j;
    }
    ++checked;
  }
  EXPECT_EQ(checked, 300);
  // gt records M_j and the ceilings use it.
  for (int64_t j = 0; j < n; ++j) {
    const double w2 = loadings[static_cast<size_t>(2 * j)] * loadings[static_cast<size_t>(2 * j)] +
                      loadings[static_cast<size_t>(2 * j + 1)] * loadings[static_cast<size_t>(2 * j + 1)];
    EXPECT_NEAR(second[static_cast<size_t>(j)], std::exp(s * s * w2) * (1 + variance[static_cast<size_t>(j)]), 1e-12);
    std::vector<double> lambda(static_cast<size_t>(m));
    for (int64_t i = 0; i < m; ++i) lambda[static_cast<size_t>(i)] = rates[static_cast<size_t>(i * n + j)];
    EXPECT_FLOAT_EQ(fev[static_cast<size_t>(j)],
                    static_cast<float>(sim::analytic_ceiling(p, lambda.data(), m, 10, second[static_cast<size_t>(j)]).fev));
  }

  // The FileTree layout keeps behaviour per trial as data/behavior/<t>.npy, the same values.
  for (int64_t t : {int64_t{0}, N / 2, N - 1}) {
    const auto row = v1sysid::npy::read(tree_out + "/data/behavior/" + std::to_string(t) + ".npy").values<float>();
    ASSERT_EQ(row.size(), 2u);
    EXPECT_EQ(row[0], behavior[static_cast<size_t>(2 * t)]);
    EXPECT_EQ(row[1], behavior[static_cast<size_t>(2 * t + 1)]);
  }
  // Both layouts still load as datasets, and `info` reads them.
  const v1sysid::Dataset a = v1sysid::load_dataset(h5_out), b = v1sysid::load_dataset(tree_out);
  EXPECT_EQ(a.responses, b.responses);
  for (const std::string& path : {h5_out, tree_out}) {
    r = run_v1sysid("info " + path);
    EXPECT_EQ(r.exit_code, 0) << r.output;
  }
}

TEST_F(SimTest, PerNeuronNoiseGivesByteIdenticalFilesForTheSameSeed) {
  const std::string noise =
      "noise: {model: zero_inflated_gamma, gain_factors: {count: 3, log_sd: 0.5}, private_gain: {}}\n";
  const std::string cfg = write_config("pn.yaml", tiny_config(noise));
  std::filesystem::create_directories(*dir / "pn1");
  std::filesystem::create_directories(*dir / "pn2");
  for (const char* sub : {"pn1", "pn2"}) {
    const auto r = run_v1sysid("simulate " + cfg + " --out " + (*dir / sub) + "/pn.h5 --force");
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  const std::string a = file_bytes(*dir / "pn1/pn.h5");
  ASSERT_GT(a.size(), 10000u);
  EXPECT_TRUE(a == file_bytes(*dir / "pn2/pn.h5")) << "same config and seed, different bytes";
}

// Sum of the responses and gt/fev of files written by main's v1sysid (4fc4f99, before the per-neuron noise existed;
// byte-identical to this branch's files, checked with cmp) on this test's stimuli and config, with the
// legacy noise settings below: their files must not change.
constexpr double kPinnedLegacyNoiseTotals[] = {8260.3228772208095, 8210.1025417298079, 8088.7488859601872};

TEST_F(SimTest, LegacyNoiseSettingsAreUnchanged) {
  const char* noises[] = {"noise: {model: poisson, shared_gain_sd: 0.3}\n",
                          "noise: {model: negative_binomial, nb_r: 2.5, shared_gain_sd: 0.5}\n",
                          "noise: {model: zero_inflated_gamma, zig: {zero_probability: 0.4, shape: 1.5}}\n"};
  for (int k = 0; k < 3; ++k) {
    const std::string cfg = write_config("legacy" + std::to_string(k) + ".yaml", tiny_config(noises[k]));
    const std::string out = *dir / ("legacy" + std::to_string(k) + ".h5");
    const auto r = run_v1sysid("simulate " + cfg + " --out " + out + " --force");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    h5::File f = h5::File::open(out);
    EXPECT_FALSE(f.exists("behavior"));
    EXPECT_FALSE(f.exists("gt/gain_loadings"));
    double total = 0;
    for (double v : f.read<double>("responses")) total += v;
    for (double v : f.read<double>("gt/fev")) total += v;
    std::cout << std::setprecision(17) << "[legacy noise pin " << k << "] " << total << "\n";
    EXPECT_EQ(total, kPinnedLegacyNoiseTotals[k]) << noises[k];
  }
}

// The FEV calibration on the tiny preset (issue 17): data/tiny.yaml (the library and calibrated noise of
// data/demo.yaml, docs/sim-calibration.md) with 300 neurons instead of 60, on photographs, 800 training images
// and the 100 test images (FEV is analytic, so 2 repeats suffice). 60 neurons are too few: the fraction below
// 0.05 would have a binomial SE of ~5 %. Two seeds:
//  - 7, the development seed the noise was calibrated on: the calibration targets, single-trial FEV median
//    0.15-0.2 and 10-20 % of neurons below 0.05 (with 300 neurons the fraction's SE is ~2 %, hence 6-24 %);
//  - tiny.yaml's own seed 1, never used for calibration: the issue's done-when band, median 0.1-0.3, and
//    5-25 % below 0.05 (the 10-20 % target widened by ~2.5 SE). Its values are measured, not tuned: they
//    follow from the population and noise drawn for that seed.
TEST(SimCalibration, TheTinyPresetHasTheCalibratedFevDistribution) {
  for (const auto& photo : sim::curated_photos()) {
    const auto file = std::filesystem::path(sim::default_photo_cache()) / photo.package / photo.relative_path;
    ASSERT_TRUE(std::filesystem::is_regular_file(file))
        << "the photo cache is missing or incomplete (" << file.string() << "): run env/fetch-photos.sh "
        << "(as root, or with V1SYSID_PHOTO_CACHE set to a writable folder) before this test";
  }
  ScratchDir dir;
  auto r = run_v1sysid("images --out " + (dir / "stimuli.h5") + " --count 1000 --test-count 100");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream in(v1sysid::testing::source_dir() + "/data/tiny.yaml");
  const std::string preset((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_NE(preset.find("private_gain"), std::string::npos) << "data/tiny.yaml lost the calibrated noise";
  ASSERT_NE(preset.find("kind: deep"), std::string::npos) << "data/tiny.yaml lost the deep library";
  struct Case {
    const char* seed;
    double median_lo, median_hi, below_lo, below_hi;
  };
  for (const Case& c : {Case{"7", 0.15, 0.20, 0.06, 0.24}, Case{"1", 0.10, 0.30, 0.05, 0.25}}) {
    SCOPED_TRACE(std::string("seed ") + c.seed);
    std::string text = preset;
    auto set = [&](const std::string& key, const std::string& value) {
      const size_t at = text.find("\n" + key + ": ");
      ASSERT_NE(at, std::string::npos) << key;
      text.replace(at + 1, text.find('\n', at + 1) - at - 1, key + ": " + value);
    };
    set("stimuli", "stimuli.h5");
    set("seed", c.seed);
    set("n_neurons", "300");
    set("n_train", "800");
    set("n_validation", "0");
    set("n_test_images", "100");
    set("test_repeats", "2");
    std::ofstream(dir / "calibration.yaml") << text;
    r = run_v1sysid("simulate " + (dir / "calibration.yaml") + " --out " + (dir / "calibration.h5") + " --force");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto fev = h5::File::open(dir / "calibration.h5").read<double>("gt/fev");
    ASSERT_EQ(fev.size(), 300u);
    const double below = static_cast<double>(std::count_if(fev.begin(), fev.end(), [](double v) { return v < 0.05; })) /
                         static_cast<double>(fev.size());
    std::sort(fev.begin(), fev.end());
    const double median = 0.5 * (fev[149] + fev[150]);
    std::cout << "[calibration, tiny.yaml with 300 neurons, seed " << c.seed << "] FEV median " << median
              << ", fraction below 0.05 " << below << ", 95th percentile " << fev[284] << ", max " << fev.back()
              << "\n";
    EXPECT_GE(median, c.median_lo);
    EXPECT_LE(median, c.median_hi);
    EXPECT_GE(below, c.below_lo);
    EXPECT_LE(below, c.below_hi);
  }
}

}  // namespace

// The replication's populations (docs/replication/protocol.md, section 2) must be data/demo.yaml up to the keys
// the protocol names, so that a later edit of demo.yaml, or of one of them, cannot make the arms drift apart.
TEST(ReplicationPresets, DifferFromTheDemoPresetOnlyInTheKeysTheProtocolNames) {
  const std::string root = v1sysid::testing::source_dir() + "/data/";
  const sim::SimulationConfig demo = sim::load_simulation_config(root + "demo.yaml");
  // Resets the keys the protocol allows to differ to demo.yaml's values and returns the variant's own values of
  // them, so that the rest can be compared as a whole.
  auto normalised = [&](sim::SimulationConfig c) {
    c.stimuli = demo.stimuli;
    c.height = demo.height;
    c.width = demo.width;
    c.cell_library.deep_fraction = demo.cell_library.deep_fraction;
    c.cell_library.orientation_coupling = demo.cell_library.orientation_coupling;
    c.cell_library.animal_modes = demo.cell_library.animal_modes;
    c.n_animals = demo.n_animals;
    c.n_neurons = demo.n_neurons;
    c.n_neurons_by_animal = demo.n_neurons_by_animal;
    c.n_train = demo.n_train;
    c.n_validation = demo.n_validation;
    return c.to_yaml();
  };
  const std::string expected = demo.to_yaml();
  for (const char* name : {"main", "deep0", "absolute", "transfer"}) {
    SCOPED_TRACE(name);
    const sim::SimulationConfig c = sim::load_simulation_config(root + "replication/" + name + ".yaml");
    EXPECT_EQ(normalised(c), expected);
    EXPECT_EQ(c.height, 24);
    EXPECT_EQ(c.width, 40);
    const std::string arm = name;
    EXPECT_DOUBLE_EQ(c.cell_library.deep_fraction, arm == "deep0" ? 0.0 : demo.cell_library.deep_fraction);
    EXPECT_EQ(c.cell_library.orientation_coupling, arm == "absolute" ? "absolute" : "relative");
    EXPECT_EQ(c.n_animals, arm == "transfer" ? 9 : 1);
    if (arm != "transfer") {
      EXPECT_EQ(c.n_neurons, demo.n_neurons);
      EXPECT_EQ(c.n_train, demo.n_train);
      EXPECT_EQ(c.n_validation, demo.n_validation);
      EXPECT_TRUE(c.cell_library.animal_modes.empty());
    }
  }
  // The transfer population: the matched core animals and the target share modes, the disjoint ones share none.
  const sim::SimulationConfig t = sim::load_simulation_config(root + "replication/transfer.yaml");
  ASSERT_EQ(t.cell_library.animal_modes.size(), 9u);
  for (int a = 0; a < 9; ++a) {
    EXPECT_EQ(t.neurons_of(a), a == 8 ? 500 : 1000);
    for (const std::string& mode : t.cell_library.animal_modes[static_cast<size_t>(a)]) {
      const bool in_target = t.cell_library.allows(8, mode);
      EXPECT_EQ(in_target, a < 4 || a == 8) << "animal " << a + 1 << ", mode " << mode;
    }
  }
}
