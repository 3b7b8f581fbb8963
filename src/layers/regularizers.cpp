// Regularisation penalties and their gradients (formulas and conventions in regularizers.hpp).
// Per-filter / per-neuron penalties run one team per output filter o (or neuron n): team reductions give the
// filter's sums, then the same team writes that filter's gradient, so every gradient element is written by
// exactly one thread (no atomics, bitwise reproducible). Global penalties (laplace_l2, l1, l2) are flat
// range reductions followed by a flat element-wise update.
#include "layers/regularizers.hpp"

#include "core/error.hpp"
#include "core/kmath.hpp"
#include "core/instantiate.hpp"

#include <cstdint>
#include <string>

namespace v1sysid::layers {

namespace detail {

// 3x3 stencil with the symmetry of a Laplacian: one coefficient for the corners, one for the 4 edge
// neighbours, one for the centre.
struct Stencil3x3 {
  double corner, edge, center;
  KOKKOS_INLINE_FUNCTION double coefficient(int dy, int dx) const {
    if (dy == 0 && dx == 0) return center;
    return (dy == 0 || dx == 0) ? edge : corner;
  }
};
constexpr Stencil3x3 ecker_laplacian{0.25, 0.5, -3.0};  // cnn-sys-ident smoothness_regularizer_2d
constexpr Stencil3x3 lurz_laplacian{0.0, -1.0, 4.0};    // neuralpredictors laplace()

// (S * W[o, c])(y, x) with zeros outside the K_h x K_w slice.
template <class View>
KOKKOS_INLINE_FUNCTION double stencil_at(Stencil3x3 const& s, View const& w, int o, int c, int y, int x) {
  const int h = static_cast<int>(w.extent(2));
  const int wd = static_cast<int>(w.extent(3));
  double sum = 0;
  for (int dy = -1; dy <= 1; ++dy) {
    const int yy = y + dy;
    if (yy < 0 || yy >= h) continue;
    for (int dx = -1; dx <= 1; ++dx) {
      const int xx = x + dx;
      if (xx < 0 || xx >= wd) continue;
      sum += s.coefficient(dy, dx) * static_cast<double>(w(o, c, yy, xx));
    }
  }
  return sum;
}

// (S^T (S * W[o, c]))(y, x): d/dW[o,c,y,x] of (1/2) sum (S*W)^2. The adjoint of a zero-padded stencil
// is the 180-degree rotated stencil on the zero-padded output; a Laplacian is invariant under that rotation,
// so it is the same stencil applied to (S*W), which is itself zero outside the slice.
template <class View>
KOKKOS_INLINE_FUNCTION double stencil_adjoint_of_stencil_at(Stencil3x3 const& s, View const& w, int o, int c,
                                                            int y, int x) {
  const int h = static_cast<int>(w.extent(2));
  const int wd = static_cast<int>(w.extent(3));
  double sum = 0;
  for (int dy = -1; dy <= 1; ++dy) {
    const int yy = y + dy;
    if (yy < 0 || yy >= h) continue;
    for (int dx = -1; dx <= 1; ++dx) {
      const int xx = x + dx;
      if (xx < 0 || xx >= wd) continue;
      sum += s.coefficient(dy, dx) * stencil_at(s, w, o, c, yy, xx);
    }
  }
  return sum;
}

template <class T>
KOKKOS_INLINE_FUNCTION double sign_of(T x) {  // sign(0) = 0: the subgradient of |x| at 0 that we use
  return x > T(0) ? 1.0 : (x < T(0) ? -1.0 : 0.0);
}

template <class ViewA, class ViewB>
void require_same_extents(ViewA const& a, ViewB const& b, const char* what, const char* where) {
  static_assert(unsigned(ViewA::rank) == unsigned(ViewB::rank), "same rank");
  for (unsigned d = 0; d < unsigned(ViewA::rank); ++d)
    if (a.extent(d) != b.extent(d))
      throw ShapeError(std::string(what) + " has extent " + std::to_string(b.extent(d)) + " in dimension " +
                           std::to_string(d) + " but the tensor it belongs to has " + std::to_string(a.extent(d)),
                       where, "pass the gradient view of the same parameter slot");
}

template <class View>
void require_contiguous(View const& v, const char* what, const char* where) {
  if (!v.span_is_contiguous())
    throw ShapeError(std::string(what) + " is not contiguous", where, "pass a whole parameter slot, not a strided subview");
}

// ---- Ecker smoothness, per output filter ------------------------------------------------------------
template <class T, class ExecSpace>
double conv_smoothness(ExecSpace const& space, View4<T, typename ExecSpace::memory_space> const& w, double weight,
                       View4<T, typename ExecSpace::memory_space> const& d_w, bool with_grad) {
  using Policy = Kokkos::TeamPolicy<ExecSpace>;
  using Member = typename Policy::member_type;
  const int c_out = static_cast<int>(w.extent(0));
  const int slice = static_cast<int>(w.extent(2) * w.extent(3));
  const int wd = static_cast<int>(w.extent(3));
  const int n = static_cast<int>(w.extent(1)) * slice;
  const Stencil3x3 lap = ecker_laplacian;
  double total = 0;
  Kokkos::parallel_reduce(
      "v1sysid::regularizers::conv_smoothness", Policy(space, c_out, Kokkos::AUTO),
      KOKKOS_LAMBDA(Member const& team, double& sum) {
        const int o = team.league_rank();
        double roughness = 0, energy = 0;
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(team, n),
            [&](int i, double& acc) {
              const double l = stencil_at(lap, w, o, i / slice, (i % slice) / wd, i % wd);
              acc += l * l;
            },
            roughness);
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(team, n),
            [&](int i, double& acc) {
              const double v = static_cast<double>(w(o, i / slice, (i % slice) / wd, i % wd));
              acc += v * v;
            },
            energy);
        const double denom = 1e-8 + energy;
        if (with_grad) {
          // d/dW (R/E) = (2 S^T S W) / E - R 2W / E^2
          const double a = 2.0 * weight / denom;
          const double b = 2.0 * weight * roughness / (denom * denom);
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, n), [&](int i) {
            const int c = i / slice, y = (i % slice) / wd, x = i % wd;
            const double v = static_cast<double>(w(o, c, y, x));
            d_w(o, c, y, x) += static_cast<T>(a * stencil_adjoint_of_stencil_at(lap, w, o, c, y, x) - b * v);
          });
        }
        Kokkos::single(Kokkos::PerTeam(team), [&]() { sum += roughness / denom; });
      },
      total);
  return weight * total;
}

