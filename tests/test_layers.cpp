// Tests of src/layers/: finite-difference checks of every backward (double, host space) on tiny layers,
// forward passes against naive reference loops (float and double), batch-norm train/eval semantics, the
// Poisson loss against its closed form, and shape errors.
//
// Finite differences: L = sum(w .* out) with fixed random w, central differences with step
// eps = 1e-6 * max(1, |x|), error |g_fd - g_an| / max(floor, |g_fd| + |g_an|) < 1e-6. The difference is
// taken per output element, sum(w .* (out(x+eps) - out(x-eps))) / 2 eps, so outputs that do not depend
// on x contribute exactly zero and the round-off is that of the few outputs that do (~1e-16 |out| / eps).
// The floor is 1e-3 rather than style.md's 1e-8: that round-off (~1e-10) makes an absolute agreement of
// 1e-9 the most a correct gradient can promise for entries near zero; entries >= 1e-3 are held to 1e-6
// relative.
// Parameter gradients are pre-filled with 0.25 (they must accumulate) and input gradients with 1e30
// (they must be assigned).
#include "layers/activations.hpp"
#include "layers/batchnorm.hpp"
#include "layers/conv2d.hpp"
#include "layers/factorized_readout.hpp"
#include "layers/poisson_loss.hpp"
#include "layers/winograd.hpp"
#include "layer_test_support.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace {

using namespace v1sysid::layers;
using E = v1sysid::HostExecSpace;
using namespace v1sysid::testing;

// Values of random sign with |x| in [0.1, 1]: keeps parameters that go through abs() away from the kink.
Vec away_from_zero(std::size_t n, unsigned seed) {
  Vec v = random_vec(n, seed, 0.1, 1.0);
  Vec s = random_vec(n, seed + 1000);
  for (std::size_t i = 0; i < n; ++i) v[i] *= s[i] < 0 ? -1.0 : 1.0;
  return v;
}

// ---- conv2d --------------------------------------------------------------------------------------------

template <class T>
std::vector<double> naive_conv(const Conv2dShape& s, const std::vector<T>& weight, const std::vector<T>& in) {
  const int Ho = s.H_out(), Wo = s.W_out(), p = s.pad();
  std::vector<double> out(std::size_t(s.B) * s.C_out * Ho * Wo, 0.0);
  for (int b = 0; b < s.B; ++b)
    for (int o = 0; o < s.C_out; ++o)
      for (int y = 0; y < Ho; ++y)
        for (int x = 0; x < Wo; ++x) {
          double acc = 0;
          for (int i = 0; i < s.C_in; ++i)
            for (int ky = 0; ky < s.K; ++ky)
              for (int kx = 0; kx < s.K; ++kx) {
                const int iy = y + ky - p, ix = x + kx - p;
                if (iy < 0 || iy >= s.H || ix < 0 || ix >= s.W) continue;
                acc += double(weight[((std::size_t(o) * s.C_in + i) * s.K + ky) * s.K + kx]) *
                       double(in[((std::size_t(b) * s.C_in + i) * s.H + iy) * s.W + ix]);
              }
          out[((std::size_t(b) * s.C_out + o) * Ho + y) * Wo + x] = acc;
        }
  return out;
}

template <class T>
void expect_conv_matches_naive(const Conv2dShape& s, double tol) {
  auto weight = random_vec<T>(std::size_t(s.C_out) * s.C_in * s.K * s.K, 1);
  auto in = random_vec<T>(std::size_t(s.B) * s.C_in * s.H * s.W, 2);
  std::vector<T> out(std::size_t(s.B) * s.C_out * s.H_out() * s.W_out(), T(7));
  std::vector<T> ws(conv2d_workspace_size(s));
  conv2d_forward<T>(E(), s, u4<const T>(weight, s.C_out, s.C_in, s.K, s.K), u4<const T>(in, s.B, s.C_in, s.H, s.W),
                    u4<T>(out, s.B, s.C_out, s.H_out(), s.W_out()), u1<T>(ws));
  const auto ref = naive_conv(s, weight, in);
  for (std::size_t i = 0; i < ref.size(); ++i)
    ASSERT_NEAR(double(out[i]), ref[i], tol * (1 + std::abs(ref[i]))) << describe(s) << " out[" << i << "]";
}

// 5x5 SAME shapes also run through both Winograd tile sizes (forced), and one has enough channels for the
// automatic choice to take Winograd (checked, so the case keeps testing that path if the threshold moves).
std::vector<Conv2dShape> conv_cases() {
  std::vector<Conv2dShape> cases;
  for (int K : {1, 3, 5})
    for (Padding p : {Padding::same, Padding::valid}) cases.push_back(Conv2dShape{2, 3, 4, 7, 7, K, p});
  cases.push_back(Conv2dShape{2, 2, 3, 6, 9, 3, Padding::same});   // non-square image
  cases.push_back(Conv2dShape{1, 2, 2, 5, 8, 5, Padding::valid});  // non-square VALID, batch 1
  for (ConvAlgorithm a : {ConvAlgorithm::winograd, ConvAlgorithm::winograd2})
    cases.push_back(Conv2dShape{2, 3, 4, 7, 9, 5, Padding::same, a});  // tiles cut at both image edges
  const Conv2dShape automatic{1, 8, 9, 6, 5, 5, Padding::same};
  EXPECT_EQ(conv2d_resolve_algorithm(automatic), ConvAlgorithm::winograd) << describe(automatic);
  cases.push_back(automatic);
  return cases;
}

