// Whole-model gradient check in double: a directional finite difference along a random unit vector over
// every trainable parameter of the arena (conv weights, BN gamma/beta, readout mask/features/bias) of
//   L = Poisson loss (training-mode batch norm) + core and readout regularisers
// for several configurations (signed / positive features, each readout regulariser, softplus / ELU / none,
// SAME / VALID, a Winograd 5x5 layer, the rotation-equivariant Hermite core with rotation-shared and
// per-channel batch norm), plus initialisation, slot table and workspace checks, and the named architectures
// (model/architectures.hpp).
#include "model/model.hpp"

#include "core/error.hpp"
#include "model/architectures.hpp"
#include "test_support.hpp"
#include "core/random.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

namespace {

using namespace v1sysid;

struct Case {
  std::string name;
  std::string yaml;
};

ModelConfig config_of(const Case& c) { return parse_model_config(c.yaml, c.name); }

template <class T>
void fill_host(View1<T> v, SplitMix64& rng, double lo, double hi) {
  auto h = Kokkos::create_mirror_view(v);
  for (size_t i = 0; i < h.extent(0); ++i) h(i) = static_cast<T>(lo + (hi - lo) * rng.uniform());
  Kokkos::deep_copy(v, h);
}

// Loss of the model at its current parameters on the batch in ws (training-mode BN).
double total_loss(Model<double>& m, ModelWorkspace<double>& ws, int batch) {
  m.set_sample_counter(0);  // the Gaussian readout's position noise: the same draw in every evaluation
  m.forward(ws, batch, true);
  return m.poisson_loss(ws, batch) + m.regularization();
}

void check_directional_derivative(const Case& c) {
  SCOPED_TRACE(c.name);
  const int H = 9, W = 8, N = 5, B = 4;
  Model<double> m(config_of(c), H, W, N);
  SplitMix64 rng(123);
  {
    std::vector<float> coords(N * 3);
    for (auto& x : coords) x = static_cast<float>(100 * rng.uniform());
    m.initialize(17, std::vector<ReadoutInit>{ReadoutInit{std::vector<double>(N, 0.7), coords}});
  }
  auto& arena = m.arena();
  // Parameters of a partly trained model (sd 0.01 leaves everything near 0, where the regularisers are
  // dominated by their epsilons): uniform in +-0.5, biases and BN gamma near 1, away from |.|'s kink.
  {
    auto p = Kokkos::create_mirror_view(arena.params());
    Kokkos::deep_copy(p, arena.params());
    for (const auto& s : arena.slots()) {
      if (!s.trainable) continue;
      for (size_t i = 0; i < s.size; ++i) {
        double x = rng.uniform() - 0.5;
        if (std::fabs(x) < 0.05) x += x < 0 ? -0.05 : 0.05;
        if (s.name.find("bn_gamma") != std::string::npos || s.name.find("bias") != std::string::npos) x += 1.0;
        p(s.offset + i) = x;
      }
    }
    Kokkos::deep_copy(arena.params(), p);
  }
  auto ws = m.make_workspace(B);
  fill_host(ws.images, rng, -2.0, 2.0);
  fill_host(ws.responses, rng, 0.0, 3.0);

  // Analytic gradient.
  ExecSpace space;
  arena.zero_grad(space);
  m.set_sample_counter(0);
  m.forward(ws, B, true);
  const double poisson = m.poisson_loss(ws, B);
  const double reg = m.backward(ws, B);
  EXPECT_NEAR(reg, m.regularization(), 1e-12 * std::max(1.0, std::fabs(reg)));
  EXPECT_GT(reg, 0.0);
  ASSERT_TRUE(std::isfinite(poisson));

  // Random unit direction over the trainable slots (buffers get 0: the training-mode loss ignores them).
  const size_t n = arena.size();
  std::vector<double> v(n, 0.0);
  double norm = 0;
  for (const auto& s : arena.slots()) {
    if (!s.trainable) continue;
    for (size_t i = 0; i < s.size; ++i) {
      v[s.offset + i] = rng.normal();
      norm += v[s.offset + i] * v[s.offset + i];
    }
  }
  norm = std::sqrt(norm);
  auto g = Kokkos::create_mirror_view(arena.grads());
  Kokkos::deep_copy(g, arena.grads());
  double analytic = 0;
  for (size_t i = 0; i < n; ++i) {
    v[i] /= norm;
    analytic += g(i) * v[i];
  }
  auto p0 = Kokkos::create_mirror_view(arena.params());
  Kokkos::deep_copy(p0, arena.params());
  std::vector<double> base(p0.data(), p0.data() + n);
  auto at = [&](double eps) {
    auto p = Kokkos::create_mirror_view(arena.params());
    for (size_t i = 0; i < n; ++i) p(i) = base[i] + eps * v[i];
    Kokkos::deep_copy(arena.params(), p);
    return total_loss(m, ws, B);
  };
  const double eps = 1e-5;
  const double numeric = (at(eps) - at(-eps)) / (2 * eps);
  const double rel = std::fabs(numeric - analytic) / std::max(1e-8, std::fabs(numeric) + std::fabs(analytic));
  EXPECT_LT(rel, 1e-6) << "directional derivative: finite difference " << numeric << ", analytic " << analytic;
  EXPECT_GT(std::fabs(analytic), 1e-3);  // a direction with real signal, not 0 == 0
}

const char* kBase = R"(
core: {filter_sizes: [5, 3], channels: [3, 4], nonlinearities: [softplus, none], batchnorm_scale: [true, false],
       smooth_weight: 0.3, sparse_weight: 0.2, rel_smooth: [1, 0.5], rel_sparse: [0, 1], batchnorm_decay: 0.9}
)";