// ---- Ecker group sparsity, per output filter ----------------------------------------------------------
template <class T, class ExecSpace>
double conv_group_sparsity(ExecSpace const& space, View4<T, typename ExecSpace::memory_space> const& w,
                           double weight, View4<T, typename ExecSpace::memory_space> const& d_w, bool with_grad) {
  using Policy = Kokkos::TeamPolicy<ExecSpace>;
  using Member = typename Policy::member_type;
  const int c_out = static_cast<int>(w.extent(0));
  const int c_in = static_cast<int>(w.extent(1));
  const int slice = static_cast<int>(w.extent(2) * w.extent(3));
  const int wd = static_cast<int>(w.extent(3));
  double total = 0;
  Kokkos::parallel_reduce(
      "v1sysid::regularizers::conv_group_sparsity", Policy(space, c_out, Kokkos::AUTO),
      KOKKOS_LAMBDA(Member const& team, double& sum) {
        const int o = team.league_rank();
        double group_norms = 0, energy = 0;
        // sum_c ||W[o,c]||: one input channel per thread, its K x K slice over the vector lanes.
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(team, c_in),
            [&](int c, double& acc_norm) {
              double squares = 0;
              Kokkos::parallel_reduce(
                  Kokkos::ThreadVectorRange(team, slice),
                  [&](int j, double& acc) {
                    const double v = static_cast<double>(w(o, c, j / wd, j % wd));
                    acc += v * v;
                  },
                  squares);
              acc_norm += kmath::sqrt(squares);
            },
            group_norms);
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(team, c_in * slice),
            [&](int i, double& acc) {
              const double v = static_cast<double>(w(o, i / slice, (i % slice) / wd, i % wd));
              acc += v * v;
            },
            energy);
        const double inv_root_energy = 1.0 / kmath::sqrt(1e-8 + energy);
        if (with_grad) {
          // d/dW[o,c] (G / sqrt(E)) = W[o,c] / ||W[o,c]|| / sqrt(E) - G W[o,c] / E^{3/2}
          const double b = weight * group_norms * inv_root_energy * inv_root_energy * inv_root_energy;
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, c_in), [&](int c) {
            double squares = 0;
            Kokkos::parallel_reduce(
                Kokkos::ThreadVectorRange(team, slice),
                [&](int j, double& acc) {
                  const double v = static_cast<double>(w(o, c, j / wd, j % wd));
                  acc += v * v;
                },
                squares);
            // A group that is exactly zero: every W in it is 0, the gradient is defined as 0 (see header).
            const double a = squares > 0 ? weight * inv_root_energy / kmath::sqrt(squares) : 0.0;
            Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, slice), [&](int j) {
              const int y = j / wd, x = j % wd;
              const double v = static_cast<double>(w(o, c, y, x));
              d_w(o, c, y, x) += static_cast<T>((a - b) * v);
            });
          });
        }
        Kokkos::single(Kokkos::PerTeam(team), [&]() { sum += group_norms * inv_root_energy; });
      },
      total);
  return weight * total;
}