TEST(Conv2d, ForwardMatchesNaiveConvolution) {
  for (const auto& s : conv_cases()) {
    // Winograd's transforms cost about 20x im2col's rounding error (docs/performance.md).
    const bool winograd = conv2d_resolve_algorithm(s) != ConvAlgorithm::im2col;
    expect_conv_matches_naive<double>(s, winograd ? 1e-10 : 1e-12);
    expect_conv_matches_naive<float>(s, winograd ? 1e-4 : 1e-5);
  }
}

TEST(Conv2d, GradientsMatchFiniteDifferences) {
  for (const auto& s : conv_cases()) {
    const int Ho = s.H_out(), Wo = s.W_out();
    Vec weight = random_vec(std::size_t(s.C_out) * s.C_in * s.K * s.K, 11);
    Vec in = random_vec(std::size_t(s.B) * s.C_in * s.H * s.W, 12);
    Vec w = random_vec(std::size_t(s.B) * s.C_out * Ho * Wo, 13);
    Vec out(w.size()), ws(conv2d_workspace_size(s));
    auto forward = [&]() {
      conv2d_forward<double>(E(), s, u4<const double>(weight, s.C_out, s.C_in, s.K, s.K),
                             u4<const double>(in, s.B, s.C_in, s.H, s.W), u4<double>(out, s.B, s.C_out, Ho, Wo),
                             u1<double>(ws));
      return out;
    };
    Vec d_weight(weight.size(), kParamGradFill), d_in(in.size(), kInputGradFill);
    forward();
    conv2d_backward<double>(E(), s, u4<const double>(weight, s.C_out, s.C_in, s.K, s.K),
                            u4<const double>(in, s.B, s.C_in, s.H, s.W), u4<const double>(w, s.B, s.C_out, Ho, Wo),
                            u4<double>(d_in, s.B, s.C_in, s.H, s.W), u4<double>(d_weight, s.C_out, s.C_in, s.K, s.K),
                            u1<double>(ws));
    // The conv is linear in weight and in, so a large step is exact and keeps the round-off of Winograd's
    // transforms (which touch every output of a tile, not only the 5x5 that depend on x) out of the estimate.
    check_gradients(describe(s), {{"weight", &weight, &d_weight, kParamGradFill}, {"in", &in, &d_in, 0.0}}, w, forward,
                    1e-3, 1e-2);

    // Without d_in (the first layer) the weight gradient is the same.
    Vec d_weight2(weight.size(), kParamGradFill);
    conv2d_backward<double>(E(), s, u4<const double>(weight, s.C_out, s.C_in, s.K, s.K),
                            u4<const double>(in, s.B, s.C_in, s.H, s.W), u4<const double>(w, s.B, s.C_out, Ho, Wo),
                            UView4<double, E>(), u4<double>(d_weight2, s.C_out, s.C_in, s.K, s.K), u1<double>(ws));
    for (std::size_t i = 0; i < d_weight.size(); ++i)
      ASSERT_DOUBLE_EQ(d_weight[i], d_weight2[i]) << describe(s) << " d_weight[" << i << "] without d_in";
  }
}

TEST(Conv2d, ShapeErrorsNameTheArgument) {
  const Conv2dShape s{2, 3, 4, 7, 7, 3, Padding::same};
  Vec weight(4 * 3 * 3 * 3), in(2 * 3 * 7 * 7), out(2 * 4 * 7 * 7), ws(conv2d_workspace_size(s));
  try {
    conv2d_forward<double>(E(), s, u4<const double>(weight, 4, 3, 3, 3), u4<const double>(in, 2, 3, 7, 7),
                           u4<double>(out, 2, 4, 7, 6), u1<double>(ws));
    FAIL() << "expected ShapeError";
  } catch (const v1sysid::ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("out has extents (2, 4, 7, 6)"), std::string::npos) << e.what();
  }
  Vec small(ws.size() - 1);
  EXPECT_THROW(conv2d_forward<double>(E(), s, u4<const double>(weight, 4, 3, 3, 3), u4<const double>(in, 2, 3, 7, 7),
                                      u4<double>(out, 2, 4, 7, 7), u1<double>(small)),
               v1sysid::ShapeError);
  try {
    validate(Conv2dShape{2, 3, 4, 7, 7, 4, Padding::same});
    FAIL() << "expected ShapeError";
  } catch (const v1sysid::ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("odd kernel"), std::string::npos) << e.what();
  }
  EXPECT_THROW(validate(Conv2dShape{2, 3, 4, 7, 7, 9, Padding::valid}), v1sysid::ShapeError);
}

// ---- Winograd against im2col -----------------------------------------------------------------------------

// max |x - ref| / max |ref| (the Winograd error scales with the magnitude of the whole output, not per element).
template <class T>
double max_relative_difference(const std::vector<T>& x, const std::vector<T>& ref) {
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    diff = std::max(diff, std::abs(double(x[i]) - double(ref[i])));
    scale = std::max(scale, std::abs(double(ref[i])));
  }
  return diff / scale;
}

// Outputs of conv2d_forward and (d_in, d_weight) of conv2d_backward of one shape with one algorithm.
template <class T>
struct ConvResults {
  std::vector<T> out, d_in, d_weight;
};

