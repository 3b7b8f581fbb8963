// Tests of the Gaussian readout (src/layers/gaussian_readout.*): forward against a naive bilinear sampler,
// finite differences in double for every gradient (features, bias, mu, Sigma, core output) at positions
// away from the clamp and from pixel boundaries (the bilinear map has kinks at integer pixel coordinates),
// zero gradients where the position was clamped, the noise (mean and covariance of sampled positions over
// many draws, reproducibility from the seed), and the cortex grid predictor.
//
// Finite differences as in test_layers.cpp: L = sum(w .* h) with fixed random w, central differences with
// eps = 1e-6 max(1, |x|), relative error < 1e-6 with a floor of 1e-3 on the denominator. Parameter
// gradients are pre-filled with 0.25 (they must accumulate), the input gradient with 1e30 (assigned).
#include "layers/gaussian_readout.hpp"
#include "layer_test_support.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace {

using namespace v1sysid::layers;
using E = v1sysid::HostExecSpace;
using namespace v1sysid::testing;

// Naive sampler: grid_sample(bilinear, align_corners=True, zeros) at one position.
double naive_sample(const Vec& in, const GaussianReadoutShape& s, int b, int c, double px, double py) {
  const double xp = (px + 1) / 2 * (s.W - 1), yp = (py + 1) / 2 * (s.H - 1);
  const int x0 = int(std::floor(xp)), y0 = int(std::floor(yp));
  double v = 0;
  for (int dy = 0; dy < 2; ++dy)
    for (int dx = 0; dx < 2; ++dx) {
      const int x = x0 + dx, y = y0 + dy;
      if (x < 0 || x >= s.W || y < 0 || y >= s.H) continue;
      const double wx = dx ? xp - x0 : 1 - (xp - x0), wy = dy ? yp - y0 : 1 - (yp - y0);
      v += wx * wy * in[((std::size_t(b) * s.C + c) * s.H + y) * s.W + x];
    }
  return v;
}

// Tensors of one readout; `z` holds noise with every position inside (-0.9, 0.9) and every pixel
// coordinate at least 0.15 from an integer (redrawn per (b, n) until both hold).
struct Problem {
  GaussianReadoutShape s;
  Vec mu, sigma, features, bias, in, z;
};

Problem make_problem(const GaussianReadoutShape& s, unsigned seed) {
  Problem p{s, random_vec(s.N * 2, seed, -0.6, 0.6), random_vec(s.N * 4, seed + 1, -0.2, 0.2),
            random_vec(std::size_t(s.N) * s.C, seed + 2), random_vec(s.N, seed + 3),
            random_vec(std::size_t(s.B) * s.C * s.H * s.W, seed + 4), Vec(std::size_t(s.B) * s.N * 2)};
  std::mt19937 gen(seed + 5);
  std::normal_distribution<double> normal;
  auto frac_ok = [](double v, int size) {
    const double pix = (v + 1) / 2 * (size - 1);
    const double f = pix - std::floor(pix);
    return size == 1 || (f > 0.15 && f < 0.85);
  };
  for (int b = 0; b < s.B; ++b)
    for (int n = 0; n < s.N; ++n) {
      for (;;) {
        const double z0 = normal(gen), z1 = normal(gen);
        const double px = p.mu[2 * n] + p.sigma[4 * n] * z0 + p.sigma[4 * n + 1] * z1;
        const double py = p.mu[2 * n + 1] + p.sigma[4 * n + 2] * z0 + p.sigma[4 * n + 3] * z1;
        if (std::abs(px) < 0.9 && std::abs(py) < 0.9 && frac_ok(px, s.W) && frac_ok(py, s.H)) {
          p.z[(std::size_t(b) * s.N + n) * 2] = z0;
          p.z[(std::size_t(b) * s.N + n) * 2 + 1] = z1;
          break;
        }
      }
    }
  // mu itself (the evaluation position) away from pixel boundaries too.
  for (int n = 0; n < s.N; ++n)
    while (!frac_ok(p.mu[2 * n], s.W) || !frac_ok(p.mu[2 * n + 1], s.H)) {
      p.mu[2 * n] = p.mu[2 * n] > 0.55 ? -0.6 : p.mu[2 * n] + 0.037;
      p.mu[2 * n + 1] = p.mu[2 * n + 1] > 0.55 ? -0.6 : p.mu[2 * n + 1] + 0.029;
    }
  return p;
}

