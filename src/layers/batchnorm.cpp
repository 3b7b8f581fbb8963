// Kernels of batchnorm.hpp. One team per statistics group g: the team reduces over the group's rows
// (B or B*R rows of H*W contiguous elements), then applies the per-group affine map to the same rows, which
// are still in cache (a group at the paper shapes is 64 x 2304 floats = 590 KB). No atomics: every group's
// statistics and parameter gradients are written by its own team only.
// FP operations may not trap (the default -ftrapping-math stops GCC from if-converting the clamps inside the
// float exp/log1p of activations.hpp, so the activation loops would stay scalar). Set before any include so
// that every function of this file carries the same attribute and inlining is unaffected.
#if defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__) && !defined(__INTEL_COMPILER)
#pragma GCC optimize("no-trapping-math")
#endif
#include "layers/batchnorm.hpp"

namespace v1sysid::layers {

namespace {

// Where row j (0 <= j < rows_per_group) of group g starts in the (B, C, H, W) tensor.
struct GroupRows {
  int R, F, C, HW;
  bool shared;
  int rows_per_group(int B) const { return shared ? B * R : B; }
  KOKKOS_INLINE_FUNCTION std::size_t offset(int g, int j) const {
    const int b = shared ? j / R : j;
    const int c = shared ? (j % R) * F + g : g;
    return (static_cast<std::size_t>(b) * C + c) * HW;
  }
};

template <class T, class E>
void check_common(const char* where, const BatchNormShape& s, const BatchNormOptions& o, UView1<const T, E> gamma) {
  validate(s, o);
  if (o.scale) detail::require_extents(gamma, {std::size_t(batchnorm_groups(s, o))}, where, "gamma");
}

template <class V>
void check_tensor(const char* where, const BatchNormShape& s, const V& v, const char* name) {
  detail::require_extents(v, {std::size_t(s.B), std::size_t(s.C()), std::size_t(s.H), std::size_t(s.W)}, where, name);
}

template <class V>
void check_groups(const char* where, const BatchNormShape& s, const BatchNormOptions& o, const V& v, const char* name) {
  detail::require_extents(v, {std::size_t(batchnorm_groups(s, o))}, where, name);
}

}  // namespace

std::string describe(const BatchNormShape& s, const BatchNormOptions& o) {
  return "BatchNormShape{B=" + std::to_string(s.B) + ", R=" + std::to_string(s.R) + ", F=" + std::to_string(s.F) +
         ", H=" + std::to_string(s.H) + ", W=" + std::to_string(s.W) + "} BatchNormOptions{momentum=" +
         std::to_string(o.momentum) + ", eps=" + std::to_string(o.eps) + ", scale=" + (o.scale ? "true" : "false") +
         ", shared_rotations=" + (o.shared_rotations ? "true" : "false") + "}";
}

void validate(const BatchNormShape& s, const BatchNormOptions& o) {
  const std::string d = describe(s, o);
  detail::require(s.B >= 0 && s.R >= 1 && s.F >= 1 && s.H >= 1 && s.W >= 1, "invalid sizes " + d, "batchnorm",
                  "use positive rotations, features and image sizes");
  detail::require(o.eps > 0 && o.momentum >= 0 && o.momentum <= 1, "invalid options " + d, "batchnorm",
                  "eps must be positive and momentum (TF decay) in [0, 1]");
}

int batchnorm_groups(const BatchNormShape& s, const BatchNormOptions& o) { return o.shared_rotations ? s.F : s.C(); }

template <class T, class ExecSpace>
void batchnorm_forward_train(ExecSpace const& space, BatchNormShape const& s, BatchNormOptions const& o,
                             Activation act, UView1<const T, ExecSpace> gamma, UView1<const T, ExecSpace> beta,
                             UView4<const T, ExecSpace> in, UView4<T, ExecSpace> out, UView1<T, ExecSpace> mean,
                             UView1<T, ExecSpace> rstd, UView1<T, ExecSpace> running_mean,
                             UView1<T, ExecSpace> running_var) {
  const char* where = "batchnorm_forward_train";
  check_common<T, ExecSpace>(where, s, o, gamma);
  check_groups(where, s, o, beta, "beta");
  detail::require(s.B >= 1, "training-mode batch norm of an empty batch", where, "use at least one image");
  check_tensor(where, s, in, "in");
  check_tensor(where, s, out, "out");
  check_groups(where, s, o, mean, "mean");
  check_groups(where, s, o, rstd, "rstd");
  check_groups(where, s, o, running_mean, "running_mean");
  check_groups(where, s, o, running_var, "running_var");

  const GroupRows layout{s.R, s.F, s.C(), s.H * s.W, o.shared_rotations};
  const int rows = layout.rows_per_group(s.B), HW = layout.HW;
  const double n = double(rows) * HW;
  const double eps = o.eps, momentum = o.momentum;
  const double var_factor = o.unbiased_running_var ? n / (n > 1 ? n - 1 : 1) : 1.0;
  const bool has_gamma = o.scale;
  const T* x = in.data();
  T* y = out.data();
  using Policy = Kokkos::TeamPolicy<ExecSpace>;
  Kokkos::parallel_for(
      "v1sysid::batchnorm::forward_train", Policy(space, batchnorm_groups(s, o), Kokkos::AUTO),
      KOKKOS_LAMBDA(const typename Policy::member_type& team) {
        const int g = team.league_rank();
        double sum = 0;
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(team, rows),
            [&](const int j, double& acc) { acc += detail::row_sum(x + layout.offset(g, j), HW); }, sum);
        const T mu = T(sum / n);
        double sq = 0;  // second pass over cached data: sum (x - mu)^2 without cancellation
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(team, rows),
            [&](const int j, double& acc) {
              const T* row = x + layout.offset(g, j);
              double a0 = 0, a1 = 0;
              int i = 0;
              for (; i + 2 <= HW; i += 2) {
                const double d0 = double(row[i]) - double(mu), d1 = double(row[i + 1]) - double(mu);
                a0 += d0 * d0;
                a1 += d1 * d1;
              }
              for (; i < HW; ++i) {
                const double d0 = double(row[i]) - double(mu);
                a0 += d0 * d0;
              }
              acc += a0 + a1;
            },
            sq);
        const double var = sq / n;
        const T rs = T(1.0 / kmath::sqrt(var + eps));
        Kokkos::single(Kokkos::PerTeam(team), [&]() {
          mean(g) = mu;
          rstd(g) = rs;
          running_mean(g) = T(momentum * double(running_mean(g)) + (1 - momentum) * double(mu));
          running_var(g) = T(momentum * double(running_var(g)) + (1 - momentum) * var * var_factor);
        });
        const T scale = has_gamma ? gamma(g) * rs : rs;
        const T shift = beta(g) - mu * scale;
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, rows), [&](const int j) {
          const std::size_t off = layout.offset(g, j);
          with_activation(act, [&](auto kind) {
            for (int i = 0; i < HW; ++i) y[off + i] = activate_as<decltype(kind)::value>(x[off + i] * scale + shift);
          });
        });
      });
}

