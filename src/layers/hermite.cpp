// Hermite basis (host, double), its rotation, and the GEMM-based filter synthesis of hermite.hpp.
#include "layers/hermite.hpp"

#include <cmath>

namespace v1sysid::layers {

namespace {

constexpr double kPi = 3.14159265358979323846;

// Coefficients c_k (k = 0..nu) of the radial polynomial P_{mu,nu}(t) = sum_k c_k t^k (reference hermcgen):
//   c_k = Gamma(mu+nu+1) Gamma(nu+1) (-2)^(nu-k) / (Gamma(mu+1+k) Gamma(k+1) Gamma(nu+1-k))
std::vector<double> radial_coefficients(int mu, int nu) {
  std::vector<double> c(static_cast<std::size_t>(nu) + 1);
  for (int k = 0; k <= nu; ++k)
    c[static_cast<std::size_t>(k)] = std::tgamma(mu + nu + 1.0) * std::tgamma(nu + 1.0) * std::pow(-2.0, nu - k) /
                                     (std::tgamma(mu + 1.0 + k) * std::tgamma(k + 1.0) * std::tgamma(nu + 1.0 - k));
  return c;
}

}  // namespace

HermiteBasis hermite_basis(int K) {
  if (K < 1)
    throw ShapeError("Hermite filter size " + std::to_string(K) + " is not positive", "v1sysid::layers::hermite_basis",
                     "use an odd filter size >= 1");
  HermiteBasis b;
  b.K = K;
  for (int rank = 0; rank < K; ++rank) {
    // mu = sorted |{-rank, -rank+2, ..., rank}|: 0 (once, even rank) or 1, then each positive value twice.
    if (rank % 2 == 0) {
      b.mu.push_back(0);
      b.nu.push_back(rank / 2);
      b.kind.push_back('z');
    }
    for (int m = 2 - rank % 2; m <= rank; m += 2) {
      for (char part : {'r', 'i'}) {
        b.mu.push_back(m);
        b.nu.push_back((rank - m) / 2);
        b.kind.push_back(part);
      }
    }
  }
  b.Q = static_cast<int>(b.mu.size());
  const int n = b.grid();
  const double xm = 2.0 * std::sqrt(static_cast<double>(K)) * (1.0 - 1.0 / n);
  std::vector<double> xs(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) xs[static_cast<std::size_t>(i)] = -xm + 2.0 * xm * i / (n - 1);
  b.values.assign(static_cast<std::size_t>(b.Q) * n * n, 0.0);
  for (int q = 0; q < b.Q; ++q) {
    const int mu = b.mu[static_cast<std::size_t>(q)], nu = b.nu[static_cast<std::size_t>(q)];
    const auto c = radial_coefficients(mu, nu);
    const double norm = std::sqrt(std::pow(2.0, mu + 2 * nu) * kPi * std::tgamma(mu + nu + 1.0) * std::tgamma(nu + 1.0));
    double sum2 = 0;
    for (int a = 0; a < n; ++a) {
      for (int bb = 0; bb < n; ++bb) {
        const double y = xs[static_cast<std::size_t>(a)], x = xs[static_cast<std::size_t>(bb)];
        const double r2 = x * x + y * y;
        double poly = 0;
        for (int k = nu; k >= 0; --k) poly = poly * r2 + c[static_cast<std::size_t>(k)];
        const double radial = std::exp(-r2 / 4.0) * std::pow(r2, mu / 2.0) * poly / norm;
        const double theta = std::atan2(y, x);
        double v = 0;
        switch (b.kind[static_cast<std::size_t>(q)]) {
          case 'z': v = radial * std::cos(mu * theta) / std::sqrt(2.0); break;
          case 'r': v = radial * std::cos(mu * theta); break;
          default: v = radial * std::sin(mu * theta); break;
        }
        b.values[(static_cast<std::size_t>(q) * n + a) * n + bb] = v;
        sum2 += v * v;
      }
    }
    const double inv = 1.0 / std::sqrt(sum2);
    for (std::size_t i = 0; i < static_cast<std::size_t>(n) * n; ++i) b.values[static_cast<std::size_t>(q) * n * n + i] *= inv;
  }
  return b;
}

std::vector<double> hermite_rotation_matrix(const HermiteBasis& basis, double phi) {
  const auto Q = static_cast<std::size_t>(basis.Q);
  std::vector<double> m(Q * Q, 0.0);
  for (std::size_t i = 0; i < Q; ++i) {
    if (basis.kind[i] == 'z') {
      m[i * Q + i] = 1.0;
    } else if (basis.kind[i] == 'r') {  // (r, i) pair at rows/columns i, i+1
      const double a = basis.mu[i] * phi;
      const double c = std::cos(a), s = std::sin(a);
      m[i * Q + i] = c;
      m[i * Q + i + 1] = s;
      m[(i + 1) * Q + i] = -s;
      m[(i + 1) * Q + i + 1] = c;
    }
  }
  return m;
}

std::vector<double> hermite_pooled_rotated_basis(const HermiteBasis& basis, int R) {
  if (R < 1)
    throw ShapeError("number of rotations " + std::to_string(R) + " is not positive",
                     "v1sysid::layers::hermite_pooled_rotated_basis", "use rotations >= 1");
  const int K = basis.K, n = basis.grid();
  const auto Q = static_cast<std::size_t>(basis.Q);
  const auto KK = static_cast<std::size_t>(K) * K;
  // 2x2 sum pooling of every basis image: (K*K, Q).
  std::vector<double> pooled(KK * Q, 0.0);
  for (std::size_t q = 0; q < Q; ++q)
    for (int a = 0; a < n; ++a)
      for (int b = 0; b < n; ++b)
        pooled[(static_cast<std::size_t>(a / 2) * K + static_cast<std::size_t>(b / 2)) * Q + q] +=
            basis.at(static_cast<int>(q), a, b);
  std::vector<double> p(static_cast<std::size_t>(R) * KK * Q, 0.0);
  for (int r = 0; r < R; ++r) {
    const auto m = hermite_rotation_matrix(basis, 2.0 * kPi * r / R);
    double* pr = p.data() + static_cast<std::size_t>(r) * KK * Q;
    for (std::size_t yx = 0; yx < KK; ++yx)
      for (std::size_t i = 0; i < Q; ++i) {
        const double h = pooled[yx * Q + i];
        if (h == 0.0) continue;
        for (std::size_t j = 0; j < Q; ++j) pr[yx * Q + j] += h * m[i * Q + j];
      }
  }
  return p;
}

std::string describe(const HermiteShape& s) {
  return "HermiteShape{K=" + std::to_string(s.K) + ", R=" + std::to_string(s.R) + ", C_in=" + std::to_string(s.C_in) +
         ", F=" + std::to_string(s.F) + ", roll=" + std::to_string(s.roll) + "}";
}

void validate(const HermiteShape& s) {
  const char* where = "hermite_synthesize";
  detail::require(s.K >= 1 && s.R >= 1 && s.C_in >= 1 && s.F >= 1 && s.roll >= 0, "invalid sizes " + describe(s),
                  where, "use positive sizes");
  detail::require(s.roll == 0 || s.C_in == s.R * s.roll,
                  "the input channels are not R blocks of roll channels, " + describe(s), where,
                  "layers >= 2 take C_in = R * F_in and roll = F_in; the first layer takes roll = 0");
}

std::size_t hermite_workspace_size(const HermiteShape& s) { return s.filter_size(); }

namespace {

template <class T, class ExecSpace>
void check_arguments(const HermiteShape& s, UView2<const T, ExecSpace> pooled_basis, std::size_t coeff_q,
                     std::size_t coeff_c, std::size_t coeff_f, std::size_t filt0, std::size_t filt1, std::size_t filt2,
                     std::size_t filt3, UView1<T, ExecSpace> workspace, const char* where) {
  validate(s);
  detail::require_extents(pooled_basis, {static_cast<std::size_t>(s.R) * s.K * s.K, static_cast<std::size_t>(s.Q())},
                          where, "pooled_basis");
  const std::initializer_list<std::size_t> cexp{static_cast<std::size_t>(s.Q()), static_cast<std::size_t>(s.C_in),
                                                static_cast<std::size_t>(s.F)};
  const std::initializer_list<std::size_t> fexp{static_cast<std::size_t>(s.C_out()), static_cast<std::size_t>(s.C_in),
                                                static_cast<std::size_t>(s.K), static_cast<std::size_t>(s.K)};
  detail::require(coeff_q == static_cast<std::size_t>(s.Q()) && coeff_c == static_cast<std::size_t>(s.C_in) &&
                      coeff_f == static_cast<std::size_t>(s.F),
                  "coeffs has extents " + detail::join_extents({coeff_q, coeff_c, coeff_f}) + " but " + describe(s) +
                      " expects " + detail::join_extents(cexp),
                  where, "allocate it from the same shape");
  detail::require(filt0 == static_cast<std::size_t>(s.C_out()) && filt1 == static_cast<std::size_t>(s.C_in) &&
                      filt2 == static_cast<std::size_t>(s.K) && filt3 == static_cast<std::size_t>(s.K),
                  "filters has extents " + detail::join_extents({filt0, filt1, filt2, filt3}) + " but " + describe(s) +
                      " expects " + detail::join_extents(fexp),
                  where, "allocate it from the same shape");
  detail::require_workspace(workspace, hermite_workspace_size(s), where, "hermite_workspace_size");
}

}  // namespace

template <class T, class ExecSpace>
void hermite_synthesize_forward(ExecSpace const& space, HermiteShape const& s,
                                UView2<const T, ExecSpace> pooled_basis, UView3<const T, ExecSpace> coeffs,
                                UView4<T, ExecSpace> filters, UView1<T, ExecSpace> workspace) {
  check_arguments<T, ExecSpace>(s, pooled_basis, coeffs.extent(0), coeffs.extent(1), coeffs.extent(2),
                                filters.extent(0), filters.extent(1), filters.extent(2), filters.extent(3), workspace,
                                "hermite_synthesize_forward");
  const int R = s.R, KK = s.K * s.K, C = s.C_in, F = s.F, roll = s.roll;
  // T (R*K*K, C*F) = P (R*K*K, Q) x coeffs (Q, C*F)
  UView2<const T, ExecSpace> coeff_matrix(coeffs.data(), static_cast<std::size_t>(s.Q()), static_cast<std::size_t>(C) * F);
  UView2<T, ExecSpace> t(workspace.data(), static_cast<std::size_t>(R) * KK, static_cast<std::size_t>(C) * F);
  detail::gemm(space, "N", "N", T(1), pooled_basis, coeff_matrix, T(0), t);
  // filters[r*F + f, c, y, x] = T[r*K*K + y*K + x, ((c - r*roll) mod C)*F + f]; one work item per K x K slice.
  const T* t_data = t.data();
  T* f_data = filters.data();
  Kokkos::parallel_for(
      "v1sysid::hermite::synthesize_forward", Kokkos::RangePolicy<ExecSpace>(space, 0, R * F * C),
      KOKKOS_LAMBDA(const int item) {
        const int c = item % C;
        const int rf = item / C;  // output channel r*F + f
        const int f = rf % F;
        const int r = rf / F;
        int src_c = (c - (r * roll) % C) % C;
        if (src_c < 0) src_c += C;
        const std::size_t col = static_cast<std::size_t>(src_c) * F + f;
        const std::size_t ld = static_cast<std::size_t>(C) * F;
        const T* src = t_data + static_cast<std::size_t>(r) * KK * ld + col;
        T* dst = f_data + static_cast<std::size_t>(item) * KK;
        for (int yx = 0; yx < KK; ++yx) dst[yx] = src[static_cast<std::size_t>(yx) * ld];
      });
}

template <class T, class ExecSpace>
void hermite_synthesize_backward(ExecSpace const& space, HermiteShape const& s,
                                 UView2<const T, ExecSpace> pooled_basis, UView4<const T, ExecSpace> d_filters,
                                 UView3<T, ExecSpace> d_coeffs, UView1<T, ExecSpace> workspace) {
  check_arguments<T, ExecSpace>(s, pooled_basis, d_coeffs.extent(0), d_coeffs.extent(1), d_coeffs.extent(2),
                                d_filters.extent(0), d_filters.extent(1), d_filters.extent(2), d_filters.extent(3),
                                workspace, "hermite_synthesize_backward");
  const int R = s.R, KK = s.K * s.K, C = s.C_in, F = s.F, roll = s.roll;
  // d_T[r*K*K + yx, src_c*F + f] = d_filters[r*F + f, (src_c + r*roll) mod C, yx]: the inverse permutation, a
  // gather with one work item per (r, src_c, f) column segment, so no two items write the same element.
  UView2<T, ExecSpace> d_t(workspace.data(), static_cast<std::size_t>(R) * KK, static_cast<std::size_t>(C) * F);
  T* dt_data = d_t.data();
  const T* df_data = d_filters.data();
  Kokkos::parallel_for(
      "v1sysid::hermite::synthesize_backward_permute", Kokkos::RangePolicy<ExecSpace>(space, 0, R * C * F),
      KOKKOS_LAMBDA(const int item) {
        const int f = item % F;
        const int src_c = (item / F) % C;
        const int r = item / (F * C);
        const int c = (src_c + (r * roll) % C) % C;
        const std::size_t ld = static_cast<std::size_t>(C) * F;
        const T* src = df_data + (static_cast<std::size_t>(r * F + f) * C + c) * KK;
        T* dst = dt_data + static_cast<std::size_t>(r) * KK * ld + static_cast<std::size_t>(src_c) * F + f;
        for (int yx = 0; yx < KK; ++yx) dst[static_cast<std::size_t>(yx) * ld] = src[yx];
      });
  // d_coeffs (Q, C*F) += P^T (Q, R*K*K) x d_T (R*K*K, C*F)
  UView2<T, ExecSpace> d_coeff_matrix(d_coeffs.data(), static_cast<std::size_t>(s.Q()), static_cast<std::size_t>(C) * F);
  detail::gemm(space, "T", "N", T(1), pooled_basis, UView2<const T, ExecSpace>(d_t), T(1), d_coeff_matrix);
}

#define V1SYSID_HERMITE_INSTANTIATE(T, E)                                                                          \
  template void hermite_synthesize_forward<T, E>(E const&, HermiteShape const&, UView2<const T, E>,               \
                                                 UView3<const T, E>, UView4<T, E>, UView1<T, E>);                 \
  template void hermite_synthesize_backward<T, E>(E const&, HermiteShape const&, UView2<const T, E>,              \
                                                  UView4<const T, E>, UView3<T, E>, UView1<T, E>);
V1SYSID_INSTANTIATE_FOR_EACH(V1SYSID_HERMITE_INSTANTIATE)

}  // namespace v1sysid::layers