template <class T>
ConvResults<T> run_conv(Conv2dShape s, ConvAlgorithm algorithm) {
  s.algorithm = algorithm;
  auto weight = random_vec<T>(std::size_t(s.C_out) * s.C_in * 25, 41);
  auto in = random_vec<T>(std::size_t(s.B) * s.C_in * s.H * s.W, 42, 0.0, 1.0);  // positive, like activations
  auto d_out = random_vec<T>(std::size_t(s.B) * s.C_out * s.H * s.W, 43);
  ConvResults<T> r;
  r.out.assign(d_out.size(), T(7));
  r.d_in.assign(in.size(), T(kInputGradFill));
  r.d_weight.assign(weight.size(), T(kParamGradFill));
  std::vector<T> ws(conv2d_workspace_size(s));
  conv2d_forward<T>(E(), s, u4<const T>(weight, s.C_out, s.C_in, 5, 5), u4<const T>(in, s.B, s.C_in, s.H, s.W),
                    u4<T>(r.out, s.B, s.C_out, s.H, s.W), u1<T>(ws));
  conv2d_backward<T>(E(), s, u4<const T>(weight, s.C_out, s.C_in, 5, 5), u4<const T>(in, s.B, s.C_in, s.H, s.W),
                     u4<const T>(d_out, s.B, s.C_out, s.H, s.W), u4<T>(r.d_in, s.B, s.C_in, s.H, s.W),
                     u4<T>(r.d_weight, s.C_out, s.C_in, 5, 5), u1<T>(ws));
  return r;
}

template <class T>
void expect_winograd_matches_im2col(const Conv2dShape& s, ConvAlgorithm algorithm, double tol) {
  const auto ref = run_conv<T>(s, ConvAlgorithm::im2col);
  const auto got = run_conv<T>(s, algorithm);
  const std::string ctx = describe(s) + " " + to_string(algorithm) + (sizeof(T) == 4 ? " float" : " double");
  if (std::getenv("V1SYSID_WINOGRAD_VERBOSE"))
    std::printf("%s: out %.3g d_in %.3g d_weight %.3g\n", ctx.c_str(), max_relative_difference(got.out, ref.out),
                max_relative_difference(got.d_in, ref.d_in), max_relative_difference(got.d_weight, ref.d_weight));
  EXPECT_LT(max_relative_difference(got.out, ref.out), tol) << ctx << " out";
  EXPECT_LT(max_relative_difference(got.d_in, ref.d_in), tol) << ctx << " d_in";
  EXPECT_LT(max_relative_difference(got.d_weight, ref.d_weight), tol) << ctx << " d_weight";
}

TEST(Conv2dWinograd, ForwardAndGradientsMatchIm2col) {
  for (ConvAlgorithm a : {ConvAlgorithm::winograd, ConvAlgorithm::winograd2}) {
    std::vector<Conv2dShape> cases = {
        {1, 3, 5, 7, 9, 5, Padding::same},    // batch 1, C_in != C_out, sizes not multiples of the tile
        {2, 6, 2, 1, 13, 5, Padding::same},   // a single row
        {3, 17, 9, 12, 8, 5, Padding::same},  // sizes multiples of both tiles; 17 channels: 16 + 1 per filter group
        {1, 3, 4, 6, 70, 5, Padding::same},   // rows of more than one group of tiles, the last one partial
    };
    // More images than one chunk of this tile size holds, the last chunk partial.
    Conv2dShape many{1000, 4, 3, 23, 19, 5, Padding::same, a};
    const int chunk = winograd_chunk_images(many);
    ASSERT_GT(chunk, 1) << "the chunk is a single image: use a smaller image for this case";
    many.B = 2 * chunk + 1;
    cases.push_back(many);
    for (const auto& s : cases) {
      expect_winograd_matches_im2col<double>(s, a, 1e-10);
      expect_winograd_matches_im2col<float>(s, a, 1e-4);
    }
  }
}

TEST(Conv2dWinograd, WorkspaceGrowsWithTheBatchAndUnsupportedShapesThrow) {
  Conv2dShape s{1, 32, 32, 36, 64, 5, Padding::same};
  ASSERT_EQ(conv2d_resolve_algorithm(s), ConvAlgorithm::winograd);
  std::size_t last = 0;
  for (int B = 1; B <= 40; ++B) {
    s.B = B;
    EXPECT_GE(conv2d_workspace_size(s), last) << describe(s);
    last = conv2d_workspace_size(s);
  }
  // Chunks bound the workspace: beyond one chunk of images it no longer grows with the batch.
  s.B = winograd_chunk_images(Conv2dShape{1000, 32, 32, 36, 64, 5, Padding::same, ConvAlgorithm::winograd});
  const std::size_t one_chunk = conv2d_workspace_size(s);
  s.B = 1000;
  EXPECT_EQ(conv2d_workspace_size(s), one_chunk) << describe(s);
  // The first layer (13x13, one input channel), thin layers and VALID padding stay im2col.
  EXPECT_EQ(conv2d_resolve_algorithm(Conv2dShape{8, 1, 128, 36, 64, 13, Padding::valid}), ConvAlgorithm::im2col);
  EXPECT_EQ(conv2d_resolve_algorithm(Conv2dShape{8, 4, 128, 36, 64, 5, Padding::same}), ConvAlgorithm::im2col);
  EXPECT_EQ(conv2d_resolve_algorithm(Conv2dShape{8, 128, 4, 36, 64, 5, Padding::same}), ConvAlgorithm::im2col);
  EXPECT_EQ(conv2d_resolve_algorithm(Conv2dShape{8, 128, 128, 36, 64, 5, Padding::valid}), ConvAlgorithm::im2col);
  EXPECT_THROW(validate(Conv2dShape{2, 3, 4, 7, 7, 3, Padding::same, ConvAlgorithm::winograd}), v1sysid::ShapeError);
  EXPECT_THROW(validate(Conv2dShape{2, 3, 4, 9, 9, 5, Padding::valid, ConvAlgorithm::winograd2}), v1sysid::ShapeError);
  EXPECT_EQ(parse_conv_algorithm("im2col"), ConvAlgorithm::im2col);
  EXPECT_THROW(parse_conv_algorithm("fft"), v1sysid::ConfigError);
}

