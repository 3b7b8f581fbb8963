// Steerable Hermite filters and the rotation-equivariant core (layers/hermite.hpp, Model with core.kind roteq):
//   - the basis: count, index order, unit norm and near-orthogonality on the 2x grid;
//   - the rotation of coefficients by 90 degrees turns the upsampled filter exactly (numpy.rot90(w, 1));
//   - the GEMM synthesis (pooled rotated basis) against a direct per-rotation synthesis from the basis;
//   - synthesised filter of rotation R/4 = filter of rotation 0 turned by 90 degrees (with the input roll);
//   - finite-difference gradients of the coefficients in double through synthesis + conv + regularisers;
//   - whole-core equivariance: a 90-degree turn of a square input turns every output map of every layer and
//     rolls the rotation blocks by R/4 (rotation-shared batch norm, training and evaluation mode).
#include "layers/conv2d.hpp"
#include "layers/hermite.hpp"
#include "model/model.hpp"
#include "layers/regularizers.hpp"
#include "core/random.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace {

using namespace v1sysid;
using layers::HermiteShape;

constexpr double kPi = 3.14159265358979323846;

template <class V>
void fill_random(const V& v, SplitMix64& rng, double lo = -1.0, double hi = 1.0) {
  auto h = Kokkos::create_mirror_view(v);
  auto* p = h.data();
  for (size_t i = 0; i < h.size(); ++i) p[i] = static_cast<typename V::value_type>(lo + (hi - lo) * rng.uniform());
  Kokkos::deep_copy(v, h);
}

template <class V>
std::vector<double> to_host_vector(const V& v) {
  auto h = Kokkos::create_mirror_view_and_copy(HostSpace(), v);
  return std::vector<double>(h.data(), h.data() + h.size());
}

// numpy.rot90(w, 1) of an n x n image stored row-major at w: new[a][b] = old[b][n-1-a].
double rot90_at(const double* w, int n, int a, int b) { return w[b * n + (n - 1 - a)]; }

// ---- basis --------------------------------------------------------------------------------------------

TEST(HermiteBasis, CountIndexOrderUnitNormAndNearOrthogonality) {
  EXPECT_EQ(layers::hermite_basis(13).Q, 91);
  EXPECT_EQ(layers::hermite_basis(5).Q, 15);
  EXPECT_EQ(layers::hermite_basis(3).Q, 6);
  const auto b = layers::hermite_basis(5);
  EXPECT_EQ(b.mu, (std::vector<int>{0, 1, 1, 0, 2, 2, 1, 1, 3, 3, 0, 2, 2, 4, 4}));
  EXPECT_EQ(std::string(b.kind.begin(), b.kind.end()), "zrizriririzriri");
  for (int K : {5, 13}) {
    SCOPED_TRACE("K = " + std::to_string(K));
    const auto basis = layers::hermite_basis(K);
    const int n = basis.grid(), Q = basis.Q;
    double max_off = 0, max_norm_error = 0;
    for (int p = 0; p < Q; ++p)
      for (int q = p; q < Q; ++q) {
        double dot = 0;
        for (int i = 0; i < n * n; ++i) dot += basis.values[size_t(p) * n * n + i] * basis.values[size_t(q) * n * n + i];
        if (p == q) max_norm_error = std::max(max_norm_error, std::fabs(dot - 1.0));
        else max_off = std::max(max_off, std::fabs(dot));
      }
    EXPECT_LT(max_norm_error, 1e-12);
    // Only approximately orthogonal on the finite grid (the reference's port gives ~0.014 for K = 5).
    EXPECT_LT(max_off, K == 5 ? 0.03 : 0.1);
    EXPECT_GT(max_off, 1e-4);
    if (K == 5) EXPECT_NEAR(max_off, 0.014, 0.006) << "max |off-diagonal Gram| = " << max_off;
  }
  EXPECT_THROW(layers::hermite_basis(0), ShapeError);
}