// ---- Lurz LaplaceL2norm, one ratio over the whole tensor ---------------------------------------------
template <class T, class ExecSpace>
double laplace_l2(ExecSpace const& space, View4<T, typename ExecSpace::memory_space> const& w, double weight,
                  View4<T, typename ExecSpace::memory_space> const& d_w, bool with_grad) {
  using Policy = Kokkos::RangePolicy<ExecSpace, Kokkos::IndexType<std::int64_t>>;
  const std::int64_t c_in = static_cast<std::int64_t>(w.extent(1));
  const std::int64_t slice = static_cast<std::int64_t>(w.extent(2) * w.extent(3));
  const std::int64_t wd = static_cast<std::int64_t>(w.extent(3));
  const std::int64_t n = static_cast<std::int64_t>(w.extent(0)) * c_in * slice;
  const Stencil3x3 lap = lurz_laplacian;
  double roughness = 0, energy = 0;
  Kokkos::parallel_reduce(
      "v1sysid::regularizers::laplace_l2::roughness", Policy(space, 0, n),
      KOKKOS_LAMBDA(std::int64_t i, double& acc) {
        const int oc = static_cast<int>(i / slice);
        const int o = static_cast<int>(oc / c_in), c = static_cast<int>(oc % c_in);
        const double l = stencil_at(lap, w, o, c, static_cast<int>((i % slice) / wd), static_cast<int>(i % wd));
        acc += l * l;
      },
      roughness);
  Kokkos::parallel_reduce(
      "v1sysid::regularizers::laplace_l2::energy", Policy(space, 0, n),
      KOKKOS_LAMBDA(std::int64_t i, double& acc) {
        const int oc = static_cast<int>(i / slice);
        const double v = static_cast<double>(w(static_cast<int>(oc / c_in), static_cast<int>(oc % c_in),
                                               static_cast<int>((i % slice) / wd), static_cast<int>(i % wd)));
        acc += v * v;
      },
      energy);
  if (!(energy > 0)) return 0.0;  // all-zero weights: the reference's 0/0; see header
  if (with_grad) {
    const double a = 2.0 * weight / energy;
    const double b = 2.0 * weight * roughness / (energy * energy);
    Kokkos::parallel_for(
        "v1sysid::regularizers::laplace_l2::grad", Policy(space, 0, n), KOKKOS_LAMBDA(std::int64_t i) {
          const int oc = static_cast<int>(i / slice);
          const int o = static_cast<int>(oc / c_in), c = static_cast<int>(oc % c_in);
          const int y = static_cast<int>((i % slice) / wd), x = static_cast<int>(i % wd);
          const double v = static_cast<double>(w(o, c, y, x));
          d_w(o, c, y, x) += static_cast<T>(a * stencil_adjoint_of_stencil_at(lap, w, o, c, y, x) - b * v);
        });
  }
  return weight * roughness / energy;
}

