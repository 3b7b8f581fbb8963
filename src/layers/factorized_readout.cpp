// Kernels of factorized_readout.hpp. The three O(B*C*H*W*N) products are KokkosBlas GEMMs; the rest is
// O(B*C*N) elementwise work done in tiles of neurons so that the inner loop runs over contiguous n.
#include "layers/factorized_readout.hpp"

#include "core/kmath.hpp"

namespace v1sysid::layers {

namespace {

constexpr int kNeuronTile = 256;  // neurons per work item in the O(B*C*N) kernels

template <class T>
KOKKOS_INLINE_FUNCTION T sign_of(T v) {
  return v > T(0) ? T(1) : (v < T(0) ? T(-1) : T(0));  // sign(0) = 0, documented in the header
}

// abs_mask (N, H*W) = |M~|.
template <class T, class ExecSpace>
void materialise_abs_mask(ExecSpace const& space, UView3<const T, ExecSpace> mask_raw, UView2<T, ExecSpace> abs_mask) {
  const T* m = mask_raw.data();
  T* a = abs_mask.data();
  Kokkos::parallel_for(
      "v1sysid::factorized_readout::abs_mask", Kokkos::RangePolicy<ExecSpace>(space, 0, abs_mask.span()),
      KOKKOS_LAMBDA(const std::size_t i) { a[i] = kmath::fabs(m[i]); });
}

// features_t (C, N) = F^T with F = F~ or |F~|.
template <class T, class ExecSpace>
void materialise_features_t(ExecSpace const& space, bool positive, UView2<const T, ExecSpace> features,
                            UView2<T, ExecSpace> features_t) {
  const int N = features.extent(0), C = features.extent(1);
  Kokkos::parallel_for(
      "v1sysid::factorized_readout::features_t", Kokkos::RangePolicy<ExecSpace>(space, 0, C * N),
      KOKKOS_LAMBDA(const int i) {
        const int c = i / N, n = i % N;
        const T f = features(n, c);
        features_t(c, n) = positive ? kmath::fabs(f) : f;
      });
}

}  // namespace

std::string describe(const FactorizedReadoutShape& s, const FactorizedReadoutOptions& o) {
  return "FactorizedReadoutShape{B=" + std::to_string(s.B) + ", C=" + std::to_string(s.C) + ", H=" +
         std::to_string(s.H) + ", W=" + std::to_string(s.W) + ", N=" + std::to_string(s.N) +
         "} positive_features=" + (o.positive_features ? "true" : "false");
}

void validate(const FactorizedReadoutShape& s) {
  detail::require(s.B >= 0 && s.C >= 1 && s.H >= 1 && s.W >= 1 && s.N >= 1,
                  "invalid sizes " + describe(s, FactorizedReadoutOptions{}), "factorized_readout",
                  "use a non-negative batch and positive channels, image size and neurons");
}

std::size_t factorized_readout_workspace_size(const FactorizedReadoutShape& s) {
  return std::size_t(s.N) * s.H * s.W + std::size_t(s.C) * s.N;
}

std::size_t factorized_readout_cache_size(const FactorizedReadoutShape& s) {
  return std::size_t(s.B) * s.C * s.N;
}

template <class T, class ExecSpace>
void factorized_readout_forward(ExecSpace const& space, FactorizedReadoutShape const& s,
                                FactorizedReadoutOptions const& o, UView3<const T, ExecSpace> mask_raw,
                                UView2<const T, ExecSpace> features, UView1<const T, ExecSpace> bias,
                                UView4<const T, ExecSpace> in, UView2<T, ExecSpace> out, UView1<T, ExecSpace> cache,
                                UView1<T, ExecSpace> workspace) {
  const char* where = "factorized_readout_forward";
  validate(s);
  const std::size_t B = s.B, C = s.C, H = s.H, W = s.W, N = s.N, HW = H * W;
  detail::require_extents(mask_raw, {N, H, W}, where, "mask_raw");
  detail::require_extents(features, {N, C}, where, "features");
  detail::require_extents(bias, {N}, where, "bias");
  detail::require_extents(in, {B, C, H, W}, where, "in");
  detail::require_extents(out, {B, N}, where, "out");
  detail::require_workspace(cache, factorized_readout_cache_size(s), where, "factorized_readout_cache_size");
  detail::require_workspace(workspace, factorized_readout_workspace_size(s), where,
                            "factorized_readout_workspace_size");
  if (B == 0) return;

  UView2<T, ExecSpace> abs_mask(workspace.data(), N, HW);              // (N, H*W)
  UView2<T, ExecSpace> features_t(workspace.data() + N * HW, C, N);    // (C, N)
  UView2<T, ExecSpace> t(cache.data(), B * C, N);                      // (B*C, N)
  materialise_abs_mask<T>(space, mask_raw, abs_mask);
  materialise_features_t<T>(space, o.positive_features, features, features_t);
  UView2<const T, ExecSpace> x(in.data(), B * C, HW);  // (B*C, H*W)
  detail::gemm(space, "N", "T", T(1), x, UView2<const T, ExecSpace>(abs_mask), T(0), t);

  // h[b, n] = bias[n] + sum_c F^T[c, n] * T[b*C + c, n], one work item per (b, tile of neurons).
  const int Nn = s.N, Cc = s.C, tiles = (Nn + kNeuronTile - 1) / kNeuronTile;
  Kokkos::parallel_for(
      "v1sysid::factorized_readout::contract_features", Kokkos::RangePolicy<ExecSpace>(space, 0, s.B * tiles),
      KOKKOS_LAMBDA(const int item) {
        const int b = item / tiles;
        const int n0 = (item % tiles) * kNeuronTile;
        const int n1 = n0 + kNeuronTile < Nn ? n0 + kNeuronTile : Nn;
        T* h = &out(b, 0);
        for (int n = n0; n < n1; ++n) h[n] = bias(n);
        for (int c = 0; c < Cc; ++c) {
          const T* f = &features_t(c, 0);
          const T* tr = &t(b * Cc + c, 0);
          for (int n = n0; n < n1; ++n) h[n] += f[n] * tr[n];
        }
      });
}

template <class T, class ExecSpace>
void factorized_readout_backward(ExecSpace const& space, FactorizedReadoutShape const& s,
                                 FactorizedReadoutOptions const& o, UView3<const T, ExecSpace> mask_raw,
                                 UView2<const T, ExecSpace> features, UView4<const T, ExecSpace> in,
                                 UView2<const T, ExecSpace> d_out, UView1<T, ExecSpace> cache,
                                 UView4<T, ExecSpace> d_in, UView3<T, ExecSpace> d_mask_raw,
                                 UView2<T, ExecSpace> d_features, UView1<T, ExecSpace> d_bias,
                                 UView1<T, ExecSpace> workspace) {
  const char* where = "factorized_readout_backward";
  validate(s);
  const std::size_t B = s.B, C = s.C, H = s.H, W = s.W, N = s.N, HW = H * W;
  detail::require_extents(mask_raw, {N, H, W}, where, "mask_raw");
  detail::require_extents(features, {N, C}, where, "features");
  detail::require_extents(in, {B, C, H, W}, where, "in");
  detail::require_extents(d_out, {B, N}, where, "d_out");
  if (present(d_in)) detail::require_extents(d_in, {B, C, H, W}, where, "d_in");
  detail::require_extents(d_mask_raw, {N, H, W}, where, "d_mask_raw");
  detail::require_extents(d_features, {N, C}, where, "d_features");
  detail::require_extents(d_bias, {N}, where, "d_bias");
  detail::require_workspace(cache, factorized_readout_cache_size(s), where, "factorized_readout_cache_size");
  detail::require_workspace(workspace, factorized_readout_workspace_size(s), where,
                            "factorized_readout_workspace_size");
  if (B == 0) return;

  UView2<T, ExecSpace> mask_buf(workspace.data(), N, HW);         // |M|, later d|M|
  UView2<T, ExecSpace> feat_buf(workspace.data() + N * HW, C, N); // d_F partial sums, later F^T
  UView2<T, ExecSpace> t(cache.data(), B * C, N);                 // T, later d_T
  const int Nn = s.N, Cc = s.C, Bb = s.B, tiles = (Nn + kNeuronTile - 1) / kNeuronTile;
  const bool positive = o.positive_features;

  // d_bias[n] += sum_b d_h[b, n]
  Kokkos::parallel_for(
      "v1sysid::factorized_readout::backward_bias", Kokkos::RangePolicy<ExecSpace>(space, 0, Nn),
      KOKKOS_LAMBDA(const int n) {
        T acc = T(0);
        for (int b = 0; b < Bb; ++b) acc += d_out(b, n);
        d_bias(n) += acc;
      });

  // feat_buf[c, n] = sum_b d_h[b, n] * T[b*C + c, n]   (the gradient w.r.t. F[n, c], transposed)
  Kokkos::parallel_for(
      "v1sysid::factorized_readout::backward_features", Kokkos::RangePolicy<ExecSpace>(space, 0, Cc * tiles),
      KOKKOS_LAMBDA(const int item) {
        const int c = item / tiles;
        const int n0 = (item % tiles) * kNeuronTile;
        const int n1 = n0 + kNeuronTile < Nn ? n0 + kNeuronTile : Nn;
        T* acc = &feat_buf(c, 0);
        for (int n = n0; n < n1; ++n) acc[n] = T(0);
        for (int b = 0; b < Bb; ++b) {
          const T* g = &d_out(b, 0);
          const T* tr = &t(b * Cc + c, 0);
          for (int n = n0; n < n1; ++n) acc[n] += g[n] * tr[n];
        }
      });
  // d_F~[n, c] += s_F * feat_buf[c, n]
  Kokkos::parallel_for(
      "v1sysid::factorized_readout::accumulate_features", Kokkos::RangePolicy<ExecSpace>(space, 0, Nn * Cc),
      KOKKOS_LAMBDA(const int i) {
        const int n = i / Cc, c = i % Cc;
        const T g = feat_buf(c, n);
        d_features(n, c) += positive ? sign_of(features(n, c)) * g : g;
      });

  // T -> d_T in place: d_T[b*C + c, n] = d_h[b, n] * F[n, c]
  materialise_features_t<T>(space, positive, features, feat_buf);
  Kokkos::parallel_for(
      "v1sysid::factorized_readout::backward_contraction", Kokkos::RangePolicy<ExecSpace>(space, 0, Bb * Cc),
      KOKKOS_LAMBDA(const int row) {
        const int b = row / Cc, c = row % Cc;
        const T* g = &d_out(b, 0);
        const T* f = &feat_buf(c, 0);
        T* tr = &t(row, 0);
        for (int n = 0; n < Nn; ++n) tr[n] = g[n] * f[n];
      });

  UView2<const T, ExecSpace> d_t(t);
  UView2<const T, ExecSpace> x(in.data(), B * C, HW);  // (B*C, H*W)
  if (present(d_in)) {
    materialise_abs_mask<T>(space, mask_raw, mask_buf);
    UView2<T, ExecSpace> dx(d_in.data(), B * C, HW);
    detail::gemm(space, "N", "N", T(1), d_t, UView2<const T, ExecSpace>(mask_buf), T(0), dx);
  }
  // d|M| (N, H*W) = d_T^T x X, then through the abs: d_M~ += sign(M~) * d|M|.
  detail::gemm(space, "T", "N", T(1), d_t, x, T(0), mask_buf);
  const T* m = mask_raw.data();
  const T* dm = mask_buf.data();
  T* dm_raw = d_mask_raw.data();
  Kokkos::parallel_for(
      "v1sysid::factorized_readout::backward_mask", Kokkos::RangePolicy<ExecSpace>(space, 0, N * HW),
      KOKKOS_LAMBDA(const std::size_t i) { dm_raw[i] += sign_of(m[i]) * dm[i]; });
}

#define V1SYSID_READOUT_INSTANTIATE(T, E)                                                                          \
  template void factorized_readout_forward<T, E>(E const&, FactorizedReadoutShape const&,                          \
                                                 FactorizedReadoutOptions const&, UView3<const T, E>,               \
                                                 UView2<const T, E>, UView1<const T, E>, UView4<const T, E>,        \
                                                 UView2<T, E>, UView1<T, E>, UView1<T, E>);                         \
  template void factorized_readout_backward<T, E>(E const&, FactorizedReadoutShape const&,                         \
                                                  FactorizedReadoutOptions const&, UView3<const T, E>,              \
                                                  UView2<const T, E>, UView4<const T, E>, UView2<const T, E>,       \
                                                  UView1<T, E>, UView4<T, E>, UView3<T, E>, UView2<T, E>,           \
                                                  UView1<T, E>, UView1<T, E>);
V1SYSID_INSTANTIATE_FOR_EACH(V1SYSID_READOUT_INSTANTIATE)

}  // namespace v1sysid::layers