// Rotating the coefficients by 90 degrees turns the upsampled (2K x 2K) filter exactly; by 45 degrees it does
// not map grid points to grid points, so only the 90-degree multiples are exact.
TEST(HermiteBasis, QuarterTurnOfCoefficientsIsRot90OfTheUpsampledFilter) {
  for (int K : {3, 5, 13}) {
    SCOPED_TRACE("K = " + std::to_string(K));
    const auto basis = layers::hermite_basis(K);
    const int n = basis.grid(), Q = basis.Q;
    SplitMix64 rng(static_cast<uint64_t>(K));
    std::vector<double> c(static_cast<size_t>(Q));
    for (auto& x : c) x = rng.normal();
    auto synth = [&](const std::vector<double>& coeff) {
      std::vector<double> w(static_cast<size_t>(n) * n, 0.0);
      for (int q = 0; q < Q; ++q)
        for (int i = 0; i < n * n; ++i) w[size_t(i)] += coeff[size_t(q)] * basis.values[size_t(q) * n * n + i];
      return w;
    };
    auto rotate = [&](double phi) {
      const auto m = layers::hermite_rotation_matrix(basis, phi);
      std::vector<double> out(static_cast<size_t>(Q), 0.0);
      for (int i = 0; i < Q; ++i)
        for (int j = 0; j < Q; ++j) out[size_t(i)] += m[size_t(i) * Q + j] * c[size_t(j)];
      return out;
    };
    const auto w0 = synth(c);
    const auto w90 = synth(rotate(kPi / 2));
    const auto w45 = synth(rotate(kPi / 4));
    double err = 0, scale = 0, err45 = 0;
    for (int a = 0; a < n; ++a)
      for (int bb = 0; bb < n; ++bb) {
        err = std::max(err, std::fabs(w90[size_t(a) * n + bb] - rot90_at(w0.data(), n, a, bb)));
        err45 = std::max(err45, std::fabs(w45[size_t(a) * n + bb] - rot90_at(w0.data(), n, a, bb)));
        scale = std::max(scale, std::fabs(w0[size_t(a) * n + bb]));
      }
    EXPECT_LT(err, 1e-12 * scale);
    EXPECT_GT(err45, 1e-3 * scale);  // a 45-degree turn is another filter (sanity of the comparison)
  }
}

// ---- synthesis ----------------------------------------------------------------------------------------

// Direct synthesis from the basis: rotate the coefficients, synthesise on the 2K grid, sum-pool 2x2, roll.
std::vector<double> direct_synthesis(const HermiteShape& s, const std::vector<double>& coeffs /* (Q, C, F) */) {
  const auto basis = layers::hermite_basis(s.K);
  const int n = basis.grid(), Q = basis.Q, K = s.K, C = s.C_in, F = s.F;
  std::vector<double> filters(s.filter_size(), 0.0);
  for (int r = 0; r < s.R; ++r) {
    const auto m = layers::hermite_rotation_matrix(basis, 2 * kPi * r / s.R);
    for (int cs = 0; cs < C; ++cs)
      for (int f = 0; f < F; ++f) {
        std::vector<double> rc(static_cast<size_t>(Q), 0.0);
        for (int i = 0; i < Q; ++i)
          for (int j = 0; j < Q; ++j) rc[size_t(i)] += m[size_t(i) * Q + j] * coeffs[(size_t(j) * C + cs) * F + f];
        const int c = ((cs + r * s.roll) % C + C) % C;  // filter input channel reading source channel cs
        double* dst = filters.data() + (size_t(r * F + f) * C + c) * K * K;
        for (int a = 0; a < n; ++a)
          for (int b = 0; b < n; ++b) {
            double v = 0;
            for (int q = 0; q < Q; ++q) v += rc[size_t(q)] * basis.at(q, a, b);
            dst[(a / 2) * K + b / 2] += v;
          }
      }
  }
  return filters;
}

template <class T>
struct Synthesis {
  HermiteShape s;
  View2<T> basis;
  View3<T> coeffs;
  View4<T> filters;
  View1<T> ws;
  explicit Synthesis(HermiteShape shape)
      : s(shape), basis(layers::make_hermite_pooled_basis<T>(shape.K, shape.R)),
        coeffs("coeffs", size_t(shape.Q()), size_t(shape.C_in), size_t(shape.F)),
        filters("filters", size_t(shape.C_out()), size_t(shape.C_in), size_t(shape.K), size_t(shape.K)),
        ws("ws", layers::hermite_workspace_size(shape)) {}
  void forward() { layers::hermite_synthesize_forward<T>(ExecSpace(), s, basis, coeffs, filters, ws); }
};

