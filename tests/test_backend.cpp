// Smoke tests of the Kokkos build the suite runs against (Debian's Serial Kokkos, or the OpenMP build of
// env/build-kokkos-openmp.sh): reductions, atomics and KokkosBlas::gemm on LayoutRight Views must give the
// same answers on every backend, and the OpenMP leg of env/test.sh must really run with several threads.
#include "core/instantiate.hpp"
#include "core/types.hpp"
#include "core/version.hpp"
#include "layers/batchnorm.hpp"
#include "layers/conv2d.hpp"
#include "layers/factorized_readout.hpp"
#include "layers/gaussian_readout.hpp"
#include "layers/hermite.hpp"
#include "layers/poisson_loss.hpp"
#include "layers/regularizers.hpp"
#include "layers/winograd.hpp"
#include "optim/adam.hpp"

#include <KokkosBlas3_gemm.hpp>
#include <Kokkos_Core.hpp>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

// A named namespace: nvcc rejects extended lambdas in functions with internal linkage.
namespace v1sysid_test_backend {

using v1sysid::ExecSpace;
using v1sysid::View1;
using v1sysid::View2;

// Sum of i for i in [0, n), reduced in double on the default execution space.
double sum_of_indices(int n) {
  double total = 0.0;
  Kokkos::parallel_reduce(
      "test_backend::sum", Kokkos::RangePolicy<ExecSpace>(ExecSpace(), 0, n),
      KOKKOS_LAMBDA(const int i, double& acc) { acc += static_cast<double>(i); }, total);
  return total;
}

// counts: [bins]; every i in [0, n) adds 1 to bin i % bins, concurrently.
void histogram_mod(View1<int> counts, int n) {
  const int bins = static_cast<int>(counts.extent(0));
  Kokkos::parallel_for(
      "test_backend::histogram", Kokkos::RangePolicy<ExecSpace>(ExecSpace(), 0, n),
      KOKKOS_LAMBDA(const int i) { Kokkos::atomic_add(&counts(i % bins), 1); });
}

// Deterministic, non-trivial fill so that a transposed or mis-strided gemm cannot pass by accident.
template <class Scalar> void fill(typename View2<Scalar>::HostMirror host, int salt) {
  for (std::size_t i = 0; i < host.extent(0); ++i)
    for (std::size_t j = 0; j < host.extent(1); ++j)
      host(i, j) = static_cast<Scalar>(std::sin(0.37 * static_cast<double>(i * 13 + j * 7 + salt)));
}

// C = alpha * op(A) * op(B) + beta * C through KokkosBlas, compared with a host triple loop in double.
template <class Scalar> double gemm_max_relative_error(const char* trans_a, const char* trans_b, int m, int n, int k) {
  const bool ta = trans_a[0] == 'T';
  const bool tb = trans_b[0] == 'T';
  View2<Scalar> a("a", ta ? k : m, ta ? m : k);  // [m, k] or [k, m]
  View2<Scalar> b("b", tb ? n : k, tb ? k : n);  // [k, n] or [n, k]
  View2<Scalar> c("c", m, n);                    // [m, n]
  auto ha = Kokkos::create_mirror_view(a);
  auto hb = Kokkos::create_mirror_view(b);
  auto hc = Kokkos::create_mirror(c);  // a real copy: on host backends a mirror *view* would alias c
  fill<Scalar>(ha, 1);
  fill<Scalar>(hb, 2);
  fill<Scalar>(hc, 3);
  Kokkos::deep_copy(a, ha);
  Kokkos::deep_copy(b, hb);
  Kokkos::deep_copy(c, hc);
  const Scalar alpha = Scalar(0.75), beta = Scalar(-0.5);
  KokkosBlas::gemm(trans_a, trans_b, alpha, a, b, beta, c);
  auto result = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), c);

  double worst = 0.0;
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      double dot = 0.0, scale = 0.0;
      for (int p = 0; p < k; ++p) {
        const double x = ta ? ha(p, i) : ha(i, p);
        const double y = tb ? hb(j, p) : hb(p, j);
        dot += x * y;
        scale += std::abs(x * y);
      }
      const double expected = alpha * dot + beta * static_cast<double>(hc(i, j));
      const double err = std::abs(static_cast<double>(result(i, j)) - expected) /
                         (std::abs(alpha) * scale + std::abs(beta * static_cast<double>(hc(i, j))) + 1e-30);
      worst = std::max(worst, err);
    }
  }
  return worst;
}

}  // namespace v1sysid_test_backend