template <class T, class ExecSpace>
void batchnorm_forward_eval(ExecSpace const& space, BatchNormShape const& s, BatchNormOptions const& o,
                            Activation act, UView1<const T, ExecSpace> gamma, UView1<const T, ExecSpace> beta,
                            UView1<const T, ExecSpace> running_mean, UView1<const T, ExecSpace> running_var,
                            UView4<const T, ExecSpace> in, UView4<T, ExecSpace> out) {
  const char* where = "batchnorm_forward_eval";
  check_common<T, ExecSpace>(where, s, o, gamma);
  check_groups(where, s, o, beta, "beta");
  check_tensor(where, s, in, "in");
  check_tensor(where, s, out, "out");
  check_groups(where, s, o, running_mean, "running_mean");
  check_groups(where, s, o, running_var, "running_var");

  const int C = s.C(), F = s.F, HW = s.H * s.W;
  const bool shared = o.shared_rotations, has_gamma = o.scale;
  const double eps = o.eps;
  const T* x = in.data();
  T* y = out.data();
  // One work item per (b, c) row; out may alias in (each element is read once before it is written).
  Kokkos::parallel_for(
      "v1sysid::batchnorm::forward_eval", Kokkos::RangePolicy<ExecSpace>(space, 0, s.B * C),
      KOKKOS_LAMBDA(const int row) {
        const int c = row % C;
        const int g = shared ? c % F : c;
        const T rs = T(1.0 / kmath::sqrt(double(running_var(g)) + eps));
        const T scale = has_gamma ? gamma(g) * rs : rs;
        const T shift = beta(g) - running_mean(g) * scale;
        const std::size_t off = static_cast<std::size_t>(row) * HW;
        with_activation(act, [&](auto kind) {
          for (int i = 0; i < HW; ++i) y[off + i] = activate_as<decltype(kind)::value>(x[off + i] * scale + shift);
        });
      });
}