// ---- Ecker joint readout L1, per neuron ----------------------------------------------------------------
template <class T, class ExecSpace>
double readout_joint_l1(ExecSpace const& space, View3<T, typename ExecSpace::memory_space> const& mask,
                        View2<T, typename ExecSpace::memory_space> const& features, double weight,
                        View3<T, typename ExecSpace::memory_space> const& d_mask,
                        View2<T, typename ExecSpace::memory_space> const& d_features, bool with_grad) {
  using Policy = Kokkos::TeamPolicy<ExecSpace>;
  using Member = typename Policy::member_type;
  const int neurons = static_cast<int>(mask.extent(0));
  const int hw = static_cast<int>(mask.extent(1) * mask.extent(2));
  const int wd = static_cast<int>(mask.extent(2));
  const int channels = static_cast<int>(features.extent(1));
  double total = 0;
  Kokkos::parallel_reduce(
      "v1sysid::regularizers::readout_joint_l1", Policy(space, neurons, Kokkos::AUTO),
      KOKKOS_LAMBDA(Member const& team, double& sum) {
        const int n = team.league_rank();
        double mask_l1 = 0, feature_l1 = 0;
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(team, hw),
            [&](int j, double& acc) { acc += kmath::fabs(static_cast<double>(mask(n, j / wd, j % wd))); }, mask_l1);
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(team, channels),
            [&](int k, double& acc) { acc += kmath::fabs(static_cast<double>(features(n, k))); }, feature_l1);
        if (with_grad) {
          const double a = weight * feature_l1;
          const double b = weight * mask_l1;
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, hw), [&](int j) {
            const int y = j / wd, x = j % wd;
            d_mask(n, y, x) += static_cast<T>(a * sign_of(mask(n, y, x)));
          });
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, channels), [&](int k) {
            d_features(n, k) += static_cast<T>(b * sign_of(features(n, k)));
          });
        }
        Kokkos::single(Kokkos::PerTeam(team), [&]() { sum += mask_l1 * feature_l1; });
      },
      total);
  return weight * total;
}

// ---- element-wise L1 and L2 ---------------------------------------------------------------------------
template <class T, class ExecSpace>
double l1(ExecSpace const& space, View1<T, typename ExecSpace::memory_space> const& x, double weight,
          View1<T, typename ExecSpace::memory_space> const& d_x, bool with_grad) {
  using Policy = Kokkos::RangePolicy<ExecSpace, Kokkos::IndexType<std::int64_t>>;
  const std::int64_t n = static_cast<std::int64_t>(x.extent(0));
  double total = 0;
  Kokkos::parallel_reduce(
      "v1sysid::regularizers::l1", Policy(space, 0, n),
      KOKKOS_LAMBDA(std::int64_t i, double& acc) { acc += kmath::fabs(static_cast<double>(x(i))); }, total);
  if (with_grad)
    Kokkos::parallel_for(
        "v1sysid::regularizers::l1_grad", Policy(space, 0, n),
        KOKKOS_LAMBDA(std::int64_t i) { d_x(i) += static_cast<T>(weight * sign_of(x(i))); });
  return weight * total;
}

template <class T, class ExecSpace>
double l2(ExecSpace const& space, View1<T, typename ExecSpace::memory_space> const& x, double weight,
          View1<T, typename ExecSpace::memory_space> const& d_x, bool with_grad) {
  using Policy = Kokkos::RangePolicy<ExecSpace, Kokkos::IndexType<std::int64_t>>;
  const std::int64_t n = static_cast<std::int64_t>(x.extent(0));
  double total = 0;
  Kokkos::parallel_reduce(
      "v1sysid::regularizers::l2", Policy(space, 0, n),
      KOKKOS_LAMBDA(std::int64_t i, double& acc) {
        const double v = static_cast<double>(x(i));
        acc += v * v;
      },
      total);
  if (with_grad)
    Kokkos::parallel_for(
        "v1sysid::regularizers::l2_grad", Policy(space, 0, n),
        KOKKOS_LAMBDA(std::int64_t i) { d_x(i) += static_cast<T>(2.0 * weight * static_cast<double>(x(i))); });
  return weight * total;
}