using namespace v1sysid_test_backend;

TEST(Backend, ReductionMatchesClosedForm) {
  for (int n : {1, 7, 1000, 100003}) {
    const double expected = 0.5 * static_cast<double>(n) * static_cast<double>(n - 1);
    EXPECT_EQ(sum_of_indices(n), expected) << "n = " << n;
  }
}

TEST(Backend, AtomicHistogramCountsEveryIndexOnce) {
  const int bins = 3, n = 300001;
  View1<int> counts("counts", bins);
  histogram_mod(counts, n);
  auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), counts);
  for (int b = 0; b < bins; ++b) EXPECT_EQ(host(b), n / bins + (b < n % bins ? 1 : 0)) << "bin " << b;
}

TEST(Backend, GemmLayoutRightMatchesReference) {
  for (const char* ta : {"N", "T"}) {
    for (const char* tb : {"N", "T"}) {
      EXPECT_LT(gemm_max_relative_error<double>(ta, tb, 37, 23, 51), 1e-12) << ta << tb << " double";
      EXPECT_LT(gemm_max_relative_error<float>(ta, tb, 37, 23, 51), 1e-5) << ta << tb << " float";
    }
  }
}

// env/test.sh sets V1SYSID_EXPECT_CONCURRENCY for its OpenMP leg, so that a build that silently fell back
// to one thread cannot pass as the parallel check.
TEST(Backend, ConcurrencyAsExpected) {
  const char* expected = std::getenv("V1SYSID_EXPECT_CONCURRENCY");
  if (expected == nullptr || *expected == '\0') GTEST_SKIP() << "V1SYSID_EXPECT_CONCURRENCY not set";
  EXPECT_EQ(ExecSpace().concurrency(), std::atoi(expected)) << "execution space " << ExecSpace::name();
}

// ---- Every kernel on the default space against the reference space (Serial) ----------------------------------
// As ggml's test-backend-ops: the same inputs through a layer's forward and backward on ExecSpace (OpenMP threads
// here, a GPU on a device build) and on ReferenceExecSpace (one thread), every output compared to a per-op
// tolerance. Where the two spaces are one (Debian's Serial Kokkos) there is nothing to compare and the tests skip.
namespace v1sysid_test_backend_ops {

using v1sysid::ExecSpace;
using v1sysid::ReferenceExecSpace;
namespace layers = v1sysid::layers;

constexpr bool kSpacesDiffer = !std::is_same_v<ExecSpace, ReferenceExecSpace>;

// A buffer of an op: its name, its size, and for an input the range of its uniform random values.
struct Buffer {
  std::string name;
  std::size_t n = 0;
  double lo = -1.0, hi = 1.0;
};
using BufferList = std::vector<Buffer>;

// The buffers of one space, by name: inputs filled with the same random values on both spaces, the rest zeroed.
template <class T, class Space>
struct Buffers {
  std::map<std::string, Kokkos::View<T*, typename Space::memory_space>> views;
  T* operator()(const std::string& name) const { return views.at(name).data(); }
};

template <class T, class Space, class Op>
std::map<std::string, std::vector<double>> run_on(const BufferList& inputs, const BufferList& outputs,
                                                  const BufferList& scratch, const Op& op, double& value) {
  Buffers<T, Space> b;
  std::mt19937_64 rng(2019);  // the same values on every space
  for (const auto& in : inputs) {
    std::uniform_real_distribution<double> u(in.lo, in.hi);
    Kokkos::View<T*, typename Space::memory_space> v(in.name, in.n);
    auto h = Kokkos::create_mirror_view(v);
    for (std::size_t i = 0; i < in.n; ++i) h(i) = static_cast<T>(u(rng));
    Kokkos::deep_copy(v, h);
    b.views[in.name] = v;
  }
  for (const BufferList* list : {&outputs, &scratch})
    for (const auto& o : *list) b.views[o.name] = Kokkos::View<T*, typename Space::memory_space>(o.name, std::max<std::size_t>(o.n, 1));
  value = op(Space(), b);
  Space().fence();
  std::map<std::string, std::vector<double>> out;
  for (const auto& o : outputs) {
    auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), b.views.at(o.name));
    out[o.name] = std::vector<double>(h.data(), h.data() + o.n);
  }
  return out;
}