TEST(DepthwiseConv2d, ForwardMatchesNaiveAndGradientsMatchFiniteDifferences) {
  for (const auto& s : {DepthwiseConv2dShape{2, 3, 7, 7, 3, Padding::same}, DepthwiseConv2dShape{2, 3, 7, 8, 5, Padding::valid},
                        DepthwiseConv2dShape{1, 2, 6, 5, 5, Padding::same}}) {
    const int Ho = s.H_out(), Wo = s.W_out();
    Vec weight = random_vec(std::size_t(s.C) * s.K * s.K, 21);
    Vec in = random_vec(std::size_t(s.B) * s.C * s.H * s.W, 22);
    Vec w = random_vec(std::size_t(s.B) * s.C * Ho * Wo, 23);
    Vec out(w.size());
    auto forward = [&]() {
      depthwise_conv2d_forward<double>(E(), s, u4<const double>(weight, s.C, 1, s.K, s.K),
                                       u4<const double>(in, s.B, s.C, s.H, s.W), u4<double>(out, s.B, s.C, Ho, Wo));
      return out;
    };
    forward();
    // Naive reference: a dense conv whose weight is zero off the channel diagonal.
    const Conv2dShape dense{s.B, s.C, s.C, s.H, s.W, s.K, s.padding};
    Vec dense_weight(std::size_t(s.C) * s.C * s.K * s.K, 0.0);
    for (int c = 0; c < s.C; ++c)
      for (int k = 0; k < s.K * s.K; ++k) dense_weight[(std::size_t(c) * s.C + c) * s.K * s.K + k] = weight[c * s.K * s.K + k];
    const auto ref = naive_conv(dense, dense_weight, in);
    for (std::size_t i = 0; i < ref.size(); ++i) ASSERT_NEAR(out[i], ref[i], 1e-12) << describe(s) << " out[" << i << "]";

    Vec d_weight(weight.size(), kParamGradFill), d_in(in.size(), kInputGradFill);
    depthwise_conv2d_backward<double>(E(), s, u4<const double>(weight, s.C, 1, s.K, s.K),
                                      u4<const double>(in, s.B, s.C, s.H, s.W), u4<const double>(w, s.B, s.C, Ho, Wo),
                                      u4<double>(d_in, s.B, s.C, s.H, s.W), u4<double>(d_weight, s.C, 1, s.K, s.K));
    check_gradients(describe(s), {{"weight", &weight, &d_weight, kParamGradFill}, {"in", &in, &d_in, 0.0}}, w, forward);
  }
}

// ---- activations ---------------------------------------------------------------------------------------

TEST(Activations, GradientsMatchFiniteDifferencesAndValuesMatchFormulas) {
  for (Activation act : {Activation::none, Activation::softplus, Activation::elu}) {
    Vec in = random_vec(200, 31, -30.0, 30.0);
    in[0] = -700.0;  // underflow region of softplus/ELU
    in[1] = 40.0;    // softplus(x) = x to double precision
    Vec w = random_vec(in.size(), 32), out(in.size());
    auto forward = [&]() {
      activation_forward<double>(E(), act, u1<const double>(in), u1<double>(out));
      return out;
    };
    forward();
    for (std::size_t i = 0; i < in.size(); ++i) {
      const double x = in[i];
      const double expect = act == Activation::softplus ? std::log1p(std::exp(x))
                            : act == Activation::elu    ? (x > 0 ? x : std::expm1(x))
                                                        : x;
      ASSERT_NEAR(out[i], expect, 1e-14 * (1 + std::abs(expect))) << to_string(act) << " x=" << x;
    }
    Vec d_in(in.size(), kInputGradFill);
    activation_backward<double>(E(), act, u1<const double>(out), u1<const double>(w), u1<double>(d_in));
    check_gradients(std::string("activation ") + to_string(act), {{"in", &in, &d_in, 0.0}}, w, forward);
  }
  EXPECT_EQ(activation_from_string("elu"), Activation::elu);
  EXPECT_THROW(activation_from_string("relu"), v1sysid::ConfigError);
}

