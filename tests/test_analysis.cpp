// Analysis: the model's input gradient (evaluation-mode batch norm) against central finite differences in
// double, receptive fields (v1sysid rf) against finite differences of the predictions at the gray image with
// the preprocessing scales, and the rf / similarity commands on a saved checkpoint against direct
// computations (and their bad-input errors). The Python side (tests/py/test_analysis.py) checks the same
// commands against numpy / PyTorch on a trained model.
#include "analysis/mei.hpp"
#include "analysis/receptive_field.hpp"
#include "analysis/similarity.hpp"
#include "core/error.hpp"
#include "train/checkpoint.hpp"
#include "io/h5.hpp"
#include "model/model.hpp"
#include "test_support.hpp"
#include "core/progress.hpp"
#include "core/random.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

namespace {

using namespace v1sysid;

// Parameters of a "trained" model: uniform weights in +-0.5 away from |.|'s kink, gamma and bias near 1,
// running means in +-0.3 and running variances in [0.5, 2] (the eval path reads them; 0/1 would hide bugs).
template <class T>
void randomise(Model<T>& m, uint64_t seed) {
  auto& arena = m.arena();
  SplitMix64 rng(seed);
  auto p = Kokkos::create_mirror_view(arena.params());
  Kokkos::deep_copy(p, arena.params());
  for (const auto& s : arena.slots()) {
    for (size_t i = 0; i < s.size; ++i) {
      double x = rng.uniform() - 0.5;
      if (std::fabs(x) < 0.05) x += x < 0 ? -0.05 : 0.05;
      if (s.name.find("bn_gamma") != std::string::npos || s.name.find("bias") != std::string::npos) x += 1.0;
      if (s.name.find("running_mean") != std::string::npos) x *= 0.6;
      if (s.name.find("running_var") != std::string::npos) x = 0.5 + 1.5 * rng.uniform();
      p(s.offset + i) = static_cast<T>(x);
    }
  }
  Kokkos::deep_copy(arena.params(), p);
}

const char* kSoftplusSame = R"(
core: {filter_sizes: [5, 3], channels: [3, 4], nonlinearities: [softplus, none], batchnorm_scale: [true, false],
       rel_smooth: [1, 0.5], rel_sparse: [0, 1]}
readout: {regularizer: joint_l1, weight: 0.05}
)";
const char* kEluValidPositive = R"(
core: {filter_sizes: [3, 3, 3], channels: [2, 3, 2], nonlinearities: [elu, softplus, elu], padding: valid,
       batchnorm_scale: [true, true, true], rel_smooth: [1, 1, 1], rel_sparse: [0, 1, 1]}
readout: {regularizer: separate_l1, mask_weight: 0.02, feature_weight: 0.03, positive_features: true}
)";

const char* kRoteqShared = R"(
core: {kind: roteq, filter_sizes: [5, 3], features: [2, 2], rotations: 8, batchnorm_shared_rotations: true,
       nonlinearities: [softplus, none], batchnorm_scale: [true, false], rel_smooth: [1, 0.5], rel_sparse: [0, 1]}
readout: {regularizer: joint_l1, weight: 0.05}
)";
const char* kRoteqPerChannel = R"(
core: {kind: roteq, filter_sizes: [3, 3], features: [1, 2], rotations: 4, batchnorm_shared_rotations: false,
       nonlinearities: [elu, softplus], batchnorm_scale: [true, true], rel_smooth: [1, 0.5], rel_sparse: [0, 1]}
readout: {regularizer: joint_l1, weight: 0.05}
)";

// Lurz et al. 2021: stacked2d core (VALID 5x5 input layer, depth-separable hidden layers) with the Gaussian
// readout, evaluated at mu (plain mu slots, or mu from the cortex grid predictor).
const char* kStackedGaussian = R"(
core: {kind: stacked2d, filter_sizes: [5, 3, 3], channels: [3, 4, 3], nonlinearities: [elu, elu, softplus],
       batchnorm_scale: [true, false, true], rel_smooth: [0, 0, 0], rel_sparse: [0, 0, 0], laplace_weight: 0.3}
readout: {kind: gaussian, feature_weight: 0.05}
)";
const char* kStackedGaussianCortex = R"(
core: {kind: stacked2d, filter_sizes: [3, 3], channels: [2, 3], nonlinearities: [elu, elu],
       batchnorm_scale: [true, true], rel_smooth: [0, 0], rel_sparse: [0, 0]}