// Runs op (a generic lambda (space, buffers) -> a scalar result, 0 if none) on both spaces and compares every
// output and the scalar: |a - b| <= tol * max(1, max |reference|) per output. Scratch buffers are not compared.
template <class T, class Op>
void expect_same_on_both_spaces(const std::string& what, const BufferList& inputs, const BufferList& outputs,
                                const BufferList& scratch, double tol, const Op& op) {
  SCOPED_TRACE(what + (sizeof(T) == 4 ? " (float)" : " (double)"));
  double on_exec = 0, on_reference = 0;
  const auto a = run_on<T, ExecSpace>(inputs, outputs, scratch, op, on_exec);
  const auto b = run_on<T, ReferenceExecSpace>(inputs, outputs, scratch, op, on_reference);
  EXPECT_NEAR(on_exec, on_reference, tol * std::max(1.0, std::abs(on_reference)));
  for (const auto& [name, ref] : b) {
    double scale = 1.0, worst = 0.0;
    for (double x : ref) scale = std::max(scale, std::abs(x));
    const auto& got = a.at(name);
    for (std::size_t i = 0; i < ref.size(); ++i) worst = std::max(worst, std::abs(got[i] - ref[i]));
    EXPECT_LE(worst, tol * scale) << name << ": largest difference " << worst << " (scale " << scale << ")";
    bool any_nonzero = false;
    for (double x : ref) any_nonzero = any_nonzero || x != 0.0;
    EXPECT_TRUE(any_nonzero) << name << " is all zero: the op wrote nothing to compare";
  }
}

template <class T>
double tolerance() {
  return sizeof(T) == 4 ? 2e-5 : 1e-12;
}

template <class T>
void conv2d_case(layers::ConvAlgorithm algorithm, layers::Padding padding) {
  layers::Conv2dShape s;
  s.B = 3, s.C_in = 4, s.C_out = 6, s.H = 9, s.W = 11, s.K = 5, s.padding = padding, s.algorithm = algorithm;
  const std::size_t n_w = std::size_t(s.C_out) * s.C_in * s.K * s.K, n_in = std::size_t(s.B) * s.C_in * s.H * s.W;
  const std::size_t n_out = std::size_t(s.B) * s.C_out * s.H_out() * s.W_out();
  const std::size_t ws = layers::conv2d_workspace_size(s);
  expect_same_on_both_spaces<T>(
      std::string("conv2d ") + (algorithm == layers::ConvAlgorithm::im2col ? "im2col " : "winograd ") +
          layers::to_string(padding),
      {{"w", n_w}, {"in", n_in}, {"d_out", n_out}}, {{"out", n_out}, {"d_in", n_in}, {"d_w", n_w}}, {{"ws", ws}},
      tolerance<T>() * 10, [&](auto space, const auto& b) {
        using S = decltype(space);
        const layers::UView4<const T, S> w(b("w"), s.C_out, s.C_in, s.K, s.K);
        const layers::UView4<const T, S> in(b("in"), s.B, s.C_in, s.H, s.W);
        layers::conv2d_forward<T>(space, s, w, in, layers::UView4<T, S>(b("out"), s.B, s.C_out, s.H_out(), s.W_out()),
                                  layers::UView1<T, S>(b("ws"), ws));
        layers::conv2d_backward<T>(space, s, w, in, layers::UView4<const T, S>(b("d_out"), s.B, s.C_out, s.H_out(), s.W_out()),
                                   layers::UView4<T, S>(b("d_in"), s.B, s.C_in, s.H, s.W),
                                   layers::UView4<T, S>(b("d_w"), s.C_out, s.C_in, s.K, s.K),
                                   layers::UView1<T, S>(b("ws"), ws));
        return 0.0;
      });
}