Vec run_forward(Problem& p, bool training, Vec* grid_out = nullptr) {
  const auto& s = p.s;
  Vec grid(std::size_t(s.B) * s.N * 2), out(std::size_t(s.B) * s.N, 7.0);
  gaussian_readout_forward<double>(E(), s, u2<const double>(p.mu, s.N, 2), u3<const double>(p.sigma, s.N, 2, 2),
                                   u2<const double>(p.features, s.N, s.C), u1<const double>(p.bias),
                                   u4<const double>(p.in, s.B, s.C, s.H, s.W),
                                   training ? u3<const double>(p.z, s.B, s.N, 2) : UView3<const double, E>(),
                                   u3<double>(grid, s.B, s.N, 2), u2<double>(out, s.B, s.N));
  if (grid_out) *grid_out = grid;
  return out;
}

std::vector<GaussianReadoutShape> cases() {
  return {GaussianReadoutShape{2, 3, 5, 7, 4}, GaussianReadoutShape{1, 2, 4, 4, 3},
          GaussianReadoutShape{3, 1, 6, 9, 2}};
}

TEST(GaussianReadout, ForwardMatchesNaiveBilinearSampling) {
  for (const auto& s : cases()) {
    auto p = make_problem(s, 10);
    for (bool training : {true, false}) {
      Vec grid;
      const Vec out = run_forward(p, training, &grid);
      for (int b = 0; b < s.B; ++b)
        for (int n = 0; n < s.N; ++n) {
          double px = p.mu[2 * n], py = p.mu[2 * n + 1];
          if (training) {
            const double z0 = p.z[(b * s.N + n) * 2], z1 = p.z[(b * s.N + n) * 2 + 1];
            px += p.sigma[4 * n] * z0 + p.sigma[4 * n + 1] * z1;
            py += p.sigma[4 * n + 2] * z0 + p.sigma[4 * n + 3] * z1;
          }
          EXPECT_NEAR(grid[(b * s.N + n) * 2], px, 1e-14);
          EXPECT_NEAR(grid[(b * s.N + n) * 2 + 1], py, 1e-14);
          double ref = p.bias[n];
          for (int c = 0; c < s.C; ++c) ref += p.features[n * s.C + c] * naive_sample(p.in, s, b, c, px, py);
          EXPECT_NEAR(out[b * s.N + n], ref, 1e-12) << describe(s) << " b=" << b << " n=" << n;
        }
    }
  }
}

TEST(GaussianReadout, CornersAndClampHitTheImageCorners) {
  // mu = (-1, -1) reads pixel (0, 0), mu = (1, 1) pixel (H-1, W-1); a position beyond the edge is clamped.
  GaussianReadoutShape s{1, 1, 3, 4, 3};
  Problem p{s, {-1, -1, 1, 1, 2.5, -3.0}, Vec(12, 0.0), {1, 1, 1}, {0, 0, 0}, random_vec(12, 4), {}};
  const Vec out = run_forward(p, false);
  EXPECT_DOUBLE_EQ(out[0], p.in[0]);
  EXPECT_DOUBLE_EQ(out[1], p.in[11]);
  EXPECT_DOUBLE_EQ(out[2], p.in[3]);  // clamped to (x = 1, y = -1): row 0, last column
}

TEST(GaussianReadout, GradientsMatchFiniteDifferences) {
  for (const auto& s : cases()) {
    for (bool training : {true, false}) {
      auto p = make_problem(s, 20);
      const Vec w = random_vec(std::size_t(s.B) * s.N, 21);
      Vec grid;
      run_forward(p, training, &grid);
      Vec d_mu(p.mu.size(), kParamGradFill), d_sigma(p.sigma.size(), kParamGradFill),
          d_features(p.features.size(), kParamGradFill), d_bias(p.bias.size(), kParamGradFill),
          d_in(p.in.size(), kInputGradFill);
      gaussian_readout_backward<double>(
          E(), s, u2<const double>(p.mu, s.N, 2), u3<const double>(p.sigma, s.N, 2, 2),
          u2<const double>(p.features, s.N, s.C), u4<const double>(p.in, s.B, s.C, s.H, s.W),
          training ? u3<const double>(p.z, s.B, s.N, 2) : UView3<const double, E>(),
          u3<const double>(grid, s.B, s.N, 2), u2<const double>(const_cast<Vec&>(w), s.B, s.N),
          u4<double>(d_in, s.B, s.C, s.H, s.W), u2<double>(d_mu, s.N, 2), u3<double>(d_sigma, s.N, 2, 2),
          u2<double>(d_features, s.N, s.C), u1<double>(d_bias));
      std::vector<Checked> checked{{"mu", &p.mu, &d_mu, kParamGradFill},
                                   {"features", &p.features, &d_features, kParamGradFill},
                                   {"bias", &p.bias, &d_bias, kParamGradFill},
                                   {"in", &p.in, &d_in, 0.0}};
      // In evaluation Sigma does not enter and its gradient stays untouched.
      if (training) checked.push_back({"sigma", &p.sigma, &d_sigma, kParamGradFill});
      else
        for (double g : d_sigma) EXPECT_EQ(g, kParamGradFill);
      check_gradients(describe(s) + (training ? " training" : " eval"), checked, w,
                      [&] { return run_forward(p, training); });
    }
  }
}