HermiteShape shape_of(int K, int R, int C_in, int F, int roll) {
  HermiteShape s;
  s.K = K;
  s.R = R;
  s.C_in = C_in;
  s.F = F;
  s.roll = roll;
  return s;
}

TEST(HermiteSynthesis, GemmWithPooledRotatedBasisEqualsDirectSynthesis) {
  for (const auto& s : {shape_of(5, 8, 1, 3, 0), shape_of(3, 4, 8, 2, 2), shape_of(5, 8, 16, 3, 2)}) {
    SCOPED_TRACE(layers::describe(s));
    Synthesis<double> syn(s);
    SplitMix64 rng(5);
    fill_random(syn.coeffs, rng);
    syn.forward();
    const auto want = direct_synthesis(s, to_host_vector(syn.coeffs));
    const auto got = to_host_vector(syn.filters);
    double err = 0, scale = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      err = std::max(err, std::fabs(got[i] - want[i]));
      scale = std::max(scale, std::fabs(want[i]));
    }
    EXPECT_LT(err, 1e-12 * scale);
  }
}

// filters[(r + R/4)*F + f, c] == rot90(filters[r*F + f, (c - (R/4)*roll) mod C]) for every r, f, c. The 2x2 sum
// pooling commutes with rot90 because 2K is even (the pooling blocks map onto pooling blocks), so this is exact
// up to the rounding of the float basis and the GEMM.
template <class T>
void check_quarter_turn(const HermiteShape& s, double tol) {
  SCOPED_TRACE(layers::describe(s));
  Synthesis<T> syn(s);
  SplitMix64 rng(9);
  fill_random(syn.coeffs, rng);
  syn.forward();
  const auto w = to_host_vector(syn.filters);
  const int K = s.K, C = s.C_in, F = s.F, q = s.R / 4;
  double err = 0, scale = 0;
  for (int r = 0; r < s.R; ++r)
    for (int f = 0; f < F; ++f)
      for (int c = 0; c < C; ++c) {
        const int c_src = ((c - q * s.roll) % C + C) % C;
        const double* turned = w.data() + (size_t(((r + q) % s.R) * F + f) * C + c) * K * K;
        const double* orig = w.data() + (size_t(r * F + f) * C + c_src) * K * K;
        for (int a = 0; a < K; ++a)
          for (int b = 0; b < K; ++b) {
            err = std::max(err, std::fabs(turned[a * K + b] - rot90_at(orig, K, a, b)));
            scale = std::max(scale, std::fabs(orig[a * K + b]));
          }
      }
  EXPECT_GT(scale, 0.1);
  EXPECT_LT(err, tol * scale) << "max error " << err << " of max |w| " << scale;
}

TEST(HermiteSynthesis, RotationQuarterIsTheFilterOfRotationZeroTurnedBy90Degrees) {
  check_quarter_turn<double>(shape_of(13, 8, 1, 4, 0), 1e-12);
  check_quarter_turn<double>(shape_of(5, 8, 24, 4, 3), 1e-12);
  check_quarter_turn<double>(shape_of(5, 4, 8, 2, 2), 1e-12);
  check_quarter_turn<float>(shape_of(13, 8, 1, 4, 0), 2e-6);
  check_quarter_turn<float>(shape_of(5, 8, 24, 4, 3), 2e-6);
}

TEST(HermiteSynthesis, BadShapesAreShapeErrors) {
  EXPECT_THROW(layers::validate(shape_of(5, 8, 12, 2, 2)), ShapeError);  // C_in != R * roll
  EXPECT_THROW(layers::validate(shape_of(5, 0, 1, 2, 0)), ShapeError);
  Synthesis<double> syn(shape_of(3, 4, 1, 2, 0));
  View1<double> small("small", 3);
  EXPECT_THROW(layers::hermite_synthesize_forward<double>(ExecSpace(), syn.s, syn.basis, syn.coeffs, syn.filters, small),
               ShapeError);
  View4<double> wrong("wrong", 8, 2, 3, 3);
  EXPECT_THROW(layers::hermite_synthesize_forward<double>(ExecSpace(), syn.s, syn.basis, syn.coeffs, wrong, syn.ws),
               ShapeError);
}

// ---- gradients ----------------------------------------------------------------------------------------