// A contiguous rank-2/3 View seen as rank 1 (same memory, unmanaged).
template <class View>
View1<typename View::value_type, typename View::memory_space> flatten(View const& v, const char* what,
                                                                      const char* where) {
  require_contiguous(v, what, where);
  return View1<typename View::value_type, typename View::memory_space>(v.data(), v.size());
}

template <class Mask, class Features>
void require_readout_shapes(Mask const& mask, Features const& features, const char* where) {
  if (mask.extent(0) != features.extent(0))
    throw ShapeError("readout mask has " + std::to_string(mask.extent(0)) + " neurons but features have " +
                         std::to_string(features.extent(0)),
                     where, "pass the mask (N, H, W) and features (N, C) of the same readout");
}

}  // namespace detail

// ---- public entry points: argument checks, then the shared implementations above -----------------------

template <class T, class ExecSpace>
double conv_smoothness_value(ExecSpace const& space, View4<T, typename ExecSpace::memory_space> const& w,
                             double weight) {
  if (weight == 0) return 0.0;
  return detail::conv_smoothness(space, w, weight, View4<T, typename ExecSpace::memory_space>(), false);
}
template <class T, class ExecSpace>
double conv_smoothness_grad(ExecSpace const& space, View4<T, typename ExecSpace::memory_space> const& w,
                            double weight, View4<T, typename ExecSpace::memory_space> const& d_w) {
  detail::require_same_extents(w, d_w, "d_w", "conv_smoothness_grad");
  if (weight == 0) return 0.0;
  return detail::conv_smoothness(space, w, weight, d_w, true);
}

template <class T, class ExecSpace>
double conv_group_sparsity_value(ExecSpace const& space, View4<T, typename ExecSpace::memory_space> const& w,
                                 double weight) {
  if (weight == 0) return 0.0;
  return detail::conv_group_sparsity(space, w, weight, View4<T, typename ExecSpace::memory_space>(), false);
}
template <class T, class ExecSpace>
double conv_group_sparsity_grad(ExecSpace const& space, View4<T, typename ExecSpace::memory_space> const& w,
                                double weight, View4<T, typename ExecSpace::memory_space> const& d_w) {
  detail::require_same_extents(w, d_w, "d_w", "conv_group_sparsity_grad");
  if (weight == 0) return 0.0;
  return detail::conv_group_sparsity(space, w, weight, d_w, true);
}

template <class T, class ExecSpace>
double laplace_l2_value(ExecSpace const& space, View4<T, typename ExecSpace::memory_space> const& w,
                        double weight) {
  if (weight == 0) return 0.0;
  return detail::laplace_l2(space, w, weight, View4<T, typename ExecSpace::memory_space>(), false);
}
template <class T, class ExecSpace>
double laplace_l2_grad(ExecSpace const& space, View4<T, typename ExecSpace::memory_space> const& w, double weight,
                       View4<T, typename ExecSpace::memory_space> const& d_w) {
  detail::require_same_extents(w, d_w, "d_w", "laplace_l2_grad");
  if (weight == 0) return 0.0;
  return detail::laplace_l2(space, w, weight, d_w, true);
}