readout: {kind: gaussian, feature_weight: 0.05, grid_predictor: cortex}
)";

// sum_{b,n} w[b,n] * prediction[b,n] of readout r at images x (evaluation mode).
double weighted_prediction(Model<double>& m, ModelWorkspace<double>& ws, int B, const std::vector<double>& x,
                           const std::vector<double>& w, int r = 0) {
  auto img = Kokkos::create_mirror_view(ws.images);
  for (size_t i = 0; i < x.size(); ++i) img(i) = x[i];
  Kokkos::deep_copy(ws.images, img);
  m.forward(ws, B, false, r);
  auto y = Kokkos::create_mirror_view_and_copy(HostSpace(), ws.prediction);
  double s = 0;
  for (size_t i = 0; i < w.size(); ++i) s += w[i] * y(i);
  return s;
}

// Readouts with these neuron counts on one core; "" for a single readout.
std::vector<ReadoutSpec> readout_specs(const std::vector<int>& neurons) {
  std::vector<ReadoutSpec> specs;
  for (size_t r = 0; r < neurons.size(); ++r)
    specs.push_back({neurons.size() == 1 ? std::string() : "set" + std::to_string(r), neurons[r]});
  return specs;
}

// Initialises every readout (cortical coordinates for the cortex grid predictor) and randomises all parameters.
void initialize_random(Model<double>& m, uint64_t seed) {
  std::vector<ReadoutInit> init;
  SplitMix64 rng(seed + 1);
  for (int r = 0; r < m.num_readouts(); ++r) {
    ReadoutInit ri;
    const int N = m.readout_spec(r).n_neurons;
    ri.mean_response.assign(static_cast<size_t>(N), 0.5);
    for (int k = 0; k < 3 * N; ++k) ri.cortical_coordinates.push_back(static_cast<float>(100 * rng.uniform()));
    init.push_back(ri);
  }
  m.initialize(3, init);
  randomise(m, seed);
}

// The input gradient of readout `readout` against central differences of every pixel.
void check_input_gradient(const char* yaml, const std::string& name, const std::vector<int>& neurons = {5},
                          int readout = 0, bool frozen = false) {
  SCOPED_TRACE(name);
  const int H = 9, W = 8, B = 3;
  const int N = neurons[static_cast<size_t>(readout)];
  Model<double> m(parse_model_config(yaml, name), H, W, readout_specs(neurons));
  initialize_random(m, 11);
  m.set_core_frozen(frozen);
  auto ws = m.make_workspace(B);
  SplitMix64 rng(5);
  std::vector<double> x(static_cast<size_t>(B * H * W)), w(static_cast<size_t>(B * N));
  for (auto& v : x) v = 2 * rng.uniform() - 1;
  for (auto& v : w) v = rng.normal();
  weighted_prediction(m, ws, B, x, w, readout);
  View1<double> d_pred("d_pred", w.size()), d_img("d_img", x.size());
  auto dp = Kokkos::create_mirror_view(d_pred);
  for (size_t i = 0; i < w.size(); ++i) dp(i) = w[i];
  Kokkos::deep_copy(d_pred, dp);
  m.input_gradient(ws, B, d_pred, d_img, readout);
  auto g = Kokkos::create_mirror_view_and_copy(HostSpace(), d_img);
  // The arena's gradients are scratch and must be zero afterwards.
  auto grads = Kokkos::create_mirror_view_and_copy(HostSpace(), m.arena().grads());
  double grad_norm = 0;
  for (size_t i = 0; i < grads.extent(0); ++i) grad_norm += std::fabs(grads(i));
  EXPECT_EQ(grad_norm, 0.0);
  // Every pixel's derivative by central differences.
  const double eps = 1e-6;
  double max_err = 0, max_g = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    auto xp = x, xm = x;
    xp[i] += eps;
    xm[i] -= eps;
    const double fd =
        (weighted_prediction(m, ws, B, xp, w, readout) - weighted_prediction(m, ws, B, xm, w, readout)) / (2 * eps);
    max_err = std::max(max_err, std::fabs(fd - g(i)));
    max_g = std::max(max_g, std::fabs(fd));
  }
  EXPECT_GT(max_g, 1e-3);  // a gradient with signal, not 0 == 0
  EXPECT_LT(max_err, 1e-7 * std::max(1.0, max_g)) << "largest |finite difference - analytic| " << max_err;
}