// The float path of activate()/activation_grad_from_output() uses the vectorisable approximations in
// activations.hpp (fast::); they must agree with libm in double to a few float ulp over the whole range.
TEST(Activations, FloatFastPathMatchesLibm) {
  double worst = 0;
  for (int k = -200000; k <= 200000; ++k) {
    const float x = float(k) * 5e-4f;  // [-100, 100]
    const double xd = x;
    const double sp = std::log1p(std::exp(-std::abs(xd))) + std::max(xd, 0.0);
    const double checks[3][2] = {
        {activate(Activation::softplus, x), sp},
        {activate(Activation::elu, x), xd > 0 ? xd : std::expm1(xd)},
        {activation_grad_from_output(Activation::softplus, float(sp)), -std::expm1(-double(float(sp)))}};
    for (const auto& c : checks) {
      const double err = std::abs(c[0] - c[1]) / (std::abs(c[1]) + 1e-37);
      worst = std::max(worst, std::abs(c[1]) > 1e-37 ? err : 0.0);
      ASSERT_LE(std::abs(c[0] - c[1]), 6e-7 * std::abs(c[1]) + 2e-38) << "x=" << x << " got " << c[0] << " expected " << c[1];
    }
  }
  std::printf("float fast path: worst relative error %.3g\n", worst);
}

// ---- batch norm ----------------------------------------------------------------------------------------

struct BnCase {
  BatchNormShape s;
  BatchNormOptions o;
  Activation act;
};

std::vector<BnCase> bn_cases() {
  std::vector<BnCase> cases;
  const BatchNormShape s{2, 4, 2, 7, 7};  // R = 4 rotations x F = 2 features
  for (bool shared : {false, true})
    for (bool scale : {true, false})
      for (Activation act : {Activation::none, Activation::softplus, Activation::elu}) {
        BatchNormOptions o;
        o.shared_rotations = shared;
        o.scale = scale;
        cases.push_back({s, o, act});
      }
  cases.push_back({BatchNormShape{3, 1, 3, 4, 5}, BatchNormOptions{0.98, 1e-3, true, false, true}, Activation::softplus});
  return cases;
}

std::string describe(const BnCase& c, const char* mode) {
  return std::string(mode) + " " + describe(c.s, c.o) + " act=" + to_string(c.act);
}

TEST(BatchNorm, TrainingGradientsMatchFiniteDifferences) {
  for (const auto& c : bn_cases()) {
    const auto& s = c.s;
    const int G = batchnorm_groups(s, c.o), C = s.C();
    const std::size_t n = std::size_t(s.B) * C * s.H * s.W;
    Vec in = random_vec(n, 41, -2.0, 3.0), w = random_vec(n, 42), out(n);
    Vec gamma = random_vec(G, 43, 0.5, 1.5), beta = random_vec(G, 44);
    Vec mean(G), rstd(G), rm(G, 0.0), rv(G, 1.0);
    auto gamma_view = c.o.scale ? u1<const double>(gamma) : UView1<const double, E>();
    auto forward = [&]() {
      batchnorm_forward_train<double>(E(), s, c.o, c.act, gamma_view, u1<const double>(beta),
                                      u4<const double>(in, s.B, C, s.H, s.W), u4<double>(out, s.B, C, s.H, s.W),
                                      u1<double>(mean), u1<double>(rstd), u1<double>(rm), u1<double>(rv));
      return out;
    };
    forward();
    Vec d_in(n, kInputGradFill), d_gamma(G, kParamGradFill), d_beta(G, kParamGradFill);
    batchnorm_backward_train<double>(E(), s, c.o, c.act, gamma_view, u4<const double>(in, s.B, C, s.H, s.W),
                                     u4<const double>(out, s.B, C, s.H, s.W), u1<const double>(mean),
                                     u1<const double>(rstd), u4<const double>(w, s.B, C, s.H, s.W),
                                     u4<double>(d_in, s.B, C, s.H, s.W),
                                     c.o.scale ? u1<double>(d_gamma) : UView1<double, E>(), u1<double>(d_beta));
    std::vector<Checked> checked{{"in", &in, &d_in, 0.0}, {"beta", &beta, &d_beta, kParamGradFill}};
    if (c.o.scale) checked.push_back({"gamma", &gamma, &d_gamma, kParamGradFill});
    // Through the batch statistics every input moves all outputs of its group (~400 here), so the FD
    // round-off is ~20x that of a local layer: floor 1e-2 instead of 1e-3.
    check_gradients(describe(c, "train"), checked, w, forward, 1e-2);
    if (!c.o.scale) EXPECT_EQ(d_gamma, Vec(G, kParamGradFill)) << "d_gamma must not be touched without scale";
  }
}

TEST(BatchNorm, EvaluationGradientsMatchFiniteDifferences) {
  for (const auto& c : bn_cases()) {
    const auto& s = c.s;
    const int G = batchnorm_groups(s, c.o), C = s.C();
    const std::size_t n = std::size_t(s.B) * C * s.H * s.W;
    Vec in = random_vec(n, 51, -2.0, 3.0), w = random_vec(n, 52), out(n);
    Vec gamma = random_vec(G, 53, 0.5, 1.5), beta = random_vec(G, 54);
    Vec rm = random_vec(G, 55), rv = random_vec(G, 56, 0.5, 2.0);
    auto gamma_view = c.o.scale ? u1<const double>(gamma) : UView1<const double, E>();
    auto forward = [&]() {
      batchnorm_forward_eval<double>(E(), s, c.o, c.act, gamma_view, u1<const double>(beta), u1<const double>(rm),
                                     u1<const double>(rv), u4<const double>(in, s.B, C, s.H, s.W),
                                     u4<double>(out, s.B, C, s.H, s.W));
      return out;
    };
    forward();
    Vec d_in(n, kInputGradFill), d_gamma(G, kParamGradFill), d_beta(G, kParamGradFill);
    batchnorm_backward_eval<double>(E(), s, c.o, c.act, gamma_view, u1<const double>(rm), u1<const double>(rv),
                                    u4<const double>(in, s.B, C, s.H, s.W), u4<const double>(out, s.B, C, s.H, s.W),
                                    u4<const double>(w, s.B, C, s.H, s.W), u4<double>(d_in, s.B, C, s.H, s.W),
                                    c.o.scale ? u1<double>(d_gamma) : UView1<double, E>(), u1<double>(d_beta));
    std::vector<Checked> checked{{"in", &in, &d_in, 0.0}, {"beta", &beta, &d_beta, kParamGradFill}};
    if (c.o.scale) checked.push_back({"gamma", &gamma, &d_gamma, kParamGradFill});
    check_gradients(describe(c, "eval"), checked, w, forward);
  }
}