// The message of the ConfigError that parsing `yaml` (as m.yaml) throws; empty when it parses.
std::string config_error_of(const std::string& yaml) {
  try {
    parse_model_config(yaml, "m.yaml");
  } catch (const ConfigError& e) {
    return std::string(e.what());
  }
  return std::string();
}

TEST(ModelGradient, JointL1SignedFeatures) {
  check_directional_derivative({"joint_l1", std::string(kBase) + "readout: {regularizer: joint_l1, weight: 0.05}\n"});
}

// A 5x5 SAME layer with 8 channels on both sides: conv2d's automatic choice runs it through Winograd.
TEST(ModelGradient, WinogradLayer) {
  const Case c{"winograd", R"(
core: {filter_sizes: [3, 5], channels: [8, 8], nonlinearities: [softplus, softplus], batchnorm_scale: [true, true],
       smooth_weight: 0.3, sparse_weight: 0.2, rel_smooth: [1, 0.5], rel_sparse: [0, 1]}
readout: {regularizer: joint_l1, weight: 0.05}
)"};
  const Model<double> m(config_of(c), 9, 8, 5);
  const auto& g = m.geometry(1);
  const layers::Conv2dShape s{4, g.c_in, g.c_out, g.h_in, g.w_in, g.k, layers::Padding::same};
  ASSERT_EQ(layers::conv2d_resolve_algorithm(s), layers::ConvAlgorithm::winograd);
  check_directional_derivative(c);
}

TEST(ModelGradient, SeparateL1PositiveFeaturesEluValid) {
  check_directional_derivative(
      {"separate_l1", R"(
core: {filter_sizes: [3, 3, 3], channels: [2, 3, 2], nonlinearities: [elu, softplus, elu], padding: valid,
       batchnorm_scale: [true, true, true], smooth_weight: 0.1, sparse_weight: 0.1, rel_smooth: [1, 1, 1],
       rel_sparse: [0, 1, 1]}
readout: {regularizer: separate_l1, mask_weight: 0.02, feature_weight: 0.03, positive_features: true}
)"});
}

TEST(ModelGradient, L1MaskL2Features) {
  check_directional_derivative({"l1_mask_l2_features", std::string(kBase) +
                                                           "readout: {regularizer: l1_mask_l2_features, "
                                                           "mask_weight: 0.02, feature_weight: 0.3}\n"});
}

// Lurz et al. 2021: stacked2d core (VALID input layer, depth-separable hidden layers, Laplace-L2) with the
// Gaussian readout (training-mode position sampling with a fixed noise draw), with and without the cortex
// grid predictor.
const char* kStacked = R"(
core: {kind: stacked2d, filter_sizes: [3, 3, 3], channels: [3, 4, 3], nonlinearities: [elu, elu, elu],
       batchnorm_scale: [true, true, true], rel_smooth: [0, 0, 0], rel_sparse: [0, 0, 0], laplace_weight: 0.3}
)";