TEST(InputGradient, MatchesFiniteDifferencesSoftplusSame) { check_input_gradient(kSoftplusSame, "softplus_same"); }

TEST(InputGradient, MatchesFiniteDifferencesEluValidPositiveFeatures) {
  check_input_gradient(kEluValidPositive, "elu_valid_positive");
}

TEST(InputGradient, MatchesFiniteDifferencesRoteqSharedBatchNorm) {
  check_input_gradient(kRoteqShared, "roteq_shared_bn");
}

TEST(InputGradient, MatchesFiniteDifferencesRoteqPerChannelBatchNorm) {
  check_input_gradient(kRoteqPerChannel, "roteq_per_channel_bn");
}

// Several readouts on one core: the gradient through readout 1 (its own neuron count).
TEST(InputGradient, MatchesFiniteDifferencesCnnFactorizedSecondReadout) {
  check_input_gradient(kSoftplusSame, "cnn_factorized_readout1", {4, 6}, 1);
}

TEST(InputGradient, MatchesFiniteDifferencesStacked2dGaussian) {
  check_input_gradient(kStackedGaussian, "stacked2d_gaussian");
}

TEST(InputGradient, MatchesFiniteDifferencesStacked2dGaussianSecondReadoutFrozenCore) {
  check_input_gradient(kStackedGaussian, "stacked2d_gaussian_readout1_frozen", {3, 5}, 1, true);
}

TEST(InputGradient, MatchesFiniteDifferencesStacked2dGaussianCortexPredictor) {
  check_input_gradient(kStackedGaussianCortex, "stacked2d_gaussian_cortex", {4, 5}, 0);
}

TEST(InputGradient, WrongSizesAreShapeErrors) {
  Model<double> m(parse_model_config(kSoftplusSame, "m"), 9, 8, 5);
  m.initialize(3, std::vector<double>(5, 0.5));
  auto ws = m.make_workspace(2);
  m.forward(ws, 2, false);
  View1<double> small("small", 3), img("img", 2 * 9 * 8);
  EXPECT_THROW(m.input_gradient(ws, 2, small, img), ShapeError);
  EXPECT_THROW(m.input_gradient(ws, 3, small, img), ShapeError);
  View1<double> pred("pred", 2 * 5);
  EXPECT_NO_THROW(m.input_gradient(ws, 2, pred, img));
  EXPECT_THROW(m.input_gradient(ws, 2, pred, img, 1), ShapeError);  // the model has one readout
}

void check_receptive_fields(const char* yaml, const std::string& name, const std::vector<int>& neurons_per_readout,
                            int readout) {
  SCOPED_TRACE(name);
  const int H = 7, W = 6, N = neurons_per_readout[static_cast<size_t>(readout)];
  ASSERT_EQ(N, 5);
  Model<double> m(parse_model_config(yaml, name), H, W, readout_specs(neurons_per_readout));
  initialize_random(m, 21);
  Preprocessing p;
  p.image_mean = 117.0;
  p.image_std = 41.5;
  p.response_std = {0.5f, 2.0f, 1.0f, 3.5f, 0.25f};
  const std::vector<int64_t> neurons{4, 0, 2, 1, 3};
  const auto rf = compute_receptive_fields(m, p, neurons, 2, readout);
  ASSERT_EQ(rf.fields.size(), static_cast<size_t>(N * H * W));
  EXPECT_EQ(rf.neurons, neurons);
  auto ws = m.make_workspace(1);
  auto stored_prediction = [&](const std::vector<double>& raw, int64_t n) {
    auto img = Kokkos::create_mirror_view(ws.images);
    for (size_t i = 0; i < raw.size(); ++i) img(i) = (raw[i] - p.image_mean) / p.image_std;
    Kokkos::deep_copy(ws.images, img);
    m.forward(ws, 1, false, readout);
    auto y = Kokkos::create_mirror_view_and_copy(HostSpace(), ws.prediction);
    return y(static_cast<size_t>(n)) * p.response_std[static_cast<size_t>(n)];
  };
  const std::vector<double> gray(static_cast<size_t>(H * W), p.image_mean);
  const double eps = 1e-3;  // grey levels
  double max_err = 0, max_fd = 0;
  for (size_t k = 0; k < neurons.size(); ++k) {
    const int64_t n = neurons[k];
    EXPECT_NEAR(rf.prediction_at_gray[k], stored_prediction(gray, n), 1e-12);
    for (int i = 0; i < H * W; ++i) {
      auto up = gray, down = gray;
      up[static_cast<size_t>(i)] += eps;
      down[static_cast<size_t>(i)] -= eps;
      const double fd = (stored_prediction(up, n) - stored_prediction(down, n)) / (2 * eps);
      max_err = std::max(max_err, std::fabs(fd - rf.fields[k * H * W + static_cast<size_t>(i)]));
      max_fd = std::max(max_fd, std::fabs(fd));
    }
  }
  EXPECT_GT(max_fd, 1e-4);
  EXPECT_LT(max_err, 1e-7 * max_fd) << "largest |finite difference - rf| " << max_err << " of " << max_fd;
  EXPECT_THROW(compute_receptive_fields(m, p, {0, 5}, 2, readout), ConfigError);
  EXPECT_THROW(compute_receptive_fields(m, p, {1, 1}, 2, readout), ConfigError);
  EXPECT_THROW(compute_receptive_fields(m, p, {0}, 2, m.num_readouts()), ConfigError);
}