// Training normalises with the batch statistics and moves the running statistics by TF's rule (with the
// Bessel-corrected variance); evaluation uses the running statistics and changes nothing.
TEST(BatchNorm, TrainAndEvalSemantics) {
  for (bool shared : {false, true}) {
    const BatchNormShape s{3, 4, 2, 5, 6};
    BatchNormOptions o;
    o.shared_rotations = shared;
    o.momentum = 0.9;
    const int G = batchnorm_groups(s, o), C = s.C(), HW = s.H * s.W;
    const std::size_t n = std::size_t(s.B) * C * HW;
    Vec in = random_vec(n, 61, -1.0, 4.0), out(n), gamma = random_vec(G, 62, 0.5, 1.5), beta = random_vec(G, 63);
    Vec mean(G), rstd(G), rm0 = random_vec(G, 64), rv0 = random_vec(G, 65, 0.5, 2.0);
    Vec rm = rm0, rv = rv0;
    batchnorm_forward_train<double>(E(), s, o, Activation::none, u1<const double>(gamma), u1<const double>(beta),
                                    u4<const double>(in, s.B, C, s.H, s.W), u4<double>(out, s.B, C, s.H, s.W),
                                    u1<double>(mean), u1<double>(rstd), u1<double>(rm), u1<double>(rv));
    const std::string ctx = describe(s, o);
    auto group_of = [&](int c) { return shared ? c % s.F : c; };
    for (int g = 0; g < G; ++g) {
      double sum = 0, sq = 0, cnt = 0;
      for (int b = 0; b < s.B; ++b)
        for (int c = 0; c < C; ++c)
          if (group_of(c) == g)
            for (int i = 0; i < HW; ++i) {
              sum += in[(std::size_t(b) * C + c) * HW + i];
              cnt += 1;
            }
      const double mu = sum / cnt;
      for (int b = 0; b < s.B; ++b)
        for (int c = 0; c < C; ++c)
          if (group_of(c) == g)
            for (int i = 0; i < HW; ++i) sq += std::pow(in[(std::size_t(b) * C + c) * HW + i] - mu, 2);
      const double var = sq / cnt;
      EXPECT_NEAR(mean[g], mu, 1e-12) << ctx;
      EXPECT_NEAR(rstd[g], 1 / std::sqrt(var + o.eps), 1e-12) << ctx;
      EXPECT_NEAR(rm[g], 0.9 * rm0[g] + 0.1 * mu, 1e-12) << ctx << " running mean, group " << g;
      EXPECT_NEAR(rv[g], 0.9 * rv0[g] + 0.1 * var * cnt / (cnt - 1), 1e-12) << ctx << " running var, group " << g;
      // The normalised output has mean beta and variance gamma^2 * var / (var + eps) per group.
      double osum = 0, osq = 0;
      for (int b = 0; b < s.B; ++b)
        for (int c = 0; c < C; ++c)
          if (group_of(c) == g)
            for (int i = 0; i < HW; ++i) osum += out[(std::size_t(b) * C + c) * HW + i];
      const double omu = osum / cnt;
      for (int b = 0; b < s.B; ++b)
        for (int c = 0; c < C; ++c)
          if (group_of(c) == g)
            for (int i = 0; i < HW; ++i) osq += std::pow(out[(std::size_t(b) * C + c) * HW + i] - omu, 2);
      EXPECT_NEAR(omu, beta[g], 1e-12) << ctx;
      EXPECT_NEAR(osq / cnt, gamma[g] * gamma[g] * var / (var + o.eps), 1e-10) << ctx;
    }
    // Evaluation: running statistics, elementwise formula, running statistics unchanged.
    const Vec rm1 = rm, rv1 = rv;
    batchnorm_forward_eval<double>(E(), s, o, Activation::elu, u1<const double>(gamma), u1<const double>(beta),
                                   u1<const double>(rm), u1<const double>(rv), u4<const double>(in, s.B, C, s.H, s.W),
                                   u4<double>(out, s.B, C, s.H, s.W));
    EXPECT_EQ(rm, rm1);
    EXPECT_EQ(rv, rv1);
    for (int b = 0; b < s.B; ++b)
      for (int c = 0; c < C; ++c)
        for (int i = 0; i < HW; ++i) {
          const std::size_t k = (std::size_t(b) * C + c) * HW + i;
          const int g = group_of(c);
          const double z = gamma[g] * (in[k] - rm[g]) / std::sqrt(rv[g] + o.eps) + beta[g];
          ASSERT_NEAR(out[k], z > 0 ? z : std::expm1(z), 1e-12) << ctx << " eval out[" << k << "]";
        }
  }
}