// L(coeffs) = sum(w_out * conv(x, synth(coeffs))) + smoothness(synth) + group_sparsity(synth): the path of a
// roteq layer's coefficients in a training step. Every coefficient is checked by central differences.
void check_coefficient_gradient(const HermiteShape& s) {
  SCOPED_TRACE(layers::describe(s));
  ExecSpace space;
  Synthesis<double> syn(s);
  SplitMix64 rng(31);
  fill_random(syn.coeffs, rng);
  layers::Conv2dShape cs;
  cs.B = 2;
  cs.C_in = s.C_in;
  cs.C_out = s.C_out();
  cs.H = 7;
  cs.W = 6;
  cs.K = s.K;
  View4<double> x("x", 2, size_t(s.C_in), 7, 6), out("out", 2, size_t(s.C_out()), 7, 6), w_out("w_out", 2, size_t(s.C_out()), 7, 6);
  View1<double> conv_ws("conv_ws", std::max<size_t>(1, layers::conv2d_workspace_size(cs)));
  fill_random(x, rng);
  fill_random(w_out, rng);
  const double smooth = 0.3, sparse = 0.2;
  auto loss = [&]() {
    syn.forward();
    layers::conv2d_forward<double>(space, cs, syn.filters, x, out, conv_ws);
    const auto o = to_host_vector(out), wo = to_host_vector(w_out);
    double l = 0;
    for (size_t i = 0; i < o.size(); ++i) l += o[i] * wo[i];
    return l + layers::conv_smoothness_value(space, syn.filters, smooth) + layers::conv_group_sparsity_value(space, syn.filters, sparse);
  };
  // Analytic: d_filters from conv and the regularisers, then through the synthesis.
  View4<double> d_filters("d_filters", size_t(s.C_out()), size_t(s.C_in), size_t(s.K), size_t(s.K));
  View3<double> d_coeffs("d_coeffs", size_t(s.Q()), size_t(s.C_in), size_t(s.F));
  syn.forward();
  layers::conv2d_backward<double>(space, cs, syn.filters, x, w_out, {}, d_filters, conv_ws);
  layers::conv_smoothness_grad(space, syn.filters, smooth, d_filters);
  layers::conv_group_sparsity_grad(space, syn.filters, sparse, d_filters);
  layers::hermite_synthesize_backward<double>(space, s, syn.basis, d_filters, d_coeffs, syn.ws);
  const auto analytic = to_host_vector(d_coeffs);
  auto c = Kokkos::create_mirror_view_and_copy(HostSpace(), syn.coeffs);
  double worst = 0;
  size_t worst_i = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    const double x0 = c.data()[i], eps = 1e-6 * std::max(1.0, std::fabs(x0));
    c.data()[i] = x0 + eps;
    Kokkos::deep_copy(syn.coeffs, c);
    const double lp = loss();
    c.data()[i] = x0 - eps;
    Kokkos::deep_copy(syn.coeffs, c);
    const double lm = loss();
    c.data()[i] = x0;
    const double fd = (lp - lm) / (2 * eps);
    const double rel = std::fabs(fd - analytic[i]) / std::max(1e-8, std::fabs(fd) + std::fabs(analytic[i]));
    if (rel > worst) {
      worst = rel;
      worst_i = i;
    }
  }
  Kokkos::deep_copy(syn.coeffs, c);
  EXPECT_LT(worst, 1e-6) << "worst coefficient " << worst_i << ": analytic " << analytic[worst_i];
  // Accumulation: a second backward adds the same gradient again.
  layers::hermite_synthesize_backward<double>(space, s, syn.basis, d_filters, d_coeffs, syn.ws);
  const auto twice = to_host_vector(d_coeffs);
  for (size_t i = 0; i < twice.size(); ++i) EXPECT_NEAR(twice[i], 2 * analytic[i], 1e-12 * (1 + std::fabs(analytic[i])));
}

TEST(HermiteGradient, CoefficientsThroughSynthesisConvAndRegularisersFirstLayer) {
  check_coefficient_gradient(shape_of(5, 4, 1, 2, 0));
}

TEST(HermiteGradient, CoefficientsThroughSynthesisConvAndRegularisersRolledLayer) {
  check_coefficient_gradient(shape_of(3, 4, 8, 2, 2));
  check_coefficient_gradient(shape_of(3, 8, 8, 1, 1));
}