TEST(GaussianReadout, ClampedCoordinatesGetNoGradient) {
  // Neuron 0 sits beyond the right edge (x clamped, y free); neuron 1 is inside.
  GaussianReadoutShape s{2, 2, 5, 6, 2};
  Problem p{s, {1.4, 0.13, -0.21, 0.37}, Vec(8, 0.0), random_vec(4, 1), random_vec(2, 2), random_vec(120, 3),
            Vec(8, 0.0)};
  p.sigma = {0.1, 0.02, -0.03, 0.08, 0.05, 0.01, 0.02, 0.06};
  p.z = {0.3, -0.2, 0.1, 0.4, -0.5, 0.25, 0.2, -0.1};
  Vec grid;
  run_forward(p, true, &grid);
  const Vec w = random_vec(4, 4);
  Vec d_mu(4, 0.0), d_sigma(8, 0.0), d_features(4, 0.0), d_bias(2, 0.0);
  gaussian_readout_backward<double>(E(), s, u2<const double>(p.mu, 2, 2), u3<const double>(p.sigma, 2, 2, 2),
                                    u2<const double>(p.features, 2, 2), u4<const double>(p.in, 2, 2, 5, 6),
                                    u3<const double>(p.z, 2, 2, 2), u3<const double>(grid, 2, 2, 2),
                                    u2<const double>(const_cast<Vec&>(w), 2, 2), UView4<double, E>(),
                                    u2<double>(d_mu, 2, 2), u3<double>(d_sigma, 2, 2, 2),
                                    u2<double>(d_features, 2, 2), u1<double>(d_bias));
  EXPECT_EQ(d_mu[0], 0.0);
  EXPECT_EQ(d_sigma[0], 0.0);
  EXPECT_EQ(d_sigma[1], 0.0);
  EXPECT_NE(d_mu[1], 0.0);   // y of neuron 0 is not clamped
  EXPECT_NE(d_mu[2], 0.0);
  EXPECT_NE(d_sigma[2], 0.0);
  // And the finite difference of mu_x of neuron 0 is exactly zero too.
  p.mu[0] += 1e-3;
  const Vec plus = run_forward(p, true);
  p.mu[0] -= 2e-3;
  const Vec minus = run_forward(p, true);
  for (std::size_t i = 0; i < plus.size(); ++i) EXPECT_EQ(plus[i], minus[i]);
}

TEST(GaussianReadout, SampledPositionsHaveTheConfiguredMeanAndCovariance) {
  // B images x N neurons positions, Sigma small enough that nothing is clamped: per neuron the B draws
  // have mean mu and covariance Sigma Sigma^T within 5 standard errors.
  GaussianReadoutShape s{4000, 1, 8, 8, 3};
  Vec mu{0.1, -0.2, -0.3, 0.25, 0.0, 0.0};
  Vec sigma{0.1, 0.0, 0.0, 0.1, 0.12, 0.05, -0.04, 0.08, 0.02, -0.09, 0.07, 0.01};
  std::vector<float> zf(std::size_t(s.B) * s.N * 2);
  gaussian_readout_draw_noise<float>(E(), s, 1234, UView3<float, E>(zf.data(), s.B, s.N, 2));
  Vec z(zf.begin(), zf.end()), features(s.N, 1.0), bias(s.N, 0.0), in(std::size_t(s.B) * 64, 0.0), grid(zf.size()), out(s.B * s.N);
  gaussian_readout_forward<double>(E(), s, u2<const double>(mu, s.N, 2), u3<const double>(sigma, s.N, 2, 2),
                                   u2<const double>(features, s.N, 1), u1<const double>(bias),
                                   u4<const double>(in, s.B, 1, 8, 8),
                                   u3<const double>(z, s.B, s.N, 2), u3<double>(grid, s.B, s.N, 2),
                                   u2<double>(out, s.B, s.N));
  for (int n = 0; n < s.N; ++n) {
    double m[2] = {0, 0}, c[2][2] = {{0, 0}, {0, 0}};
    for (int b = 0; b < s.B; ++b)
      for (int i = 0; i < 2; ++i) m[i] += grid[(b * s.N + n) * 2 + i] / s.B;
    for (int b = 0; b < s.B; ++b)
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j)
          c[i][j] += (grid[(b * s.N + n) * 2 + i] - m[i]) * (grid[(b * s.N + n) * 2 + j] - m[j]) / (s.B - 1);
    for (int i = 0; i < 2; ++i) {
      double expected_cov[2];
      for (int j = 0; j < 2; ++j)
        expected_cov[j] = sigma[4 * n + 2 * i] * sigma[4 * n + 2 * j] + sigma[4 * n + 2 * i + 1] * sigma[4 * n + 2 * j + 1];
      const double sd = std::sqrt(expected_cov[i]);
      EXPECT_NEAR(m[i], mu[2 * n + i], 5 * sd / std::sqrt(s.B)) << "neuron " << n << " coordinate " << i;
      for (int j = 0; j < 2; ++j) {
        // SE of a sample covariance ~ sqrt((s_ii s_jj + s_ij^2) / B)
        const double var_i = sigma[4 * n + 2 * i] * sigma[4 * n + 2 * i] + sigma[4 * n + 2 * i + 1] * sigma[4 * n + 2 * i + 1];
        const double var_j = sigma[4 * n + 2 * j] * sigma[4 * n + 2 * j] + sigma[4 * n + 2 * j + 1] * sigma[4 * n + 2 * j + 1];
        const double se = std::sqrt((var_i * var_j + expected_cov[j] * expected_cov[j]) / s.B);
        EXPECT_NEAR(c[i][j], expected_cov[j], 5 * se) << "neuron " << n << " cov(" << i << "," << j << ")";
      }
    }
  }
}

