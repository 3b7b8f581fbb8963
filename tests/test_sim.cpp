// Digital V1 (src/sim/): samplers, analytic ceilings against Monte Carlo, config errors, the written file.
// Stimuli are smoothed random fields written by the test in the layout of `v1sysid images`.
#include "config/config_reader.hpp"
#include "data/dataset.hpp"
#include "metrics/metrics.hpp"
#include "core/progress.hpp"
#include "io/h5.hpp"
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
#include <cmath>
#include <cstring>
#include <fstream>
#include <iostream>
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
                            int groups) {
  const int draws = R * groups;
  std::vector<float> r(static_cast<size_t>(draws * m * n));
  for (int d = 0; d < draws; ++d) {
    for (int64_t i = 0; i < m; ++i) {
      sim::simulate_trial(p, 7, 0, 1000000000ULL + static_cast<uint64_t>(d * m + i), rates.data() + i * n, n,
                          r.data() + (static_cast<size_t>(d) * static_cast<size_t>(m) + static_cast<size_t>(i)) * static_cast<size_t>(n));
    }
  }
  auto at = [&](int d, int64_t i, int64_t j) { return double{r[(static_cast<size_t>(d) * static_cast<size_t>(m) + static_cast<size_t>(i)) * static_cast<size_t>(n) + static_cast<size_t>(j)]}; };
  CeilingCheck out;
  int used = 0;
  for (int64_t j = 0; j < n; ++j) {
    std::vector<double> lambda(static_cast<size_t>(m));
    for (int64_t i = 0; i < m; ++i) lambda[static_cast<size_t>(i)] = rates[static_cast<size_t>(i * n + j)];
    const sim::Ceiling c = sim::analytic_ceiling(p, lambda.data(), m, R);
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
  for (const Case& c : cases) {
    const CeilingCheck r = check_ceilings(c.p, rates, static_cast<int64_t>(s.size()), n, 10, 30);
    std::cout << "[ceiling vs MC, " << static_cast<int64_t>(s.size()) << " images] " << c.name << ": mean |MC - analytic| ceiling "
              << r.mean_abs_ceiling_error << ", mean bias " << r.mean_ceiling_bias << ", max |z| ceiling "
              << r.max_ceiling_z << ", max |z| noise variance " << r.max_noise_z << ", mean |MC - analytic| fev "
              << r.mean_abs_fev_error << "\n";
    EXPECT_LT(r.mean_abs_ceiling_error, 0.004) << c.name;
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
  std::map<std::string, std::string> a, b, c;
  collect(h5::File::open(*dir / "a.h5"), "/", a);
  collect(h5::File::open(*dir / "b.h5"), "/", b);
  collect(h5::File::open(*dir / "c.h5"), "/", c);
  ASSERT_GT(a.size(), 40u);
  for (const auto& [name, bytes] : a) EXPECT_TRUE(b.count(name) && b[name] == bytes) << name << " differs";
  EXPECT_NE(a["responses"], c["responses"]);
  EXPECT_NE(a["gt/orientation"], c["gt/orientation"]);
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
  // Response statistics: train tier, std with ddof 1.
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
  EXPECT_NEAR(stat_std[0], std::sqrt((s2 - s * s / count) / (count - 1)), 1e-4);
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

}  // namespace