TEST(ModelGradient, Stacked2dCoreGaussianReadout) {
  check_directional_derivative({"stacked2d_gaussian", std::string(kStacked) +
                                                          "readout: {kind: gaussian, feature_weight: 0.05}\n"});
}

TEST(ModelGradient, CnnCoreGaussianReadoutCortexGridPredictor) {
  check_directional_derivative({"cnn_gaussian_cortex", std::string(kBase) +
                                                           "readout: {kind: gaussian, feature_weight: 0.05, "
                                                           "grid_predictor: cortex}\n"});
}

TEST(Model, Stacked2dAndGaussianSlotsDefaultsAndInitialisation) {
  auto c = parse_model_config("core: {kind: stacked2d}\nreadout: {kind: gaussian}\ntrain: {schedule: lurz}\n", "m");
  EXPECT_EQ(c.core.filter_sizes, (std::vector<int>{15, 13, 13, 13}));
  EXPECT_EQ(c.core.channels, (std::vector<int>{64, 64, 64, 64}));
  EXPECT_DOUBLE_EQ(c.core.batchnorm_decay, 0.9);
  EXPECT_DOUBLE_EQ(c.core.batchnorm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.core.laplace_weight, 1.0);
  EXPECT_DOUBLE_EQ(c.readout.feature_weight, 2.439);
  EXPECT_DOUBLE_EQ(c.train.learning_rate, 0.005);
  EXPECT_EQ(c.train.batch_size, 64);
  EXPECT_EQ(c.train.max_epochs, 200);
  EXPECT_EQ(parse_model_config(to_yaml(c), "round trip").core.kind, v1sysid::CoreKind::stacked2d);
  EXPECT_EQ(to_yaml(parse_model_config(to_yaml(c), "round trip")), to_yaml(c));
  // 36 x 64 -> 22 x 50 (Lurz's pad_input=False), hidden layers SAME.
  Model<float> m(c, 36, 64, 7);
  EXPECT_EQ(m.geometry(3).h_out, 22);
  EXPECT_EQ(m.geometry(3).w_out, 50);
  const auto& a = m.arena();
  EXPECT_EQ(a.slot(m.core_slot(0, "weight")).extents, (std::array<size_t, 4>{64, 1, 15, 15}));
  EXPECT_EQ(a.slot(m.core_slot(1, "pointwise_in")).extents, (std::array<size_t, 4>{64, 64, 1, 1}));
  EXPECT_EQ(a.slot(m.core_slot(1, "depthwise")).extents, (std::array<size_t, 4>{64, 1, 13, 13}));
  EXPECT_EQ(a.slot(m.core_slot(1, "weight")).extents, (std::array<size_t, 4>{64, 64, 1, 1}));
  EXPECT_EQ(a.slot(m.readout_slot(0, "mu")).extents, (std::array<size_t, 4>{7, 2, 1, 1}));
  EXPECT_EQ(a.slot(m.readout_slot(0, "sigma")).extents, (std::array<size_t, 4>{7, 2, 2, 1}));
  EXPECT_EQ(a.slot(m.readout_slot(0, "features")).extents, (std::array<size_t, 4>{7, 64, 1, 1}));
  EXPECT_EQ(m.output_nonlinearity(), layers::OutputNonlinearity::elu_plus_one);
  std::vector<double> means{0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7};
  m.initialize(3, means);
  auto p = Kokkos::create_mirror_view_and_copy(HostSpace(), a.params());
  auto slot_values = [&](int slot) {
    const auto& s = a.slot(slot);
    return std::vector<double>(p.data() + s.offset, p.data() + s.offset + s.size);
  };
  for (double x : slot_values(m.readout_slot(0, "mu"))) EXPECT_LE(std::fabs(x), 0.55);
  for (double x : slot_values(m.readout_slot(0, "sigma"))) EXPECT_LE(std::fabs(x), 0.4);
  const auto bias = slot_values(m.readout_slot(0, "bias"));
  for (size_t n = 0; n < means.size(); ++n) EXPECT_FLOAT_EQ(bias[n], means[n]);  // mean training response
  // Xavier normal: sd sqrt(2 / (fan_in + fan_out)), here 1x1 64 -> 64: sqrt(2 / 128) = 0.125.
  const auto w = slot_values(m.core_slot(2, "pointwise_in"));
  double ss = 0;
  for (double x : w) ss += x * x;
  EXPECT_NEAR(std::sqrt(ss / w.size()), 0.125, 0.01);
  // The cortex predictor refuses a dataset without coordinates.
  auto cortex = c;
  cortex.readout.grid_predictor = "cortex";
  Model<float> mc(cortex, 36, 64, 7);
  EXPECT_THROW(mc.initialize(3, means), ConfigError);
  EXPECT_THROW(parse_model_config("core: {}\nreadout: {kind: gaussian, weight: 0.1}\ntrain: {}\n", "m"), ConfigError);
  EXPECT_THROW(parse_model_config("core: {}\nreadout: {grid_predictor: cortex}\ntrain: {}\n", "m"), ConfigError);
}