template <class T, class ExecSpace>
double readout_joint_l1_value(ExecSpace const& space, View3<T, typename ExecSpace::memory_space> const& mask,
                              View2<T, typename ExecSpace::memory_space> const& features, double weight) {
  detail::require_readout_shapes(mask, features, "readout_joint_l1_value");
  if (weight == 0) return 0.0;
  return detail::readout_joint_l1(space, mask, features, weight, View3<T, typename ExecSpace::memory_space>(),
                                  View2<T, typename ExecSpace::memory_space>(), false);
}
template <class T, class ExecSpace>
double readout_joint_l1_grad(ExecSpace const& space, View3<T, typename ExecSpace::memory_space> const& mask,
                             View2<T, typename ExecSpace::memory_space> const& features, double weight,
                             View3<T, typename ExecSpace::memory_space> const& d_mask,
                             View2<T, typename ExecSpace::memory_space> const& d_features) {
  detail::require_readout_shapes(mask, features, "readout_joint_l1_grad");
  detail::require_same_extents(mask, d_mask, "d_mask", "readout_joint_l1_grad");
  detail::require_same_extents(features, d_features, "d_features", "readout_joint_l1_grad");
  if (weight == 0) return 0.0;
  return detail::readout_joint_l1(space, mask, features, weight, d_mask, d_features, true);
}

template <class T, class ExecSpace>
double readout_separate_l1_value(ExecSpace const& space, View3<T, typename ExecSpace::memory_space> const& mask,
                                 View2<T, typename ExecSpace::memory_space> const& features, double mask_weight,
                                 double feature_weight) {
  const char* where = "readout_separate_l1_value";
  detail::require_readout_shapes(mask, features, where);
  return l1_value(space, detail::flatten(mask, "mask", where), mask_weight) +
         l1_value(space, detail::flatten(features, "features", where), feature_weight);
}
template <class T, class ExecSpace>
double readout_separate_l1_grad(ExecSpace const& space, View3<T, typename ExecSpace::memory_space> const& mask,
                                View2<T, typename ExecSpace::memory_space> const& features, double mask_weight,
                                double feature_weight, View3<T, typename ExecSpace::memory_space> const& d_mask,
                                View2<T, typename ExecSpace::memory_space> const& d_features) {
  const char* where = "readout_separate_l1_grad";
  detail::require_readout_shapes(mask, features, where);
  detail::require_same_extents(mask, d_mask, "d_mask", where);
  detail::require_same_extents(features, d_features, "d_features", where);
  return l1_grad(space, detail::flatten(mask, "mask", where), mask_weight, detail::flatten(d_mask, "d_mask", where)) +
         l1_grad(space, detail::flatten(features, "features", where), feature_weight,
                 detail::flatten(d_features, "d_features", where));
}

template <class T, class ExecSpace>
double readout_l1_mask_l2_features_value(ExecSpace const& space,
                                         View3<T, typename ExecSpace::memory_space> const& mask,
                                         View2<T, typename ExecSpace::memory_space> const& features,
                                         double mask_weight, double feature_weight) {
  const char* where = "readout_l1_mask_l2_features_value";
  detail::require_readout_shapes(mask, features, where);
  return l1_value(space, detail::flatten(mask, "mask", where), mask_weight) +
         l2_value(space, detail::flatten(features, "features", where), feature_weight);
}
template <class T, class ExecSpace>
double readout_l1_mask_l2_features_grad(ExecSpace const& space,
                                        View3<T, typename ExecSpace::memory_space> const& mask,
                                        View2<T, typename ExecSpace::memory_space> const& features,
                                        double mask_weight, double feature_weight,
                                        View3<T, typename ExecSpace::memory_space> const& d_mask,
                                        View2<T, typename ExecSpace::memory_space> const& d_features) {
  const char* where = "readout_l1_mask_l2_features_grad";
  detail::require_readout_shapes(mask, features, where);
  detail::require_same_extents(mask, d_mask, "d_mask", where);
  detail::require_same_extents(features, d_features, "d_features", where);
  return l1_grad(space, detail::flatten(mask, "mask", where), mask_weight, detail::flatten(d_mask, "d_mask", where)) +
         l2_grad(space, detail::flatten(features, "features", where), feature_weight,
                 detail::flatten(d_features, "d_features", where));
}