template <class T>
void depthwise_case() {
  layers::DepthwiseConv2dShape s;
  s.B = 2, s.C = 5, s.H = 8, s.W = 7, s.K = 3;
  const std::size_t n_w = std::size_t(s.C) * s.K * s.K, n = std::size_t(s.B) * s.C * s.H * s.W;
  expect_same_on_both_spaces<T>("depthwise conv2d", {{"w", n_w}, {"in", n}, {"d_out", n}},
                                {{"out", n}, {"d_in", n}, {"d_w", n_w}}, {}, tolerance<T>(), [&](auto space, const auto& b) {
                                  using S = decltype(space);
                                  const layers::UView4<const T, S> w(b("w"), s.C, 1, s.K, s.K);
                                  const layers::UView4<const T, S> in(b("in"), s.B, s.C, s.H, s.W);
                                  layers::depthwise_conv2d_forward<T>(space, s, w, in,
                                                                      layers::UView4<T, S>(b("out"), s.B, s.C, s.H, s.W));
                                  layers::depthwise_conv2d_backward<T>(
                                      space, s, w, in, layers::UView4<const T, S>(b("d_out"), s.B, s.C, s.H, s.W),
                                      layers::UView4<T, S>(b("d_in"), s.B, s.C, s.H, s.W),
                                      layers::UView4<T, S>(b("d_w"), s.C, 1, s.K, s.K));
                                  return 0.0;
                                });
}

template <class T>
void batchnorm_case(bool shared_rotations) {
  layers::BatchNormShape s;
  s.B = 4, s.R = 2, s.F = 3, s.H = 6, s.W = 5;
  layers::BatchNormOptions o;
  o.shared_rotations = shared_rotations;
  const std::size_t n = std::size_t(s.B) * s.C() * s.H * s.W, g = std::size_t(layers::batchnorm_groups(s, o));
  expect_same_on_both_spaces<T>(
      std::string("batch norm + softplus, training") + (shared_rotations ? ", rotation-shared" : ""),
      {{"gamma", g}, {"beta", g}, {"in", n}, {"d_out", n}, {"running_mean", g}, {"running_var", g, 0.5, 2.0}},
      {{"out", n}, {"mean", g}, {"rstd", g}, {"d_in", n}, {"d_gamma", g}, {"d_beta", g}}, {}, tolerance<T>() * 10,
      [&](auto space, const auto& b) {
        using S = decltype(space);
        const layers::UView1<const T, S> gamma(b("gamma"), g);
        const layers::UView4<const T, S> in(b("in"), s.B, s.C(), s.H, s.W);
        const layers::UView4<T, S> out(b("out"), s.B, s.C(), s.H, s.W);
        layers::batchnorm_forward_train<T>(space, s, o, layers::Activation::softplus, gamma,
                                           layers::UView1<const T, S>(b("beta"), g), in, out,
                                           layers::UView1<T, S>(b("mean"), g), layers::UView1<T, S>(b("rstd"), g),
                                           layers::UView1<T, S>(b("running_mean"), g),
                                           layers::UView1<T, S>(b("running_var"), g));
        layers::batchnorm_backward_train<T>(space, s, o, layers::Activation::softplus, gamma, in,
                                            layers::UView4<const T, S>(out),
                                            layers::UView1<const T, S>(b("mean"), g),
                                            layers::UView1<const T, S>(b("rstd"), g),
                                            layers::UView4<const T, S>(b("d_out"), s.B, s.C(), s.H, s.W),
                                            layers::UView4<T, S>(b("d_in"), s.B, s.C(), s.H, s.W),
                                            layers::UView1<T, S>(b("d_gamma"), g), layers::UView1<T, S>(b("d_beta"), g));
        return 0.0;
      });
}