TEST(Model, SeveralReadoutsShareOneCore) {
  auto c = parse_model_config(std::string(kStacked) + "readout: {kind: gaussian}\n", "m");
  Model<double> m(c, 9, 8, std::vector<ReadoutSpec>{{"a", 3}, {"b", 5}});
  EXPECT_EQ(m.num_readouts(), 2);
  EXPECT_EQ(m.readout_index("b"), 1);
  EXPECT_THROW(m.readout_index("c"), ShapeError);
  const auto& a = m.arena();
  EXPECT_EQ(a.slot(m.readout_slot(0, "features")).name, "readout/a/features");
  EXPECT_EQ(a.slot(m.readout_slot(1, "mu")).name, "readout/b/mu");
  EXPECT_EQ(a.slot(m.readout_slot(1, "bias")).size, 5u);
  EXPECT_THROW(Model<double>(c, 9, 8, std::vector<ReadoutSpec>{{"a", 3}, {"a", 5}}), ShapeError);
  m.initialize(1, std::vector<ReadoutInit>{ReadoutInit{std::vector<double>(3, 0.5), {}},
                                            ReadoutInit{std::vector<double>(5, 0.5), {}}});
  // Readout 1's backward touches readout 1's and the core's gradients only.
  auto ws = m.make_workspace(2);
  SplitMix64 rng(4);
  fill_host(ws.images, rng, -1.0, 1.0);
  fill_host(ws.responses, rng, 0.0, 2.0);
  ExecSpace space;
  a.zero_grad(space);
  m.forward(ws, 2, true, 1);
  m.backward(ws, 2, 1);
  auto g = Kokkos::create_mirror_view_and_copy(HostSpace(), a.grads());
  auto any_nonzero = [&](const std::string& prefix) {
    bool any = false;
    for (const auto& s : a.slots())
      if (s.name.rfind(prefix, 0) == 0)
        for (size_t i = 0; i < s.size; ++i) any = any || g(s.offset + i) != 0.0;
    return any;
  };
  EXPECT_FALSE(any_nonzero("readout/a/"));
  EXPECT_TRUE(any_nonzero("readout/b/"));
  EXPECT_TRUE(any_nonzero("core/"));
  // Frozen core: no core gradient, and the forward leaves the BN running statistics alone.
  m.set_core_frozen(true);
  a.zero_grad(space);
  auto before = Kokkos::create_mirror_view_and_copy(HostSpace(), a.params());
  m.forward(ws, 2, true, 0);
  m.backward(ws, 2, 0);
  g = Kokkos::create_mirror_view_and_copy(HostSpace(), a.grads());
  EXPECT_FALSE(any_nonzero("core/"));
  EXPECT_TRUE(any_nonzero("readout/a/"));
  auto after = Kokkos::create_mirror_view_and_copy(HostSpace(), a.params());
  for (const auto& s : a.slots())
    if (s.name.rfind("core/", 0) == 0)
      for (size_t i = 0; i < s.size; ++i) ASSERT_EQ(before(s.offset + i), after(s.offset + i)) << s.name;
}

