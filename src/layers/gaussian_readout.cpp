// Kernels of gaussian_readout.hpp. Everything is a gather with one owner per output element:
//   forward          one work item per (b, n): position, 4 bilinear taps, loop over channels
//   backward params  one work item per n: loop over the batch and channels (d_F, d_bias, d_mu, d_Sigma)
//   backward input   one work item per (b, c) plane: loop over neurons in order, scatter into the own plane
// so there are no atomics and results do not depend on the backend's scheduling.
#include "layers/gaussian_readout.hpp"

#include "core/kmath.hpp"
#include "core/random.hpp"

namespace v1sysid::layers {

namespace {

// Position of one (b, n) on the pixel grid: the top-left tap (x0, y0), the fractions (fx, fy), and whether
// each clamped coordinate was inside [-1, 1] before the clamp (the gradient mask).
template <class T>
struct Tap {
  int x0, y0;
  T fx, fy;
};

template <class T>
KOKKOS_INLINE_FUNCTION Tap<T> locate(T px, T py, int H, int W) {
  // p in [-1, 1] after the clamp, so the pixel coordinates are in [0, W-1] x [0, H-1] and truncation is floor.
  const T xp = (px + T(1)) * T(0.5) * T(W - 1);
  const T yp = (py + T(1)) * T(0.5) * T(H - 1);
  Tap<T> t;
  t.x0 = static_cast<int>(xp);
  t.y0 = static_cast<int>(yp);
  t.fx = xp - T(t.x0);
  t.fy = yp - T(t.y0);
  return t;
}

template <class T>
KOKKOS_INLINE_FUNCTION T clamp_unit(T v) {
  return v < T(-1) ? T(-1) : (v > T(1) ? T(1) : v);
}

}  // namespace

std::string describe(const GaussianReadoutShape& s) {
  return "GaussianReadoutShape{B=" + std::to_string(s.B) + ", C=" + std::to_string(s.C) + ", H=" +
         std::to_string(s.H) + ", W=" + std::to_string(s.W) + ", N=" + std::to_string(s.N) + "}";
}

void validate(const GaussianReadoutShape& s) {
  detail::require(s.B >= 0 && s.C >= 1 && s.H >= 1 && s.W >= 1 && s.N >= 1, "invalid sizes " + describe(s),
                  "gaussian_readout", "use a non-negative batch and positive channels, image size and neurons");
}

template <class T, class ExecSpace>
void gaussian_readout_draw_noise(ExecSpace const& space, GaussianReadoutShape const& s, std::uint64_t seed,
                                 UView3<T, ExecSpace> z) {
  validate(s);
  detail::require_extents(z, {std::size_t(s.B), std::size_t(s.N), 2}, "gaussian_readout_draw_noise", "z");
  const std::uint64_t key = splitmix64_mix(seed + kSplitMix64Gamma);
  const int total = s.B * s.N;
  Kokkos::parallel_for(
      "v1sysid::gaussian_readout::draw_noise", Kokkos::RangePolicy<ExecSpace>(space, 0, total),
      KOKKOS_LAMBDA(const int i) {
        const std::uint64_t h1 = splitmix64_mix(key ^ (std::uint64_t(i) * 0xD1B54A32D192ED03ull + 1));
        const std::uint64_t h2 = splitmix64_mix(h1 + kSplitMix64Gamma);
        const double u1 = (double(h1 >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
        const double u2 = double(h2 >> 11) * 0x1.0p-53;          // [0, 1)
        const double r = kmath::sqrt(-2.0 * kmath::log(u1));
        const double a = 6.283185307179586 * u2;
        T* zi = z.data() + 2 * std::size_t(i);
        zi[0] = static_cast<T>(r * kmath::cos(a));
        zi[1] = static_cast<T>(r * kmath::sin(a));
      });
}

template <class T, class ExecSpace>
void gaussian_readout_forward(ExecSpace const& space, GaussianReadoutShape const& s, UView2<const T, ExecSpace> mu,
                              UView3<const T, ExecSpace> sigma, UView2<const T, ExecSpace> features,
                              UView1<const T, ExecSpace> bias, UView4<const T, ExecSpace> in,
                              UView3<const T, ExecSpace> z, UView3<T, ExecSpace> grid, UView2<T, ExecSpace> out) {
  const char* where = "gaussian_readout_forward";
  validate(s);
  const std::size_t B = s.B, C = s.C, H = s.H, W = s.W, N = s.N;
  detail::require_extents(mu, {N, 2}, where, "mu");
  detail::require_extents(sigma, {N, 2, 2}, where, "sigma");
  detail::require_extents(features, {N, C}, where, "features");
  detail::require_extents(bias, {N}, where, "bias");
  detail::require_extents(in, {B, C, H, W}, where, "in");
  if (present(z)) detail::require_extents(z, {B, N, 2}, where, "z");
  detail::require_extents(grid, {B, N, 2}, where, "grid");
  detail::require_extents(out, {B, N}, where, "out");
  if (B == 0) return;
  const int Nn = s.N, Cc = s.C, Hh = s.H, Ww = s.W;
  const bool sample = present(z);
  Kokkos::parallel_for(
      "v1sysid::gaussian_readout::forward", Kokkos::RangePolicy<ExecSpace>(space, 0, s.B * s.N),
      KOKKOS_LAMBDA(const int i) {
        const int b = i / Nn, n = i % Nn;
        T px = mu(n, 0), py = mu(n, 1);
        if (sample) {
          const T z0 = z(b, n, 0), z1 = z(b, n, 1);
          px += sigma(n, 0, 0) * z0 + sigma(n, 0, 1) * z1;
          py += sigma(n, 1, 0) * z0 + sigma(n, 1, 1) * z1;
        }
        px = clamp_unit(px);
        py = clamp_unit(py);
        grid(b, n, 0) = px;
        grid(b, n, 1) = py;
        const Tap<T> t = locate(px, py, Hh, Ww);
        const bool x1_in = t.x0 + 1 < Ww, y1_in = t.y0 + 1 < Hh;
        const T w00 = (T(1) - t.fx) * (T(1) - t.fy), w01 = t.fx * (T(1) - t.fy);
        const T w10 = (T(1) - t.fx) * t.fy, w11 = t.fx * t.fy;
        T acc = T(0);
        for (int c = 0; c < Cc; ++c) {
          const T* plane = &in(b, c, 0, 0);
          const T* row0 = plane + t.y0 * Ww;
          T v = w00 * row0[t.x0];
          if (x1_in) v += w01 * row0[t.x0 + 1];
          if (y1_in) {
            const T* row1 = row0 + Ww;
            v += w10 * row1[t.x0];
            if (x1_in) v += w11 * row1[t.x0 + 1];
          }
          acc += features(n, c) * v;
        }
        out(b, n) = bias(n) + acc;
      });
}

template <class T, class ExecSpace>
void gaussian_readout_backward(ExecSpace const& space, GaussianReadoutShape const& s, UView2<const T, ExecSpace> mu,
                               UView3<const T, ExecSpace> sigma, UView2<const T, ExecSpace> features,
                               UView4<const T, ExecSpace> in, UView3<const T, ExecSpace> z,
                               UView3<const T, ExecSpace> grid, UView2<const T, ExecSpace> d_out,
                               UView4<T, ExecSpace> d_in, UView2<T, ExecSpace> d_mu, UView3<T, ExecSpace> d_sigma,
                               UView2<T, ExecSpace> d_features, UView1<T, ExecSpace> d_bias) {
  const char* where = "gaussian_readout_backward";
  validate(s);
  const std::size_t B = s.B, C = s.C, H = s.H, W = s.W, N = s.N;
  detail::require_extents(mu, {N, 2}, where, "mu");
  detail::require_extents(sigma, {N, 2, 2}, where, "sigma");
  detail::require_extents(features, {N, C}, where, "features");
  detail::require_extents(in, {B, C, H, W}, where, "in");
  if (present(z)) detail::require_extents(z, {B, N, 2}, where, "z");
  detail::require_extents(grid, {B, N, 2}, where, "grid");
  detail::require_extents(d_out, {B, N}, where, "d_out");
  if (present(d_in)) detail::require_extents(d_in, {B, C, H, W}, where, "d_in");
  if (present(d_mu)) detail::require_extents(d_mu, {N, 2}, where, "d_mu");
  if (present(d_sigma)) detail::require_extents(d_sigma, {N, 2, 2}, where, "d_sigma");
  detail::require_extents(d_features, {N, C}, where, "d_features");
  detail::require_extents(d_bias, {N}, where, "d_bias");
  if (B == 0) return;
  const int Bb = s.B, Nn = s.N, Cc = s.C, Hh = s.H, Ww = s.W;
  const bool sample = present(z), want_mu = present(d_mu), want_sigma = present(d_sigma) && sample;
  // d position / d pixel coordinate
  const T sx = T(0.5) * T(Ww - 1), sy = T(0.5) * T(Hh - 1);

  Kokkos::parallel_for(
      "v1sysid::gaussian_readout::backward_params", Kokkos::RangePolicy<ExecSpace>(space, 0, Nn),
      KOKKOS_LAMBDA(const int n) {
        T g_bias = T(0), g_mu0 = T(0), g_mu1 = T(0), g_s00 = T(0), g_s01 = T(0), g_s10 = T(0), g_s11 = T(0);
        // The unclamped position is needed for the mask; recompute it from mu, Sigma and z.
        for (int b = 0; b < Bb; ++b) {
          const T g = d_out(b, n);
          g_bias += g;
          const T px = grid(b, n, 0), py = grid(b, n, 1);
          const Tap<T> t = locate(px, py, Hh, Ww);
          const bool x1_in = t.x0 + 1 < Ww, y1_in = t.y0 + 1 < Hh;
          const T w00 = (T(1) - t.fx) * (T(1) - t.fy), w01 = t.fx * (T(1) - t.fy);
          const T w10 = (T(1) - t.fx) * t.fy, w11 = t.fx * t.fy;
          T dpx = T(0), dpy = T(0);
          for (int c = 0; c < Cc; ++c) {
            const T* row0 = &in(b, c, 0, 0) + t.y0 * Ww;
            const T v00 = row0[t.x0];
            const T v01 = x1_in ? row0[t.x0 + 1] : T(0);
            const T v10 = y1_in ? row0[t.x0 + Ww] : T(0);
            const T v11 = (x1_in && y1_in) ? row0[t.x0 + Ww + 1] : T(0);
            const T f = features(n, c);
            d_features(n, c) += g * (w00 * v00 + w01 * v01 + w10 * v10 + w11 * v11);
            dpx += f * ((T(1) - t.fy) * (v01 - v00) + t.fy * (v11 - v10));
            dpy += f * ((T(1) - t.fx) * (v10 - v00) + t.fx * (v11 - v01));
          }
          dpx *= g * sx;
          dpy *= g * sy;
          // Clamp mask: recompute the unclamped position.
          T ux = mu(n, 0), uy = mu(n, 1), z0 = T(0), z1 = T(0);
          if (sample) {
            z0 = z(b, n, 0);
            z1 = z(b, n, 1);
            ux += sigma(n, 0, 0) * z0 + sigma(n, 0, 1) * z1;
            uy += sigma(n, 1, 0) * z0 + sigma(n, 1, 1) * z1;
          }
          if (ux < T(-1) || ux > T(1)) dpx = T(0);
          if (uy < T(-1) || uy > T(1)) dpy = T(0);
          g_mu0 += dpx;
          g_mu1 += dpy;
          g_s00 += dpx * z0;
          g_s01 += dpx * z1;
          g_s10 += dpy * z0;
          g_s11 += dpy * z1;
        }
        d_bias(n) += g_bias;
        if (want_mu) {
          d_mu(n, 0) += g_mu0;
          d_mu(n, 1) += g_mu1;
        }
        if (want_sigma) {
          d_sigma(n, 0, 0) += g_s00;
          d_sigma(n, 0, 1) += g_s01;
          d_sigma(n, 1, 0) += g_s10;
          d_sigma(n, 1, 1) += g_s11;
        }
      });

  if (!present(d_in)) return;
  Kokkos::deep_copy(space, d_in, T(0));
  Kokkos::parallel_for(
      "v1sysid::gaussian_readout::backward_input", Kokkos::RangePolicy<ExecSpace>(space, 0, Bb * Cc),
      KOKKOS_LAMBDA(const int i) {
        const int b = i / Cc, c = i % Cc;
        T* plane = &d_in(b, c, 0, 0);
        for (int n = 0; n < Nn; ++n) {
          const T g = d_out(b, n) * features(n, c);
          const Tap<T> t = locate(grid(b, n, 0), grid(b, n, 1), Hh, Ww);
          const bool x1_in = t.x0 + 1 < Ww, y1_in = t.y0 + 1 < Hh;
          T* row0 = plane + t.y0 * Ww;
          row0[t.x0] += g * (T(1) - t.fx) * (T(1) - t.fy);
          if (x1_in) row0[t.x0 + 1] += g * t.fx * (T(1) - t.fy);
          if (y1_in) {
            row0[t.x0 + Ww] += g * (T(1) - t.fx) * t.fy;
            if (x1_in) row0[t.x0 + Ww + 1] += g * t.fx * t.fy;
          }
        }
      });
}

template <class T, class ExecSpace>
void grid_predictor_forward(ExecSpace const& space, UView2<const T, ExecSpace> A, UView1<const T, ExecSpace> a,
                            UView2<const T, ExecSpace> coords, UView2<T, ExecSpace> mu) {
  const char* where = "grid_predictor_forward";
  const std::size_t N = coords.extent(0);
  detail::require_extents(A, {2, 2}, where, "A");
  detail::require_extents(a, {2}, where, "a");
  detail::require_extents(coords, {N, 2}, where, "coords");
  detail::require_extents(mu, {N, 2}, where, "mu");
  Kokkos::parallel_for(
      "v1sysid::gaussian_readout::grid_predictor_forward", Kokkos::RangePolicy<ExecSpace>(space, 0, int(N)),
      KOKKOS_LAMBDA(const int n) {
        const T s0 = coords(n, 0), s1 = coords(n, 1);
        mu(n, 0) = A(0, 0) * s0 + A(0, 1) * s1 + a(0);
        mu(n, 1) = A(1, 0) * s0 + A(1, 1) * s1 + a(1);
      });
}

template <class T, class ExecSpace>
void grid_predictor_backward(ExecSpace const& space, UView2<const T, ExecSpace> coords,
                             UView2<const T, ExecSpace> d_mu, UView2<T, ExecSpace> d_A, UView1<T, ExecSpace> d_a) {
  const char* where = "grid_predictor_backward";
  const std::size_t N = coords.extent(0);
  detail::require_extents(coords, {N, 2}, where, "coords");
  detail::require_extents(d_mu, {N, 2}, where, "d_mu");
  detail::require_extents(d_A, {2, 2}, where, "d_A");
  detail::require_extents(d_a, {2}, where, "d_a");
  // Six sums over the neurons, one team each, added to the gradients on the device: no host round trip (which
  // would allocate two host views per training step on a GPU). In double, the neurons in order within a team, so
  // the Serial backend adds exactly as the former one-reduction-per-sum code did.
  using Team = typename Kokkos::TeamPolicy<ExecSpace>::member_type;
  Kokkos::parallel_for(
      "v1sysid::gaussian_readout::grid_predictor_backward", Kokkos::TeamPolicy<ExecSpace>(space, 6, Kokkos::AUTO),
      KOKKOS_LAMBDA(const Team& team) {
        const int k = team.league_rank();  // d_A(0,0), d_A(0,1), d_A(1,0), d_A(1,1), d_a(0), d_a(1)
        const int i = k < 4 ? k / 2 : k - 4;  // output coordinate
        double sum = 0;
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(team, int(N)),
            [&](const int n, double& r) {
              const double g = d_mu(n, i);
              r += k < 4 ? g * double(coords(n, k % 2)) : g;
            },
            sum);
        Kokkos::single(Kokkos::PerTeam(team), [&] {
          if (k < 4)
            d_A(k / 2, k % 2) += T(sum);
          else
            d_a(k - 4) += T(sum);
        });
      });
}

#define V1SYSID_GAUSSIAN_INSTANTIATE(T, E)                                                                       \
  template void gaussian_readout_draw_noise<T, E>(E const&, GaussianReadoutShape const&, std::uint64_t,          \
                                                  UView3<T, E>);                                                 \
  template void gaussian_readout_forward<T, E>(E const&, GaussianReadoutShape const&, UView2<const T, E>,        \
                                               UView3<const T, E>, UView2<const T, E>, UView1<const T, E>,       \
                                               UView4<const T, E>, UView3<const T, E>, UView3<T, E>,            \
                                               UView2<T, E>);                                                    \
  template void gaussian_readout_backward<T, E>(E const&, GaussianReadoutShape const&, UView2<const T, E>,       \
                                                UView3<const T, E>, UView2<const T, E>, UView4<const T, E>,      \
                                                UView3<const T, E>, UView3<const T, E>, UView2<const T, E>,      \
                                                UView4<T, E>, UView2<T, E>, UView3<T, E>, UView2<T, E>,          \
                                                UView1<T, E>);                                                   \
  template void grid_predictor_forward<T, E>(E const&, UView2<const T, E>, UView1<const T, E>,                   \
                                             UView2<const T, E>, UView2<T, E>);                                  \
  template void grid_predictor_backward<T, E>(E const&, UView2<const T, E>, UView2<const T, E>, UView2<T, E>,    \
                                              UView1<T, E>);
V1SYSID_INSTANTIATE_FOR_EACH(V1SYSID_GAUSSIAN_INSTANTIATE)

}  // namespace v1sysid::layers