template <class T>
void factorized_readout_case() {
  layers::FactorizedReadoutShape s;
  s.B = 3, s.C = 5, s.H = 6, s.W = 7, s.N = 9;
  const layers::FactorizedReadoutOptions o;
  const std::size_t n_in = std::size_t(s.B) * s.C * s.H * s.W, n_mask = std::size_t(s.N) * s.H * s.W;
  const std::size_t n_f = std::size_t(s.N) * s.C, n_h = std::size_t(s.B) * s.N;
  const std::size_t cache = layers::factorized_readout_cache_size(s), ws = layers::factorized_readout_workspace_size(s);
  expect_same_on_both_spaces<T>(
      "factorized readout", {{"mask", n_mask}, {"features", n_f}, {"bias", std::size_t(s.N)}, {"in", n_in}, {"d_h", n_h}},
      {{"h", n_h}, {"cache", cache}, {"d_in", n_in}, {"d_mask", n_mask}, {"d_features", n_f},
       {"d_bias", std::size_t(s.N)}},
      {{"ws", ws}}, tolerance<T>() * 10, [&](auto space, const auto& b) {
        using S = decltype(space);
        const layers::UView3<const T, S> mask(b("mask"), s.N, s.H, s.W);
        const layers::UView2<const T, S> features(b("features"), s.N, s.C);
        const layers::UView4<const T, S> in(b("in"), s.B, s.C, s.H, s.W);
        layers::factorized_readout_forward<T>(space, s, o, mask, features, layers::UView1<const T, S>(b("bias"), s.N), in,
                                              layers::UView2<T, S>(b("h"), s.B, s.N), layers::UView1<T, S>(b("cache"), cache),
                                              layers::UView1<T, S>(b("ws"), ws));
        layers::factorized_readout_backward<T>(
            space, s, o, mask, features, in, layers::UView2<const T, S>(b("d_h"), s.B, s.N),
            layers::UView1<T, S>(b("cache"), cache), layers::UView4<T, S>(b("d_in"), s.B, s.C, s.H, s.W),
            layers::UView3<T, S>(b("d_mask"), s.N, s.H, s.W), layers::UView2<T, S>(b("d_features"), s.N, s.C),
            layers::UView1<T, S>(b("d_bias"), s.N), layers::UView1<T, S>(b("ws"), ws));
        return 0.0;
      });
}