// ---- factorised readout --------------------------------------------------------------------------------

template <class T>
std::vector<double> naive_readout(const FactorizedReadoutShape& s, bool positive, const std::vector<T>& mask,
                                  const std::vector<T>& features, const std::vector<T>& bias, const std::vector<T>& in) {
  const int HW = s.H * s.W;
  std::vector<double> h(std::size_t(s.B) * s.N);
  for (int b = 0; b < s.B; ++b)
    for (int n = 0; n < s.N; ++n) {
      double acc = bias[n];
      for (int c = 0; c < s.C; ++c) {
        double pooled = 0;
        for (int i = 0; i < HW; ++i)
          pooled += std::abs(double(mask[std::size_t(n) * HW + i])) * double(in[(std::size_t(b) * s.C + c) * HW + i]);
        const double f = features[std::size_t(n) * s.C + c];
        acc += (positive ? std::abs(f) : f) * pooled;
      }
      h[std::size_t(b) * s.N + n] = acc;
    }
  return h;
}

template <class T>
void expect_readout_matches_naive(const FactorizedReadoutShape& s, bool positive, double tol) {
  const FactorizedReadoutOptions o{positive};
  auto mask = random_vec<T>(std::size_t(s.N) * s.H * s.W, 71), features = random_vec<T>(std::size_t(s.N) * s.C, 72);
  auto bias = random_vec<T>(s.N, 73), in = random_vec<T>(std::size_t(s.B) * s.C * s.H * s.W, 74);
  std::vector<T> out(std::size_t(s.B) * s.N), cache(factorized_readout_cache_size(s)),
      ws(factorized_readout_workspace_size(s));
  factorized_readout_forward<T>(E(), s, o, u3<const T>(mask, s.N, s.H, s.W), u2<const T>(features, s.N, s.C),
                                u1<const T>(bias), u4<const T>(in, s.B, s.C, s.H, s.W), u2<T>(out, s.B, s.N),
                                u1<T>(cache), u1<T>(ws));
  const auto ref = naive_readout(s, positive, mask, features, bias, in);
  for (std::size_t i = 0; i < ref.size(); ++i)
    ASSERT_NEAR(double(out[i]), ref[i], tol * (1 + std::abs(ref[i]))) << describe(s, o) << " h[" << i << "]";
}

TEST(FactorizedReadout, ForwardMatchesNaivePerNeuronLoop) {
  for (bool positive : {false, true}) {
    expect_readout_matches_naive<double>(FactorizedReadoutShape{3, 4, 5, 6, 7}, positive, 1e-12);
    expect_readout_matches_naive<float>(FactorizedReadoutShape{3, 4, 5, 6, 7}, positive, 1e-5);
    expect_readout_matches_naive<double>(FactorizedReadoutShape{2, 3, 4, 4, 300}, positive, 1e-12);  // > 1 tile
  }
}

TEST(FactorizedReadout, GradientsMatchFiniteDifferences) {
  for (bool positive : {false, true}) {
    const FactorizedReadoutShape s{2, 3, 5, 6, 5};
    const FactorizedReadoutOptions o{positive};
    Vec mask = away_from_zero(std::size_t(s.N) * s.H * s.W, 81), features = away_from_zero(std::size_t(s.N) * s.C, 82);
    Vec bias = random_vec(s.N, 83), in = random_vec(std::size_t(s.B) * s.C * s.H * s.W, 84);
    Vec w = random_vec(std::size_t(s.B) * s.N, 85), out(w.size());
    Vec cache(factorized_readout_cache_size(s)), ws(factorized_readout_workspace_size(s));
    auto forward = [&]() {
      factorized_readout_forward<double>(E(), s, o, u3<const double>(mask, s.N, s.H, s.W),
                                         u2<const double>(features, s.N, s.C), u1<const double>(bias),
                                         u4<const double>(in, s.B, s.C, s.H, s.W), u2<double>(out, s.B, s.N),
                                         u1<double>(cache), u1<double>(ws));
      return out;
    };
    forward();
    Vec d_mask(mask.size(), kParamGradFill), d_features(features.size(), kParamGradFill),
        d_bias(bias.size(), kParamGradFill), d_in(in.size(), kInputGradFill);
    factorized_readout_backward<double>(E(), s, o, u3<const double>(mask, s.N, s.H, s.W),
                                        u2<const double>(features, s.N, s.C), u4<const double>(in, s.B, s.C, s.H, s.W),
                                        u2<const double>(w, s.B, s.N), u1<double>(cache),
                                        u4<double>(d_in, s.B, s.C, s.H, s.W), u3<double>(d_mask, s.N, s.H, s.W),
                                        u2<double>(d_features, s.N, s.C), u1<double>(d_bias), u1<double>(ws));
    check_gradients(describe(s, o),
                    {{"mask_raw", &mask, &d_mask, kParamGradFill},
                     {"features", &features, &d_features, kParamGradFill},
                     {"bias", &bias, &d_bias, kParamGradFill},
                     {"in", &in, &d_in, 0.0}},
                    w, forward);
  }
}