// Receptive fields: finite differences of the stored-unit prediction of each neuron with respect to each
// grey level of the raw image, at the gray image (raw = image_mean). Batches of 2 over 5 neurons exercise
// a partial last batch; the neuron order is the one asked for.
TEST(ReceptiveField, MatchesFiniteDifferencesOfStoredUnitPredictions) {
  check_receptive_fields(kSoftplusSame, "cnn_factorized", {5}, 0);
}

TEST(ReceptiveField, GaussianReadoutOfSecondDatasetMatchesFiniteDifferences) {
  check_receptive_fields(kStackedGaussian, "stacked2d_gaussian", {3, 5}, 1);
}

// Most exciting inputs (issue 22): on a random double model, each neuron's MEI keeps the constraints (grey range,
// RMS contrast at most the target and close to it), its recorded activation is the stored-unit prediction of the
// returned image, it beats the gray image and the best of 300 random images of the same contrast, it is the best
// of the starts, and the result is a pure function of the options (seed).
TEST(MostExcitingInput, BeatsRandomImagesOfItsContrastWithinTheConstraints) {
  const int H = 7, W = 6, N = 5;
  Model<double> m(parse_model_config(kSoftplusSame, "cnn"), H, W, N);
  initialize_random(m, 21);
  Preprocessing p;
  p.image_mean = 117.0;
  p.image_std = 41.5;
  p.response_std = {0.5f, 2.0f, 1.0f, 3.5f, 0.25f};
  MeiOptions o;
  o.steps = 60;
  o.starts = 3;
  o.batch = 4;  // 15 (neuron, start) pairs: a partial last batch
  v1sysid::Progress::set_enabled(false);
  const std::vector<int64_t> neurons{3, 0, 4, 1, 2};
  const auto mei = compute_meis(m, p, neurons, o);
  ASSERT_EQ(mei.images.size(), static_cast<size_t>(N * H * W));
  auto ws = m.make_workspace(1);
  auto stored_prediction = [&](const double* preprocessed, int64_t n) {
    auto img = Kokkos::create_mirror_view(ws.images);
    for (int i = 0; i < H * W; ++i) img(static_cast<size_t>(i)) = preprocessed[i];
    Kokkos::deep_copy(ws.images, img);
    m.forward(ws, 1, false);
    auto y = Kokkos::create_mirror_view_and_copy(HostSpace(), ws.prediction);
    return y(static_cast<size_t>(n)) * p.response_std[static_cast<size_t>(n)];
  };
  const double target = o.rms * std::sqrt(double(H * W));
  SplitMix64 rng(5);
  for (size_t k = 0; k < neurons.size(); ++k) {
    const int64_t n = neurons[k];
    std::vector<double> x(static_cast<size_t>(H * W));
    double ss = 0;
    for (int i = 0; i < H * W; ++i) {
      const double grey = mei.images[k * H * W + static_cast<size_t>(i)];
      EXPECT_GE(grey, 0.0);
      EXPECT_LE(grey, 255.0);
      x[static_cast<size_t>(i)] = (grey - p.image_mean) / p.image_std;
      ss += x[static_cast<size_t>(i)] * x[static_cast<size_t>(i)];
    }
    EXPECT_LE(std::sqrt(ss), target * (1 + 1e-6));
    EXPECT_GE(std::sqrt(ss), 0.9 * target);
    // The image is stored in float grey levels: the prediction of the stored image within float rounding.
    EXPECT_NEAR(mei.activation[k], stored_prediction(x.data(), n), 1e-4 * std::fabs(mei.activation[k]));
    EXPECT_GT(mei.activation[k], mei.activation_at_gray[k]);
    double best_start = -1e300, best_random = -1e300;
    for (int s = 0; s < o.starts; ++s) best_start = std::max(best_start, mei.activation_by_start[k * 3 + static_cast<size_t>(s)]);
    EXPECT_EQ(mei.activation[k], best_start);
    for (int trial = 0; trial < 300; ++trial) {
      std::vector<double> r(static_cast<size_t>(H * W));
      double rs = 0;
      for (auto& v : r) rs += (v = rng.normal()) * v;
      for (auto& v : r) v *= target / std::sqrt(rs);
      best_random = std::max(best_random, stored_prediction(r.data(), n));
    }
    EXPECT_GT(mei.activation[k], best_random) << "neuron " << n;
  }
  const auto again = compute_meis(m, p, neurons, o);
  EXPECT_EQ(again.images, mei.images);
  MeiOptions bad = o;
  bad.rms = 0;
  EXPECT_THROW(compute_meis(m, p, neurons, bad), ConfigError);
  bad = o;
  bad.starts = 0;
  EXPECT_THROW(compute_meis(m, p, neurons, bad), ConfigError);
  EXPECT_THROW(compute_meis(m, p, {0, 5}, o), ConfigError);
}