template <class T, class ExecSpace>
void batchnorm_backward_train(ExecSpace const& space, BatchNormShape const& s, BatchNormOptions const& o,
                              Activation act, UView1<const T, ExecSpace> gamma, UView4<const T, ExecSpace> in,
                              UView4<const T, ExecSpace> out, UView1<const T, ExecSpace> mean,
                              UView1<const T, ExecSpace> rstd, UView4<const T, ExecSpace> d_out,
                              UView4<T, ExecSpace> d_in, UView1<T, ExecSpace> d_gamma, UView1<T, ExecSpace> d_beta) {
  const char* where = "batchnorm_backward_train";
  check_common<T, ExecSpace>(where, s, o, gamma);
  detail::require(s.B >= 1, "training-mode batch norm of an empty batch", where, "use at least one image");
  check_tensor(where, s, in, "in");
  if (act != Activation::none) check_tensor(where, s, out, "out");
  check_tensor(where, s, d_out, "d_out");
  check_tensor(where, s, d_in, "d_in");
  check_groups(where, s, o, mean, "mean");
  check_groups(where, s, o, rstd, "rstd");
  if (o.scale) check_groups(where, s, o, d_gamma, "d_gamma");
  check_groups(where, s, o, d_beta, "d_beta");

  const GroupRows layout{s.R, s.F, s.C(), s.H * s.W, o.shared_rotations};
  const int rows = layout.rows_per_group(s.B), HW = layout.HW;
  const double n = double(rows) * HW;
  const bool has_gamma = o.scale;
  const T* x = in.data();
  const T* y = out.data();
  const T* dy = d_out.data();
  T* dx = d_in.data();
  using Policy = Kokkos::TeamPolicy<ExecSpace>;
  Kokkos::parallel_for(
      "v1sysid::batchnorm::backward_train", Policy(space, batchnorm_groups(s, o), Kokkos::AUTO),
      KOKKOS_LAMBDA(const typename Policy::member_type& team) {
        const int g = team.league_rank();
        const T mu = mean(g), rs = rstd(g);
        // Pass 1: d_z = d_out * act'(out) into d_in (the activation derivative is evaluated once), sum d_z.
        double sum_dz = 0;
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(team, rows),
            [&](const int j, double& acc) {
              const std::size_t off = layout.offset(g, j);
              if (act != Activation::none)
                with_activation(act, [&](auto kind) {
                  for (int i = 0; i < HW; ++i)
                    dx[off + i] = dy[off + i] * activation_grad_from_output_as<decltype(kind)::value>(y[off + i]);
                });
              else
                for (int i = 0; i < HW; ++i) dx[off + i] = dy[off + i];
              acc += detail::row_sum(dx + off, HW);
            },
            sum_dz);
        // Pass 2: sum d_z * xhat.
        double sum_dz_xhat = 0;
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(team, rows),
            [&](const int j, double& acc) {
              const std::size_t off = layout.offset(g, j);
              double a0 = 0, a1 = 0;
              int i = 0;
              for (; i + 2 <= HW; i += 2) {
                a0 += double(dx[off + i]) * double((x[off + i] - mu) * rs);
                a1 += double(dx[off + i + 1]) * double((x[off + i + 1] - mu) * rs);
              }
              for (; i < HW; ++i) a0 += double(dx[off + i]) * double((x[off + i] - mu) * rs);
              acc += a0 + a1;
            },
            sum_dz_xhat);
        Kokkos::single(Kokkos::PerTeam(team), [&]() {
          d_beta(g) += T(sum_dz);
          if (has_gamma) d_gamma(g) += T(sum_dz_xhat);
        });
        // Pass 3: d_in = gamma * rstd * (d_z - mean(d_z) - xhat * mean(d_z * xhat)).
        const T k = has_gamma ? gamma(g) * rs : rs;
        const T mean_dz = T(sum_dz / n), mean_dz_xhat = T(sum_dz_xhat / n);
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, rows), [&](const int j) {
          const std::size_t off = layout.offset(g, j);
          for (int i = 0; i < HW; ++i) {
            const T xhat = (x[off + i] - mu) * rs;
            dx[off + i] = k * (dx[off + i] - mean_dz - xhat * mean_dz_xhat);
          }
        });
      });
}