template <class T>
void gaussian_readout_case() {
  layers::GaussianReadoutShape s;
  s.B = 3, s.C = 4, s.H = 6, s.W = 7, s.N = 8;
  const std::size_t n_in = std::size_t(s.B) * s.C * s.H * s.W, n_f = std::size_t(s.N) * s.C;
  const std::size_t n_mu = std::size_t(s.N) * 2, n_sigma = std::size_t(s.N) * 4, n_z = std::size_t(s.B) * s.N * 2;
  const std::size_t n_h = std::size_t(s.B) * s.N;
  expect_same_on_both_spaces<T>(
      "Gaussian readout (training noise) and cortex grid predictor",
      {{"A", 4}, {"a", 2}, {"coords", n_mu}, {"sigma", n_sigma, -0.3, 0.3}, {"features", n_f},
       {"bias", std::size_t(s.N)}, {"in", n_in}, {"d_h", n_h}},
      {{"mu", n_mu}, {"z", n_z}, {"grid", n_z}, {"h", n_h}, {"d_in", n_in}, {"d_mu", n_mu}, {"d_sigma", n_sigma},
       {"d_features", n_f}, {"d_bias", std::size_t(s.N)}, {"d_A", 4}, {"d_a", 2}},
      {}, tolerance<T>() * 10, [&](auto space, const auto& b) {
        using S = decltype(space);
        layers::grid_predictor_forward<T>(space, layers::UView2<const T, S>(b("A"), 2, 2),
                                          layers::UView1<const T, S>(b("a"), 2),
                                          layers::UView2<const T, S>(b("coords"), s.N, 2),
                                          layers::UView2<T, S>(b("mu"), s.N, 2));
        layers::gaussian_readout_draw_noise<T>(space, s, 77, layers::UView3<T, S>(b("z"), s.B, s.N, 2));
        const layers::UView2<const T, S> mu(b("mu"), s.N, 2), features(b("features"), s.N, s.C);
        const layers::UView3<const T, S> sigma(b("sigma"), s.N, 2, 2), z(b("z"), s.B, s.N, 2);
        const layers::UView4<const T, S> in(b("in"), s.B, s.C, s.H, s.W);
        layers::gaussian_readout_forward<T>(space, s, mu, sigma, features, layers::UView1<const T, S>(b("bias"), s.N),
                                            in, z, layers::UView3<T, S>(b("grid"), s.B, s.N, 2),
                                            layers::UView2<T, S>(b("h"), s.B, s.N));
        layers::gaussian_readout_backward<T>(
            space, s, mu, sigma, features, in, z, layers::UView3<const T, S>(b("grid"), s.B, s.N, 2),
            layers::UView2<const T, S>(b("d_h"), s.B, s.N), layers::UView4<T, S>(b("d_in"), s.B, s.C, s.H, s.W),
            layers::UView2<T, S>(b("d_mu"), s.N, 2), layers::UView3<T, S>(b("d_sigma"), s.N, 2, 2),
            layers::UView2<T, S>(b("d_features"), s.N, s.C), layers::UView1<T, S>(b("d_bias"), s.N));
        layers::grid_predictor_backward<T>(space, layers::UView2<const T, S>(b("coords"), s.N, 2),
                                           layers::UView2<const T, S>(b("d_mu"), s.N, 2),
                                           layers::UView2<T, S>(b("d_A"), 2, 2), layers::UView1<T, S>(b("d_a"), 2));
        return 0.0;
      });
}

template <class T>
void hermite_case() {
  layers::HermiteShape s;
  s.K = 5, s.R = 8, s.C_in = 16, s.F = 2, s.roll = 2;  // a hidden layer: C_in = R * F_in
  const auto basis = layers::make_hermite_pooled_basis<T, Kokkos::HostSpace>(s.K, s.R);
  const std::size_t n_basis = basis.size(), n_c = std::size_t(s.Q()) * s.C_in * s.F, n_f = s.filter_size();
  const std::size_t ws = layers::hermite_workspace_size(s);
  expect_same_on_both_spaces<T>(
      "Hermite filter synthesis", {{"basis", n_basis}, {"coeffs", n_c}, {"d_filters", n_f}},
      {{"filters", n_f}, {"d_coeffs", n_c}}, {{"ws", ws}}, tolerance<T>() * 10, [&](auto space, const auto& b) {
        using S = decltype(space);
        // the real pooled basis, not random values
        Kokkos::deep_copy(Kokkos::View<T*, typename S::memory_space>(b.views.at("basis")),
                          Kokkos::View<const T*, Kokkos::HostSpace, Kokkos::MemoryUnmanaged>(basis.data(), n_basis));
        const layers::UView2<const T, S> p(b("basis"), basis.extent(0), basis.extent(1));
        layers::hermite_synthesize_forward<T>(space, s, p, layers::UView3<const T, S>(b("coeffs"), s.Q(), s.C_in, s.F),
                                              layers::UView4<T, S>(b("filters"), s.C_out(), s.C_in, s.K, s.K),
                                              layers::UView1<T, S>(b("ws"), ws));
        layers::hermite_synthesize_backward<T>(space, s, p,
                                               layers::UView4<const T, S>(b("d_filters"), s.C_out(), s.C_in, s.K, s.K),
                                               layers::UView3<T, S>(b("d_coeffs"), s.Q(), s.C_in, s.F),
                                               layers::UView1<T, S>(b("ws"), ws));
        return 0.0;
      });
}