// Rotation-equivariant core: the gradient reaches the Hermite coefficients through synthesis, conv and the
// regularisers on the synthesised filters of all rotations.
const char* kRoteq = R"(
core: {kind: roteq, filter_sizes: [5, 3], features: [2, 2], rotations: 4, nonlinearities: [softplus, none],
       batchnorm_scale: [true, false], smooth_weight: 0.3, sparse_weight: 0.2, rel_smooth: [1, 0.5],
       rel_sparse: [0, 1]}
)";

TEST(ModelGradient, RoteqCoreSharedBatchNorm) {
  check_directional_derivative({"roteq_shared", std::string(kRoteq) + "readout: {regularizer: joint_l1, weight: 0.05}\n"});
}

TEST(ModelGradient, RoteqCorePerChannelBatchNormPositiveFeatures) {
  std::string yaml = kRoteq;
  yaml.replace(yaml.find("rotations: 4"), 12, "rotations: 4, batchnorm_shared_rotations: false");
  check_directional_derivative(
      {"roteq_per_channel", yaml + "readout: {regularizer: joint_l1, weight: 0.05, positive_features: true}\n"});
}

TEST(Model, RoteqSlotsAndExpandedFilters) {
  auto c = parse_model_config(std::string(kRoteq) + "readout: {weight: 0.05}\n", "m");
  EXPECT_EQ(c.core.channels, (std::vector<int>{8, 8}));
  Model<float> m(c, 10, 9, 3);
  auto& a = m.arena();
  EXPECT_EQ(m.core_slot(0, "weight"), -1);
  EXPECT_EQ(a.slot(m.core_slot(0, "coeffs")).name, "core/layer0/coeffs");
  EXPECT_EQ(a.slot(m.core_slot(0, "coeffs")).extents, (std::array<size_t, 4>{15, 1, 2, 1}));  // (Q, C_in, F)
  EXPECT_EQ(a.slot(m.core_slot(1, "coeffs")).extents, (std::array<size_t, 4>{6, 8, 2, 1}));
  EXPECT_EQ(a.slot(m.core_slot(0, "bn_beta")).size, 2u);  // shared across rotations: one per feature
  EXPECT_EQ(a.slot(m.readout_slot(0, "features")).extents, (std::array<size_t, 4>{3, 8, 1, 1}));
  m.initialize(4, std::vector<double>(3, 0.5));
  auto p = Kokkos::create_mirror_view_and_copy(HostSpace(), a.params());
  const auto& cs = a.slot(m.core_slot(0, "coeffs"));
  double maxabs = 0, sum2 = 0;
  for (size_t i = 0; i < cs.size; ++i) {
    maxabs = std::max(maxabs, std::fabs(double(p(cs.offset + i))));
    sum2 += double(p(cs.offset + i)) * p(cs.offset + i);
  }
  EXPECT_LE(maxabs, 0.2 + 1e-6);  // truncated normal, sd 0.1
  EXPECT_GT(std::sqrt(sum2 / cs.size), 0.04);
  const auto w = Kokkos::create_mirror_view_and_copy(HostSpace(), m.conv_filters(1));
  EXPECT_EQ(w.extent(0), 8u);
  EXPECT_EQ(w.extent(1), 8u);
  EXPECT_EQ(w.extent(3), 3u);
  EXPECT_THROW(m.conv_filters(2), ShapeError);
  auto per_channel = c;
  per_channel.core.batchnorm_shared_rotations = false;
  Model<float> m2(per_channel, 10, 9, 3);
  EXPECT_EQ(m2.arena().slot(m2.core_slot(0, "bn_beta")).size, 8u);
  auto ws = m2.make_workspace(2);
  m2.initialize(1, std::vector<double>(3, 0.5));
  m2.forward(ws, 2, true);
}

