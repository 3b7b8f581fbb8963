// Smoke tests of the Kokkos build the suite runs against (Debian's Serial Kokkos, or the OpenMP build of
// env/build-kokkos-openmp.sh): reductions, atomics and KokkosBlas::gemm on LayoutRight Views must give the
// same answers on every backend, and the OpenMP leg of env/test.sh must really run with several threads.
#include "core/types.hpp"

#include <KokkosBlas3_gemm.hpp>
#include <Kokkos_Core.hpp>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>

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