// The preconditioner's blur: an impulse far from the edges spreads into a symmetric kernel of sum 1; near the edges
// the weights that fall outside are left out and the rest renormalised, so a constant image stays constant;
// sigma 0 is a no-op.
TEST(MostExcitingInput, GaussianBlurIsNormalisedAndSymmetric) {
  const int64_t H = 25, W = 27;
  std::vector<double> img(static_cast<size_t>(H * W), 0.0);
  img[static_cast<size_t>(12 * W + 13)] = 1.0;
  auto copy = img;
  gaussian_blur(copy, H, W, 0.0);
  EXPECT_EQ(copy, img);
  gaussian_blur(img, H, W, 1.5);
  double sum = 0;
  for (double v : img) sum += v;
  EXPECT_NEAR(sum, 1.0, 1e-12);
  EXPECT_NEAR(img[static_cast<size_t>(12 * W + 11)], img[static_cast<size_t>(12 * W + 15)], 1e-15);
  EXPECT_NEAR(img[static_cast<size_t>(10 * W + 13)], img[static_cast<size_t>(14 * W + 13)], 1e-15);
  EXPECT_GT(img[static_cast<size_t>(12 * W + 13)], img[static_cast<size_t>(12 * W + 14)]);
  std::vector<double> constant(static_cast<size_t>(H * W), 3.0);
  gaussian_blur(constant, H, W, 2.0);
  for (double v : constant) EXPECT_NEAR(v, 3.0, 1e-12);
}

// A checkpoint of a random float model for the command-level checks.
std::string save_random_checkpoint(const v1sysid::testing::ScratchDir& dir, int H, int W, int N, Preprocessing& p) {
  Model<Real> m(parse_model_config(kSoftplusSame, "m"), H, W, N);
  m.initialize(3, std::vector<double>(static_cast<size_t>(N), 0.5));
  randomise(m, 31);
  p.image_mean = 100.0;
  p.image_std = 30.0;
  p.response_std.clear();
  for (int n = 0; n < N; ++n) p.response_std.push_back(0.5f + 0.25f * static_cast<float>(n));
  TrainResult t;
  const std::string path = dir / "checkpoint.h5";
  save_checkpoint(path, m, p, t, "none", false);
  return path;
}