template <class T, class ExecSpace>
double l1_value(ExecSpace const& space, View1<T, typename ExecSpace::memory_space> const& x, double weight) {
  if (weight == 0) return 0.0;
  return detail::l1(space, x, weight, View1<T, typename ExecSpace::memory_space>(), false);
}
template <class T, class ExecSpace>
double l1_grad(ExecSpace const& space, View1<T, typename ExecSpace::memory_space> const& x, double weight,
               View1<T, typename ExecSpace::memory_space> const& d_x) {
  detail::require_same_extents(x, d_x, "d_x", "l1_grad");
  if (weight == 0) return 0.0;
  return detail::l1(space, x, weight, d_x, true);
}
template <class T, class ExecSpace>
double l2_value(ExecSpace const& space, View1<T, typename ExecSpace::memory_space> const& x, double weight) {
  if (weight == 0) return 0.0;
  return detail::l2(space, x, weight, View1<T, typename ExecSpace::memory_space>(), false);
}
template <class T, class ExecSpace>
double l2_grad(ExecSpace const& space, View1<T, typename ExecSpace::memory_space> const& x, double weight,
               View1<T, typename ExecSpace::memory_space> const& d_x) {
  detail::require_same_extents(x, d_x, "d_x", "l2_grad");
  if (weight == 0) return 0.0;
  return detail::l2(space, x, weight, d_x, true);
}

#define V1SYSID_INSTANTIATE_REGULARIZERS(T, S)                                                                    \
  template double conv_smoothness_value<T, S>(S const&, View4<T, S::memory_space> const&, double);               \
  template double conv_smoothness_grad<T, S>(S const&, View4<T, S::memory_space> const&, double,                 \
                                             View4<T, S::memory_space> const&);                                  \
  template double conv_group_sparsity_value<T, S>(S const&, View4<T, S::memory_space> const&, double);           \
  template double conv_group_sparsity_grad<T, S>(S const&, View4<T, S::memory_space> const&, double,             \
                                                 View4<T, S::memory_space> const&);                              \
  template double laplace_l2_value<T, S>(S const&, View4<T, S::memory_space> const&, double);                    \
  template double laplace_l2_grad<T, S>(S const&, View4<T, S::memory_space> const&, double,                      \
                                        View4<T, S::memory_space> const&);                                       \
  template double readout_joint_l1_value<T, S>(S const&, View3<T, S::memory_space> const&,                       \
                                               View2<T, S::memory_space> const&, double);                        \
  template double readout_joint_l1_grad<T, S>(S const&, View3<T, S::memory_space> const&,                        \
                                              View2<T, S::memory_space> const&, double,                          \
                                              View3<T, S::memory_space> const&, View2<T, S::memory_space> const&); \
  template double readout_separate_l1_value<T, S>(S const&, View3<T, S::memory_space> const&,                    \
                                                  View2<T, S::memory_space> const&, double, double);             \
  template double readout_separate_l1_grad<T, S>(S const&, View3<T, S::memory_space> const&,                     \
                                                 View2<T, S::memory_space> const&, double, double,               \
                                                 View3<T, S::memory_space> const&,                               \
                                                 View2<T, S::memory_space> const&);                              \
  template double readout_l1_mask_l2_features_value<T, S>(S const&, View3<T, S::memory_space> const&,            \
                                                          View2<T, S::memory_space> const&, double, double);     \
  template double readout_l1_mask_l2_features_grad<T, S>(S const&, View3<T, S::memory_space> const&,             \
                                                         View2<T, S::memory_space> const&, double, double,       \
                                                         View3<T, S::memory_space> const&,                       \
                                                         View2<T, S::memory_space> const&);                      \
  template double l1_value<T, S>(S const&, View1<T, S::memory_space> const&, double);                            \
  template double l1_grad<T, S>(S const&, View1<T, S::memory_space> const&, double,                              \
                                View1<T, S::memory_space> const&);                                               \
  template double l2_value<T, S>(S const&, View1<T, S::memory_space> const&, double);                            \
  template double l2_grad<T, S>(S const&, View1<T, S::memory_space> const&, double, View1<T, S::memory_space> const&);

V1SYSID_INSTANTIATE_FOR_EACH(V1SYSID_INSTANTIATE_REGULARIZERS)

}  // namespace v1sysid::layers