TEST(ModelConfig, RoteqDefaultsRoundTripAndErrors) {
  const auto c = parse_model_config("core: {kind: roteq}", "m");
  EXPECT_EQ(c.core.features, (std::vector<int>{16, 16, 16}));
  EXPECT_EQ(c.core.rotations, 8);
  EXPECT_EQ(c.core.channels, (std::vector<int>{128, 128, 128}));
  EXPECT_DOUBLE_EQ(c.core.batchnorm_decay, 0.9);
  EXPECT_TRUE(c.core.batchnorm_shared_rotations);
  EXPECT_DOUBLE_EQ(c.core.coeff_init_sd, 0.1);
  const std::string text = to_yaml(c);
  EXPECT_EQ(to_yaml(parse_model_config(text, "roundtrip")), text);
  EXPECT_NE(config_error_of("core: {kind: roteq, channels: [8, 8, 8]}").find("features"), std::string::npos);
  EXPECT_NE(config_error_of("core: {features: [8, 8, 8]}").find("unknown key"), std::string::npos);  // cnn has no features
  EXPECT_NE(config_error_of("core: {kind: roteq, features: [8, 8]}").find("core.filter_sizes"), std::string::npos);
  EXPECT_NE(config_error_of("core: {kind: roteq, features: [8, 0, 8]}").find("features"), std::string::npos);
  EXPECT_NE(config_error_of("architecture: roteq_17").find("roteq_16"), std::string::npos);
}

// `architecture: NAME` is the core and readout of sweeps/models/NAME.yaml (the only place presets are written);
// the file's own keys override them; V1SYSID_MODELS_DIR names another folder.
TEST(ModelConfig, ArchitecturePresetsAreTheSweepModelFiles) {
  const auto names = architecture_names();
  for (const char* paper : {"roteq_8", "roteq_12", "roteq_16", "roteq_20", "roteq_24", "roteq_28", "roteq_32",
                            "roteq_40", "roteq_48", "roteq_16_positive_features", "roteq_16_l2_features", "cnn_32",
                            "cnn_64", "cnn_128", "cnn_128_128_256"})
    EXPECT_NE(std::find(names.begin(), names.end(), paper), names.end()) << paper;
  for (const auto& name : names) {
    SCOPED_TRACE(name);
    const auto preset = parse_model_config("architecture: " + name + "\n", "preset");
    EXPECT_EQ(preset.architecture, name);
    const std::string text = to_yaml(preset);
    EXPECT_EQ(to_yaml(parse_model_config(text, "roundtrip")), text);
    const auto file = load_model_config(v1sysid::testing::source_dir() + "/sweeps/models/" + name + ".yaml");
    auto core_and_readout = [](ModelConfig c) {
      c.architecture.clear();
      c.train = TrainConfig{};
      return to_yaml(c);
    };
    EXPECT_EQ(core_and_readout(file), core_and_readout(preset));
  }
  const auto r16 = parse_model_config("architecture: roteq_16\ncore: {features: [16, 16, 8]}\n", "m");
  EXPECT_EQ(r16.core.channels, (std::vector<int>{128, 128, 64}));
  EXPECT_DOUBLE_EQ(r16.core.smooth_weight, 0.0249692);
  EXPECT_DOUBLE_EQ(r16.readout.weight, 0.0170696);
  const auto l2 = parse_model_config("architecture: roteq_16_l2_features", "m");
  EXPECT_EQ(l2.readout.regularizer, "l1_mask_l2_features");
  EXPECT_DOUBLE_EQ(l2.readout.feature_weight, 0.315181);
  EXPECT_TRUE(parse_model_config("architecture: roteq_16_positive_features", "m").readout.positive_features);
  EXPECT_EQ(parse_model_config("architecture: cnn_128_128_256", "m").core.channels, (std::vector<int>{128, 128, 256}));
  EXPECT_NE(config_error_of("architecture: ../models/roteq_16").find("unknown preset"), std::string::npos);

  // Another folder: its files are the presets.
  v1sysid::testing::ScratchDir dir;
  std::ofstream(dir / "wide.yaml") << "core: {kind: cnn, channels: [7, 7, 7]}\nreadout: {weight: 0.01}\n";
  std::ofstream(dir / "no_readout.yaml") << "core: {kind: cnn}\n";
  setenv("V1SYSID_MODELS_DIR", dir.path.c_str(), 1);
  EXPECT_EQ(architecture_names(), (std::vector<std::string>{"no_readout", "wide"}));
  EXPECT_EQ(parse_model_config("architecture: wide", "m").core.channels, (std::vector<int>{7, 7, 7}));
  EXPECT_NE(config_error_of("architecture: no_readout").find("has no 'readout' mapping"), std::string::npos);
  EXPECT_NE(config_error_of("architecture: roteq_16").find("use one of: no_readout, wide"), std::string::npos);
  unsetenv("V1SYSID_MODELS_DIR");
}