TEST(AnalysisCommands, RfFileMatchesLibraryAndRejectsBadNeurons) {
  v1sysid::testing::ScratchDir dir;
  Preprocessing p;
  const std::string ckpt = save_random_checkpoint(dir, 8, 9, 4, p);
  auto r = v1sysid::testing::run_v1sysid("rf --checkpoint " + ckpt + " --out " + (dir / "rf.h5") + " --neurons 3 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto f = h5::File::open(dir / "rf.h5");
  h5::Shape shape;
  const auto fields = f.read<float>("rf", &shape);
  EXPECT_EQ(shape, (h5::Shape{2, 8, 9}));
  EXPECT_EQ(f.read<int64_t>("neurons"), (std::vector<int64_t>{3, 1}));
  auto c = load_checkpoint(ckpt);
  const auto direct = compute_receptive_fields(*c.model, c.preprocessing, {3, 1}, 64);
  for (size_t i = 0; i < fields.size(); ++i) EXPECT_EQ(fields[i], direct.fields[i]);
  auto bad = v1sysid::testing::run_v1sysid("rf --checkpoint " + ckpt + " --out " + (dir / "bad.h5") + " --neurons 4");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("--neurons"), std::string::npos) << bad.output;
  auto again = v1sysid::testing::run_v1sysid("rf --checkpoint " + ckpt + " --out " + (dir / "rf.h5"));
  EXPECT_NE(again.exit_code, 0);  // exists, no --force
}

// The mei command writes what the library computes, in grey levels that `predict` reads back, and names the option
// of a bad neuron index.
TEST(AnalysisCommands, MeiFileMatchesLibraryAndRejectsBadNeurons) {
  v1sysid::testing::ScratchDir dir;
  Preprocessing p;
  const std::string ckpt = save_random_checkpoint(dir, 8, 9, 4, p);
  auto r = v1sysid::testing::run_v1sysid("mei --checkpoint " + ckpt + " --out " + (dir / "mei.h5") +
                                          " --neurons 3 1 --steps 20 --starts 2 --seed 4");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto f = h5::File::open(dir / "mei.h5");
  h5::Shape shape;
  const auto images = f.read<float>("images", &shape);
  EXPECT_EQ(shape, (h5::Shape{2, 1, 8, 9}));
  EXPECT_EQ(f.read<int64_t>("neurons"), (std::vector<int64_t>{3, 1}));
  auto c = load_checkpoint(ckpt);
  MeiOptions o;
  o.steps = 20;
  o.starts = 2;
  o.seed = 4;
  const auto direct = compute_meis(*c.model, c.preprocessing, {3, 1}, o);
  EXPECT_EQ(images, direct.images);
  EXPECT_EQ(f.read<double>("activation"), direct.activation);
  auto bad = v1sysid::testing::run_v1sysid("mei --checkpoint " + ckpt + " --out " + (dir / "bad.h5") + " --neurons 4");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.output.find("--neurons"), std::string::npos) << bad.output;
  EXPECT_FALSE(std::filesystem::exists(dir / "bad.h5"));
  bad = v1sysid::testing::run_v1sysid("mei --checkpoint " + ckpt + " --out " + (dir / "bad.h5") + " --rms -1");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.output.find("--rms"), std::string::npos) << bad.output;
}

// rf on a checkpoint of a stacked2d + gaussian model with two readouts: --data-key picks the readout and its
// response scales; without it (or with an unknown key) the command fails naming --data-key and the keys.
TEST(AnalysisCommands, RfOfGaussianMultiReadoutCheckpointNeedsDataKey) {
  v1sysid::testing::ScratchDir dir;
  const int H = 9, W = 8;
  Model<Real> m(parse_model_config(kStackedGaussian, "m"), H, W, std::vector<ReadoutSpec>{{"left", 3}, {"right", 4}});
  std::vector<ReadoutInit> init{{std::vector<double>(3, 0.5), {}}, {std::vector<double>(4, 0.5), {}}};
  m.initialize(3, init);
  randomise(m, 41);
  std::vector<Preprocessing> pre(2);
  for (size_t r = 0; r < 2; ++r) {
    pre[r].image_mean = 100.0 + 10.0 * double(r);
    pre[r].image_std = 30.0;
    for (size_t n = 0; n < 3 + r; ++n) pre[r].response_std.push_back(0.5f + 0.25f * static_cast<float>(n + r));
  }
  const std::string ckpt = dir / "checkpoint.h5";
  save_checkpoint(ckpt, m, pre, TrainResult{}, "none", false);
  auto r = v1sysid::testing::run_v1sysid("rf --checkpoint " + ckpt + " --out " + (dir / "rf.h5") +
                                         " --data-key right --neurons 3 0");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto f = h5::File::open(dir / "rf.h5");
  h5::Shape shape;
  const auto fields = f.read<float>("rf", &shape);
  EXPECT_EQ(shape, (h5::Shape{2, H, W}));
  auto c = load_checkpoint(ckpt);
  const auto direct = compute_receptive_fields(*c.model, c.readout_preprocessing[1], {3, 0}, 64, 1);
  ASSERT_EQ(fields.size(), direct.fields.size());
  double max_abs = 0;
  for (size_t i = 0; i < fields.size(); ++i) {
    EXPECT_EQ(fields[i], direct.fields[i]);
    max_abs = std::max(max_abs, std::fabs(double(fields[i])));
  }
  EXPECT_GT(max_abs, 0.0);
  for (const std::string& bad_key : {std::string(), std::string(" --data-key middle")}) {
    auto bad = v1sysid::testing::run_v1sysid("rf --checkpoint " + ckpt + " --out " + (dir / "bad.h5") + bad_key);
    EXPECT_NE(bad.exit_code, 0);
    EXPECT_NE(bad.output.find("--data-key"), std::string::npos) << bad.output;
    EXPECT_NE(bad.output.find("left, right"), std::string::npos) << bad.output;
  }
}