TEST(FactorizedReadout, ZeroMaskEntriesGetNoGradient) {  // sign(0) = 0 convention
  const FactorizedReadoutShape s{2, 2, 3, 3, 2};
  Vec mask = away_from_zero(18, 91), features = away_from_zero(4, 92), bias(2, 0.0), in = random_vec(36, 93);
  mask[4] = 0.0;
  Vec w = random_vec(4, 94), out(4), cache(factorized_readout_cache_size(s)), ws(factorized_readout_workspace_size(s));
  factorized_readout_forward<double>(E(), s, {}, u3<const double>(mask, 2, 3, 3), u2<const double>(features, 2, 2),
                                     u1<const double>(bias), u4<const double>(in, 2, 2, 3, 3), u2<double>(out, 2, 2),
                                     u1<double>(cache), u1<double>(ws));
  Vec d_mask(18, 0.0), d_features(4, 0.0), d_bias(2, 0.0);
  factorized_readout_backward<double>(E(), s, {}, u3<const double>(mask, 2, 3, 3), u2<const double>(features, 2, 2),
                                      u4<const double>(in, 2, 2, 3, 3), u2<const double>(w, 2, 2), u1<double>(cache),
                                      UView4<double, E>(), u3<double>(d_mask, 2, 3, 3), u2<double>(d_features, 2, 2),
                                      u1<double>(d_bias), u1<double>(ws));
  EXPECT_EQ(d_mask[4], 0.0);
  EXPECT_NE(d_mask[5], 0.0);
}

// ---- output nonlinearity and Poisson loss -------------------------------------------------------------

TEST(PoissonLoss, MatchesClosedFormAndGradientsMatchFiniteDifferences) {
  for (OutputNonlinearity f : {OutputNonlinearity::softplus, OutputNonlinearity::elu_plus_one}) {
    const int B = 3, N = 4;
    Vec h = random_vec(B * N, 101, -3.0, 3.0), y = random_vec(B * N, 102, 0.0, 3.0), yhat(B * N);
    y[0] = 0.0;
    const PoissonLossOptions o;
    const double loss = poisson_loss_forward<double>(E(), f, o, u2<const double>(h, B, N), u2<const double>(y, B, N),
                                                     u2<double>(yhat, B, N));
    double expect = 0;
    for (int i = 0; i < B * N; ++i) {
      const double r = f == OutputNonlinearity::softplus ? std::log1p(std::exp(h[i]))
                                                         : (h[i] > 0 ? h[i] + 1 : std::exp(h[i]));
      EXPECT_NEAR(yhat[i], r, 1e-14);
      expect += r - y[i] * std::log(r + 1e-5);
    }
    EXPECT_NEAR(loss, expect / B, 1e-13) << to_string(f);

    Vec pred(B * N);
    output_nonlinearity_forward<double>(E(), f, u2<const double>(h, B, N), u2<double>(pred, B, N));
    EXPECT_EQ(pred, yhat);

    // The output nonlinearity's own backward (the model's input gradient) for a random output gradient w,
    // also in place (d_h aliasing h).
    Vec w = random_vec(B * N, 103, -1.0, 1.0);
    Vec d_h_nl(B * N, kInputGradFill);
    output_nonlinearity_backward<double>(E(), f, u2<const double>(h, B, N), u2<const double>(w, B, N),
                                         u2<double>(d_h_nl, B, N));
    auto nl_fn = [&]() {
      Vec out(B * N);
      output_nonlinearity_forward<double>(E(), f, u2<const double>(h, B, N), u2<double>(out, B, N));
      return out;
    };
    check_gradients(std::string("output nonlinearity, ") + to_string(f), {{"h", &h, &d_h_nl, 0.0}}, w, nl_fn);
    Vec in_place = h;
    output_nonlinearity_backward<double>(E(), f, u2<const double>(in_place, B, N), u2<const double>(w, B, N),
                                         u2<double>(in_place, B, N));
    EXPECT_EQ(in_place, d_h_nl);

    Vec d_h(B * N, kInputGradFill);
    poisson_loss_backward<double>(E(), f, o, u2<const double>(h, B, N), u2<const double>(y, B, N),
                                  u2<double>(d_h, B, N), 2.0);  // d_loss = 2: L = 2 * loss
    auto loss_fn = [&]() {
      return Vec{poisson_loss_forward<double>(E(), f, o, u2<const double>(h, B, N), u2<const double>(y, B, N),
                                              u2<double>(yhat, B, N))};
    };
    check_gradients(std::string("poisson loss, ") + to_string(f), {{"h", &h, &d_h, 0.0}}, Vec{2.0}, loss_fn);
  }
  // A known value: softplus(0) = log 2, y = 1, B = 1: loss = log 2 - log(log 2 + 1e-5).
  Vec h{0.0}, y{1.0}, yhat(1);
  const double loss = poisson_loss_forward<double>(E(), OutputNonlinearity::softplus, PoissonLossOptions{},
                                                   u2<const double>(h, 1, 1), u2<const double>(y, 1, 1),
                                                   u2<double>(yhat, 1, 1));
  EXPECT_NEAR(loss, std::log(2.0) - std::log(std::log(2.0) + 1e-5), 1e-15);
  EXPECT_EQ(output_nonlinearity_from_string("elu_plus_one"), OutputNonlinearity::elu_plus_one);
  EXPECT_THROW(output_nonlinearity_from_string("exp"), v1sysid::ConfigError);
}

}  // namespace