template <class T>
void poisson_case(layers::OutputNonlinearity f) {
  const int B = 7, N = 11;
  const std::size_t n = std::size_t(B) * N;
  expect_same_on_both_spaces<T>(std::string("Poisson loss, ") + layers::to_string(f), {{"h", n}, {"y", n}},
                                {{"yhat", n}, {"d_h", n}}, {}, tolerance<T>(), [&](auto space, const auto& b) {
                                  using S = decltype(space);
                                  const layers::UView2<const T, S> h(b("h"), B, N), y(b("y"), B, N);
                                  const double loss = layers::poisson_loss_forward<T>(
                                      space, f, layers::PoissonLossOptions{}, h, y, layers::UView2<T, S>(b("yhat"), B, N));
                                  layers::poisson_loss_backward<T>(space, f, layers::PoissonLossOptions{}, h, y,
                                                                   layers::UView2<T, S>(b("d_h"), B, N), 0.5);
                                  return loss;
                                });
}

template <class T>
void regularizers_case() {
  const int Co = 6, Ci = 4, K = 5;
  const std::size_t n = std::size_t(Co) * Ci * K * K;
  expect_same_on_both_spaces<T>("filter regularisers (smoothness, group sparsity, Laplace)", {{"w", n}}, {{"d_w", n}},
                                {}, tolerance<T>() * 10, [&](auto space, const auto& b) {
                                  using S = decltype(space);
                                  using V = v1sysid::View4<T, typename S::memory_space>;
                                  const V w(b("w"), Co, Ci, K, K), d_w(b("d_w"), Co, Ci, K, K);
                                  return layers::conv_smoothness_grad(space, w, 0.3, d_w) +
                                         layers::conv_group_sparsity_grad(space, w, 0.7, d_w) +
                                         layers::laplace_l2_grad(space, w, 0.2, d_w);
                                });
}

// Adam on an arena of three slots (one frozen, one a buffer), three steps: params and both moments.
template <class T, class Space>
std::vector<double> after_three_adam_steps() {
  v1sysid::ParamArena<T, typename Space::memory_space> arena("backend_ops::adam");
  arena.add("a", 7, 5);
  arena.add("frozen", 13);
  arena.add_buffer("buffer", 3);
  arena.add("b", 4, 2, 3);
  arena.allocate();
  auto params = Kokkos::create_mirror_view(arena.params());
  auto grads = Kokkos::create_mirror_view(arena.grads());
  for (std::size_t i = 0; i < params.extent(0); ++i) {
    params(i) = static_cast<T>(std::sin(0.3 * double(i)));
    grads(i) = static_cast<T>(std::cos(0.7 * double(i)));
  }
  Kokkos::deep_copy(arena.params(), params);
  Kokkos::deep_copy(arena.grads(), grads);
  v1sysid::AdamConfig config;
  config.learning_rate = 0.01;
  for (int step = 0; step < 3; ++step) v1sysid::adam_step(Space(), arena, config, {false, true, false, false});
  std::vector<double> out;
  for (const auto& flat : {arena.params(), arena.adam_m(), arena.adam_v()}) {
    auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), flat);
    out.insert(out.end(), h.data(), h.data() + h.extent(0));
  }
  return out;
}

template <class T>
void adam_case() {
  SCOPED_TRACE(std::string("Adam, three steps") + (sizeof(T) == 4 ? " (float)" : " (double)"));
  const auto a = after_three_adam_steps<T, ExecSpace>();
  const auto b = after_three_adam_steps<T, ReferenceExecSpace>();
  ASSERT_EQ(a.size(), b.size());
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  EXPECT_LE(worst, tolerance<T>());
  EXPECT_NE(b[0], 0.0) << "the first parameter (0 before) did not move: Adam did nothing to compare";
}