// ---- whole-core equivariance --------------------------------------------------------------------------

const char* kRoteqCore = R"(
core: {kind: roteq, filter_sizes: [5, 3, 3], features: [2, 3, 2], rotations: 8,
       nonlinearities: [softplus, elu, none], batchnorm_scale: [true, true, false],
       rel_smooth: [1, 0.5, 0.5], rel_sparse: [0, 1, 1]}
readout: {weight: 0.01}
)";

template <class T>
void randomize_batchnorm(Model<T>& m, SplitMix64& rng) {
  auto& a = m.arena();
  for (int l = 0; l < m.num_layers(); ++l) {
    const auto& s = m.core().batchnorm_slots(l);
    if (s.gamma >= 0) fill_random(a.param_flat(s.gamma), rng, 0.5, 1.5);
    fill_random(a.param_flat(s.beta), rng, -0.5, 0.5);
    fill_random(a.param_flat(s.running_mean), rng, -0.2, 0.2);
    fill_random(a.param_flat(s.running_var), rng, 0.5, 2.0);
  }
}

// Runs the core on images x and on x turned by 90 degrees (separately, so training-mode batch statistics are
// those of each batch) and checks every layer: out_turned[b, ((r + R/4) mod R)*F + f] == rot90(out[b, r*F + f]).
template <class T>
void check_core_equivariance(bool training, double tol) {
  SCOPED_TRACE(std::string(training ? "training" : "evaluation") + " mode, " + (sizeof(T) == 4 ? "float" : "double"));
  const int S = 11, N = 3, B = 2;
  const auto config = parse_model_config(kRoteqCore, "roteq");
  Model<T> m(config, S, S, N);
  m.initialize(3, std::vector<double>(N, 0.5));
  SplitMix64 rng(77);
  randomize_batchnorm(m, rng);
  auto ws = m.make_workspace(B);
  auto ws_turned = m.make_workspace(B);
  fill_random(ws.images, rng, -2.0, 2.0);
  {
    auto x = Kokkos::create_mirror_view_and_copy(HostSpace(), ws.images);
    auto xt = Kokkos::create_mirror_view(ws_turned.images);
    for (int b = 0; b < B; ++b)
      for (int a = 0; a < S; ++a)
        for (int c = 0; c < S; ++c) xt(size_t(b) * S * S + size_t(a) * S + c) = x(size_t(b) * S * S + size_t(c) * S + (S - 1 - a));
    Kokkos::deep_copy(ws_turned.images, xt);
  }
  m.forward(ws, B, training);
  m.forward(ws_turned, B, training);
  const int R = config.core.rotations, q = R / 4;
  for (int l = 0; l < m.num_layers(); ++l) {
    SCOPED_TRACE("layer " + std::to_string(l));
    const int F = config.core.features[size_t(l)], C = R * F;
    const auto& g = m.geometry(l);
    ASSERT_EQ(g.h_out, S);
    const auto out = to_host_vector(ws.core.act_out[size_t(l)]);
    const auto turned = to_host_vector(ws_turned.core.act_out[size_t(l)]);
    double err = 0, scale = 0;
    for (int b = 0; b < B; ++b)
      for (int r = 0; r < R; ++r)
        for (int f = 0; f < F; ++f) {
          const double* o = out.data() + (size_t(b) * C + size_t(r * F + f)) * S * S;
          const double* t = turned.data() + (size_t(b) * C + size_t(((r + q) % R) * F + f)) * S * S;
          for (int a = 0; a < S; ++a)
            for (int c = 0; c < S; ++c) {
              err = std::max(err, std::fabs(t[a * S + c] - rot90_at(o, S, a, c)));
              scale = std::max(scale, std::fabs(o[a * S + c]));
            }
        }
    EXPECT_GT(scale, 0.1);
    EXPECT_LT(err, tol * scale) << "max error " << err << " of max |out| " << scale;
  }
}

TEST(RoteqCore, QuarterTurnOfTheInputTurnsEveryMapAndRollsTheRotations) {
  check_core_equivariance<double>(true, 1e-10);
  check_core_equivariance<double>(false, 1e-10);
  check_core_equivariance<float>(true, 1e-5);
  check_core_equivariance<float>(false, 1e-5);
}

}  // namespace