template <class T, class ExecSpace>
void batchnorm_backward_eval(ExecSpace const& space, BatchNormShape const& s, BatchNormOptions const& o,
                             Activation act, UView1<const T, ExecSpace> gamma, UView1<const T, ExecSpace> running_mean,
                             UView1<const T, ExecSpace> running_var, UView4<const T, ExecSpace> in,
                             UView4<const T, ExecSpace> out, UView4<const T, ExecSpace> d_out,
                             UView4<T, ExecSpace> d_in, UView1<T, ExecSpace> d_gamma, UView1<T, ExecSpace> d_beta) {
  const char* where = "batchnorm_backward_eval";
  check_common<T, ExecSpace>(where, s, o, gamma);
  check_tensor(where, s, in, "in");
  if (act != Activation::none) check_tensor(where, s, out, "out");
  check_tensor(where, s, d_out, "d_out");
  check_tensor(where, s, d_in, "d_in");
  check_groups(where, s, o, running_mean, "running_mean");
  check_groups(where, s, o, running_var, "running_var");
  if (o.scale) check_groups(where, s, o, d_gamma, "d_gamma");
  check_groups(where, s, o, d_beta, "d_beta");

  const GroupRows layout{s.R, s.F, s.C(), s.H * s.W, o.shared_rotations};
  const int rows = layout.rows_per_group(s.B), HW = layout.HW;
  const bool has_gamma = o.scale;
  const double eps = o.eps;
  const T* x = in.data();
  const T* y = out.data();
  const T* dy = d_out.data();
  T* dx = d_in.data();
  using Policy = Kokkos::TeamPolicy<ExecSpace>;
  Kokkos::parallel_for(
      "v1sysid::batchnorm::backward_eval", Policy(space, batchnorm_groups(s, o), Kokkos::AUTO),
      KOKKOS_LAMBDA(const typename Policy::member_type& team) {
        const int g = team.league_rank();
        const T mu = running_mean(g);
        const T rs = T(1.0 / kmath::sqrt(double(running_var(g)) + eps));
        const T k = has_gamma ? gamma(g) * rs : rs;
        // One pass per row: d_z = d_out * act'(out), the two parameter-gradient sums, then d_in = k * d_z.
        double sum_dz = 0, sum_dz_xhat = 0;
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(team, rows),
            [&](const int j, double& acc) {
              const std::size_t off = layout.offset(g, j);
              if (act != Activation::none)
                with_activation(act, [&](auto kind) {
                  for (int i = 0; i < HW; ++i)
                    dx[off + i] = dy[off + i] * activation_grad_from_output_as<decltype(kind)::value>(y[off + i]);
                });
              else
                for (int i = 0; i < HW; ++i) dx[off + i] = dy[off + i];
              acc += detail::row_sum(dx + off, HW);
            },
            sum_dz);
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(team, rows),
            [&](const int j, double& acc) {
              const std::size_t off = layout.offset(g, j);
              double a = 0;
              for (int i = 0; i < HW; ++i) {
                a += double(dx[off + i]) * double((x[off + i] - mu) * rs);
                dx[off + i] *= k;
              }
              acc += a;
            },
            sum_dz_xhat);
        Kokkos::single(Kokkos::PerTeam(team), [&]() {
          d_beta(g) += T(sum_dz);
          if (has_gamma) d_gamma(g) += T(sum_dz_xhat);
        });
      });
}

#define V1SYSID_BATCHNORM_INSTANTIATE(T, E)                                                                       \
  template void batchnorm_forward_train<T, E>(E const&, BatchNormShape const&, BatchNormOptions const&, Activation, \
                                              UView1<const T, E>, UView1<const T, E>, UView4<const T, E>,          \
                                              UView4<T, E>, UView1<T, E>, UView1<T, E>, UView1<T, E>, UView1<T, E>); \
  template void batchnorm_forward_eval<T, E>(E const&, BatchNormShape const&, BatchNormOptions const&, Activation,  \
                                             UView1<const T, E>, UView1<const T, E>, UView1<const T, E>,            \
                                             UView1<const T, E>, UView4<const T, E>, UView4<T, E>);                 \
  template void batchnorm_backward_train<T, E>(E const&, BatchNormShape const&, BatchNormOptions const&,           \
                                               Activation, UView1<const T, E>, UView4<const T, E>,                 \
                                               UView4<const T, E>, UView1<const T, E>, UView1<const T, E>,         \
                                               UView4<const T, E>, UView4<T, E>, UView1<T, E>, UView1<T, E>);      \
  template void batchnorm_backward_eval<T, E>(E const&, BatchNormShape const&, BatchNormOptions const&, Activation, \
                                              UView1<const T, E>, UView1<const T, E>, UView1<const T, E>,          \
                                              UView4<const T, E>, UView4<const T, E>, UView4<const T, E>,          \
                                              UView4<T, E>, UView1<T, E>, UView1<T, E>);
V1SYSID_INSTANTIATE_FOR_EACH(V1SYSID_BATCHNORM_INSTANTIATE)

}  // namespace v1sysid::layers