TEST(GaussianReadout, NoiseIsAPureFunctionOfTheSeed) {
  GaussianReadoutShape s{16, 1, 1, 1, 5};
  std::vector<double> a(160), b(160), c(160);
  gaussian_readout_draw_noise<double>(E(), s, 7, UView3<double, E>(a.data(), 16, 5, 2));
  gaussian_readout_draw_noise<double>(E(), s, 7, UView3<double, E>(b.data(), 16, 5, 2));
  gaussian_readout_draw_noise<double>(E(), s, 8, UView3<double, E>(c.data(), 16, 5, 2));
  EXPECT_EQ(a, b);
  int same = 0;
  for (std::size_t i = 0; i < a.size(); ++i) same += a[i] == c[i];
  EXPECT_EQ(same, 0);
  // Standard normal marginals: over 160 draws the mean is within 5/sqrt(160) of 0 and the variance near 1.
  double m = 0, v = 0;
  for (double x : a) m += x / 160;
  for (double x : a) v += (x - m) * (x - m) / 159;
  EXPECT_NEAR(m, 0.0, 5 / std::sqrt(160.0));
  EXPECT_NEAR(v, 1.0, 0.35);
}

TEST(GaussianReadout, GridPredictorGradientsMatchFiniteDifferences) {
  const int N = 6;
  Vec A = random_vec(4, 1), a = random_vec(2, 2), coords = random_vec(N * 2, 3), w = random_vec(N * 2, 4);
  auto forward = [&] {
    Vec mu(N * 2, 9.0);
    grid_predictor_forward<double>(E(), u2<const double>(A, 2, 2), u1<const double>(a), u2<const double>(coords, N, 2),
                                   u2<double>(mu, N, 2));
    return mu;
  };
  const Vec mu = forward();
  for (int n = 0; n < N; ++n) EXPECT_NEAR(mu[2 * n], A[0] * coords[2 * n] + A[1] * coords[2 * n + 1] + a[0], 1e-15);
  Vec d_A(4, kParamGradFill), d_a(2, kParamGradFill);
  grid_predictor_backward<double>(E(), u2<const double>(coords, N, 2), u2<const double>(w, N, 2), u2<double>(d_A, 2, 2),
                                  u1<double>(d_a));
  check_gradients("grid predictor", {{"A", &A, &d_A, kParamGradFill}, {"a", &a, &d_a, kParamGradFill}}, w, forward);
}

TEST(GaussianReadout, ShapeErrorsNameTheArgument) {
  GaussianReadoutShape s{2, 3, 5, 7, 4};
  auto p = make_problem(s, 1);
  Vec grid(2 * 4 * 2), out(2 * 4);
  try {
    gaussian_readout_forward<double>(E(), s, u2<const double>(p.mu, 4, 2), u3<const double>(p.sigma, 4, 2, 2),
                                     u2<const double>(p.features, 4, 3), u1<const double>(p.bias),
                                     u4<const double>(p.in, 2, 3, 5, 7), UView3<const double, E>(),
                                     u3<double>(grid, 2, 4, 2), u2<double>(out, 4, 2));
    FAIL() << "expected ShapeError";
  } catch (const v1sysid::ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("out has extents (4, 2)"), std::string::npos) << e.what();
  }
}

}  // namespace