template <class T>
void every_op() {
  for (auto padding : {layers::Padding::same, layers::Padding::valid})
    conv2d_case<T>(layers::ConvAlgorithm::im2col, padding);
  conv2d_case<T>(layers::ConvAlgorithm::winograd, layers::Padding::same);
  depthwise_case<T>();
  batchnorm_case<T>(false);
  batchnorm_case<T>(true);
  factorized_readout_case<T>();
  gaussian_readout_case<T>();
  hermite_case<T>();
  poisson_case<T>(layers::OutputNonlinearity::softplus);
  poisson_case<T>(layers::OutputNonlinearity::elu_plus_one);
  regularizers_case<T>();
  adam_case<T>();
}

}  // namespace v1sysid_test_backend_ops

// The OpenMP build's start-up warning (core/version.hpp): only for an OpenMP default space with several threads
// whose threads spin (OMP_WAIT_POLICY not passive, any case) or are bound (OMP_PROC_BIND true/spread/close/...);
// the message names each setting that is wrong and the fix.
TEST(Backend, OpenMPThreadsWarningOnlyWhereThreadsSpinOrAreBound) {
  using v1sysid::openmp_threads_warning;
  EXPECT_EQ(openmp_threads_warning(false, 8, nullptr, "spread"), "");
  EXPECT_EQ(openmp_threads_warning(true, 1, nullptr, "spread"), "");
  EXPECT_EQ(openmp_threads_warning(true, 2, "passive", nullptr), "");
  EXPECT_EQ(openmp_threads_warning(true, 2, "PASSIVE", "false"), "");
  const std::string unset = openmp_threads_warning(true, 2, nullptr, nullptr);
  EXPECT_NE(unset.find("OMP_WAIT_POLICY is unset"), std::string::npos) << unset;
  EXPECT_EQ(unset.find("OMP_PROC_BIND is"), std::string::npos) << unset;
  EXPECT_NE(unset.find("export OMP_WAIT_POLICY=passive OMP_PROC_BIND=false"), std::string::npos) << unset;
  const std::string bound = openmp_threads_warning(true, 4, "passive", "spread,close");
  EXPECT_NE(bound.find("OMP_PROC_BIND is 'spread,close'"), std::string::npos) << bound;
  EXPECT_EQ(bound.find("OMP_WAIT_POLICY is"), std::string::npos) << bound;
  const std::string both = openmp_threads_warning(true, 2, "active", "true");
  EXPECT_NE(both.find("'active'"), std::string::npos) << both;
  EXPECT_NE(both.find("OMP_PROC_BIND is 'true'"), std::string::npos) << both;
  // This process: the suite's OpenMP leg runs passive and unbound, so no warning here.
  const char* policy = std::getenv("OMP_WAIT_POLICY");
  const char* bind = std::getenv("OMP_PROC_BIND");
  if (policy && std::string(policy) == "passive" && bind && std::string(bind) == "false")
    EXPECT_EQ(openmp_threads_warning(), "");
}

TEST(BackendOps, EveryKernelOnTheDefaultSpaceMatchesSerialInDouble) {
  if (!v1sysid_test_backend_ops::kSpacesDiffer)
    GTEST_SKIP() << "the default execution space is " << ExecSpace::name() << ", the reference itself";
  v1sysid_test_backend_ops::every_op<double>();
}

TEST(BackendOps, EveryKernelOnTheDefaultSpaceMatchesSerialInFloat) {
  if (!v1sysid_test_backend_ops::kSpacesDiffer)
    GTEST_SKIP() << "the default execution space is " << ExecSpace::name() << ", the reference itself";
  v1sysid_test_backend_ops::every_op<float>();
}