TEST(Model, SlotTableInitialisationAndShapes) {
  auto c = parse_model_config(std::string(kBase) + "readout: {weight: 0.05}\n", "m");
  Model<float> m(c, 12, 10, 7);
  auto& a = m.arena();
  EXPECT_EQ(a.slot(m.core_slot(0, "weight")).extents, (std::array<size_t, 4>{3, 1, 5, 5}));
  EXPECT_EQ(a.slot(m.core_slot(1, "weight")).extents, (std::array<size_t, 4>{4, 3, 3, 3}));
  EXPECT_GE(m.core_slot(0, "bn_gamma"), 0);
  EXPECT_EQ(m.core_slot(1, "bn_gamma"), -1);  // no BN scale on the last layer
  EXPECT_FALSE(a.slot(m.core_slot(0, "bn_running_var")).trainable);
  EXPECT_EQ(a.slot(m.readout_slot(0, "mask")).extents, (std::array<size_t, 4>{7, 12, 10, 1}));
  EXPECT_EQ(a.slot(m.readout_slot(0, "features")).extents, (std::array<size_t, 4>{7, 4, 1, 1}));
  std::vector<double> means{0.0, 1e-9, 0.5, 1.0, 2.0, 5.0, 0.2};
  m.initialize(5, means);
  auto p = Kokkos::create_mirror_view_and_copy(HostSpace(), a.params());
  const auto& bias = a.slot(m.readout_slot(0, "bias"));
  EXPECT_NEAR(p(bias.offset + 3), 0.5 * std::log(std::exp(1.0) - 1.0), 1e-6);
  EXPECT_NEAR(p(bias.offset + 0), 0.5 * std::log(std::exp(1e-3) - 1.0), 1e-5);  // clamped, finite
  EXPECT_EQ(p(bias.offset + 0), p(bias.offset + 1));
  const auto& w = a.slot(m.core_slot(0, "weight"));
  double sum2 = 0, maxabs = 0;
  for (size_t i = 0; i < w.size; ++i) {
    sum2 += double(p(w.offset + i)) * p(w.offset + i);
    maxabs = std::max(maxabs, std::fabs(double(p(w.offset + i))));
  }
  EXPECT_LE(maxabs, 0.02 + 1e-7);  // truncated at 2 sd
  EXPECT_GT(std::sqrt(sum2 / w.size), 0.004);
  EXPECT_EQ(p(a.slot(m.core_slot(0, "bn_running_var")).offset), 1.0f);
  // Same seed, same parameters; another seed, others.
  Model<float> m2(c, 12, 10, 7), m3(c, 12, 10, 7);
  m2.initialize(5, means);
  m3.initialize(6, means);
  auto p2 = Kokkos::create_mirror_view_and_copy(HostSpace(), m2.arena().params());
  auto p3 = Kokkos::create_mirror_view_and_copy(HostSpace(), m3.arena().params());
  bool same2 = true, same3 = true;
  for (size_t i = 0; i < a.size(); ++i) {
    same2 &= p(i) == p2(i);
    same3 &= p(i) == p3(i);
  }
  EXPECT_TRUE(same2);
  EXPECT_FALSE(same3);
  EXPECT_THROW(m.initialize(1, std::vector<double>(3, 1.0)), ShapeError);
  auto ws = m.make_workspace(4);
  EXPECT_THROW(m.forward(ws, 5, false), ShapeError);
}

TEST(Model, ValidCoreThatEatsTheImageIsAShapeError) {
  auto c = parse_model_config("core: {filter_sizes: [13, 5, 5], channels: [2, 2, 2], padding: valid}", "m");
  EXPECT_THROW(Model<float>(c, 16, 40, 3), ShapeError);
}

TEST(Model, InverseSoftplus) {
  for (double y : {1e-6, 0.01, 0.5, 1.0, 3.0, 30.0}) EXPECT_NEAR(std::log1p(std::exp(inverse_softplus(y))), y, 1e-12 * std::max(1.0, y));
}

}  // namespace