// similarity on a StaticImageSet-like file with a repeated image id: the repeat counts once, and the matrix
// equals the Pearson correlation of predict_images rows computed here in double; block 2 and block 1024 agree.
TEST(AnalysisCommands, SimilarityMatchesDirectCorrelation) {
  v1sysid::testing::ScratchDir dir;
  Preprocessing p;
  const int H = 8, W = 9, N = 4;
  const std::string ckpt = save_random_checkpoint(dir, H, W, N, p);
  const int n = 6;
  std::vector<float> images(static_cast<size_t>(n * H * W));
  SplitMix64 rng(9);
  for (auto& v : images) v = static_cast<float>(100 + 30 * rng.normal());
  // trial 5 repeats image id 12 (trial 1)
  std::copy(images.begin() + H * W, images.begin() + 2 * H * W, images.begin() + 5 * H * W);
  const std::vector<int64_t> ids{10, 12, 14, 16, 18, 12};
  {
    auto f = h5::File::create(dir / "set.h5", false);
    f.write("images", images, {static_cast<hsize_t>(n), 1, static_cast<hsize_t>(H), static_cast<hsize_t>(W)});
    f.write("item_info/frame_image_id", ids, {static_cast<hsize_t>(n)});
    f.commit();
  }
  auto r = v1sysid::testing::run_v1sysid("similarity --checkpoint " + ckpt + " --images " + (dir / "set.h5") + " --out " +
                                (dir / "rsm.h5") + " --block 2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = v1sysid::testing::run_v1sysid("similarity --checkpoint " + ckpt + " --images " + (dir / "set.h5") + " --out " +
                           (dir / "rsm_big.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto f = h5::File::open(dir / "rsm.h5");
  h5::Shape shape;
  const auto S = f.read<float>("rsm", &shape);
  EXPECT_EQ(shape, (h5::Shape{5, 5}));
  EXPECT_EQ(f.read<int64_t>("image_ids"), (std::vector<int64_t>{10, 12, 14, 16, 18}));
  EXPECT_EQ(h5::File::open(dir / "rsm_big.h5").read<float>("rsm"), S);

  auto c = load_checkpoint(ckpt);
  const ImageSet set = read_image_set(dir / "set.h5");
  const auto pred = predict_images(*c.model, c.preprocessing, set, 3);
  auto centred = [&](int i) {
    std::vector<double> v(pred.begin() + i * N, pred.begin() + (i + 1) * N);
    double mean = 0;
    for (double x : v) mean += x / N;
    for (double& x : v) x -= mean;
    return v;
  };
  double max_err = 0;
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 5; ++j) {
      const auto a = centred(i), b = centred(j);
      double ab = 0, aa = 0, bb = 0;
      for (int k = 0; k < N; ++k) {
        ab += a[k] * b[k];
        aa += a[k] * a[k];
        bb += b[k] * b[k];
      }
      max_err = std::max(max_err, std::fabs(ab / std::sqrt(aa * bb) - S[static_cast<size_t>(i * 5 + j)]));
    }
  EXPECT_LT(max_err, 1e-5);

  // Images of the wrong size are a ShapeError naming --images.
  {
    auto g = h5::File::create(dir / "small.h5", false);
    g.write("images", std::vector<float>(3 * 4 * 4, 1.0f), {3, 4, 4});
    g.commit();
  }
  auto bad = v1sysid::testing::run_v1sysid("similarity --checkpoint " + ckpt + " --images " + (dir / "small.h5") +
                                  " --out " + (dir / "bad.h5"));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("--images"), std::string::npos) << bad.output;
}

}  // namespace
