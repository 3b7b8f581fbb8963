// Kernels of conv2d.hpp: im2col / col2im (gather) + KokkosBlas GEMM for the dense convolution, a direct
// kernel for the depthwise one. Row-wise kernels: each work item owns one output row of W_out (or W)
// contiguous elements, so the inner loop is a shifted, vectorisable copy or axpy with the zero-padding
// handled by clamping its bounds instead of branching per element.
#include "layers/conv2d.hpp"

#include "layers/winograd.hpp"

#include <algorithm>

namespace v1sysid::layers {

namespace {

template <class S>
std::string describe_common(const char* name, const S& s, const std::string& channels) {
  return std::string(name) + "{B=" + std::to_string(s.B) + ", " + channels + ", H=" + std::to_string(s.H) +
         ", W=" + std::to_string(s.W) + ", K=" + std::to_string(s.K) + ", padding=" + to_string(s.padding) + "}";
}

template <class S>
void validate_common(const S& s, const std::string& desc, const char* where) {
  const std::string fix = "use an odd kernel size with SAME padding and images at least K x K with VALID";
  detail::require(s.B >= 0 && s.H > 0 && s.W > 0 && s.K >= 1, "invalid sizes " + desc, where, fix);
  detail::require(s.padding == Padding::valid || s.K % 2 == 1, "SAME padding needs an odd kernel size, got " + desc,
                  where, fix);
  detail::require(s.H_out() >= 1 && s.W_out() >= 1, "the kernel is larger than the image, " + desc, where, fix);
}

// Largest x range [lo, hi) of output columns whose input column x + shift lies in [0, W_in).
KOKKOS_INLINE_FUNCTION void valid_range(int shift, int W_in, int W_out, int& lo, int& hi) {
  lo = shift < 0 ? -shift : 0;
  hi = W_in - shift;
  if (hi > W_out) hi = W_out;
  if (hi < lo) hi = lo;
}

// col (C_in*K*K, H_out*W_out) of image b: col[(i*K+ky)*K+kx][y*W_out+x] = in[b, i, y+ky-pad, x+kx-pad].
template <class T, class ExecSpace>
void im2col(ExecSpace const& space, const Conv2dShape& s, UView4<const T, ExecSpace> in, int b,
            UView2<T, ExecSpace> col) {
  const int K = s.K, pad = s.pad(), H = s.H, W = s.W, H_out = s.H_out(), W_out = s.W_out();
  const int rows = s.C_in * K * K * H_out;  // one work item per (i, ky, kx, y): a row of W_out elements
  T* col_data = col.data();
  Kokkos::parallel_for(
      "v1sysid::conv2d::im2col", Kokkos::RangePolicy<ExecSpace>(space, 0, rows), KOKKOS_LAMBDA(const int r) {
        const int y = r % H_out;
        const int tap = r / H_out;  // (i*K + ky)*K + kx
        const int kx = tap % K;
        const int ky = (tap / K) % K;
        const int i = tap / (K * K);
        T* dst = col_data + static_cast<std::size_t>(r) * W_out;
        const int iy = y + ky - pad;
        if (iy < 0 || iy >= H) {
          for (int x = 0; x < W_out; ++x) dst[x] = T(0);
          return;
        }
        const T* src = &in(b, i, iy, 0);
        const int shift = kx - pad;  // dst[x] = in[b, i, iy, x + shift]
        int lo, hi;
        valid_range(shift, W, W_out, lo, hi);
        for (int x = 0; x < lo; ++x) dst[x] = T(0);
        for (int x = lo; x < hi; ++x) dst[x] = src[x + shift];
        for (int x = hi; x < W_out; ++x) dst[x] = T(0);
      });
}

// d_in[b, i, iy, ix] = sum_{ky,kx} d_col[(i*K+ky)*K+kx][(iy+pad-ky)*W_out + (ix+pad-kx)] over the taps that
// land inside the output: the adjoint of im2col written as a gather, one input row per work item.
template <class T, class ExecSpace>
void col2im(ExecSpace const& space, const Conv2dShape& s, UView2<const T, ExecSpace> d_col, int b,
            UView4<T, ExecSpace> d_in) {
  const int K = s.K, pad = s.pad(), H = s.H, W = s.W, H_out = s.H_out(), W_out = s.W_out();
  const std::size_t HW_out = static_cast<std::size_t>(H_out) * W_out;
  const T* dcol_data = d_col.data();
  Kokkos::parallel_for(
      "v1sysid::conv2d::col2im", Kokkos::RangePolicy<ExecSpace>(space, 0, s.C_in * H), KOKKOS_LAMBDA(const int r) {
        const int iy = r % H;
        const int i = r / H;
        T* dst = &d_in(b, i, iy, 0);
        for (int x = 0; x < W; ++x) dst[x] = T(0);
        for (int ky = 0; ky < K; ++ky) {
          const int oy = iy + pad - ky;
          if (oy < 0 || oy >= H_out) continue;
          for (int kx = 0; kx < K; ++kx) {
            const T* src = dcol_data + static_cast<std::size_t>((i * K + ky) * K + kx) * HW_out +
                           static_cast<std::size_t>(oy) * W_out;
            const int shift = pad - kx;  // dst[ix] += d_col[tap][oy*W_out + ix + shift]
            int lo, hi;
            valid_range(shift, W_out, W, lo, hi);
            for (int ix = lo; ix < hi; ++ix) dst[ix] += src[ix + shift];
          }
        }
      });
}

// s with `automatic` replaced by the algorithm it resolves to.
Conv2dShape resolved(const Conv2dShape& s) {
  Conv2dShape r = s;
  r.algorithm = conv2d_resolve_algorithm(s);
  return r;
}

}  // namespace

const char* to_string(ConvAlgorithm a) {
  switch (a) {
    case ConvAlgorithm::im2col: return "im2col";
    case ConvAlgorithm::winograd: return "winograd";
    case ConvAlgorithm::winograd2: return "winograd2";
    case ConvAlgorithm::automatic: break;
  }
  return "automatic";
}

ConvAlgorithm parse_conv_algorithm(const std::string& name) {
  for (ConvAlgorithm a : {ConvAlgorithm::automatic, ConvAlgorithm::im2col, ConvAlgorithm::winograd,
                          ConvAlgorithm::winograd2})
    if (name == to_string(a)) return a;
  throw ConfigError("unknown convolution algorithm \"" + name + "\"", "conv algorithm",
                    "use automatic, im2col, winograd or winograd2");
}

std::string describe(const Conv2dShape& s) {
  std::string d =
      describe_common("Conv2dShape", s, "C_in=" + std::to_string(s.C_in) + ", C_out=" + std::to_string(s.C_out));
  if (s.algorithm != ConvAlgorithm::automatic) d.insert(d.size() - 1, std::string(", ") + to_string(s.algorithm));
  return d;
}

void validate(const Conv2dShape& s) {
  const std::string d = describe(s);
  validate_common(s, d, "conv2d");
  detail::require(s.C_in >= 1 && s.C_out >= 1, "invalid channel counts " + d, "conv2d",
                  "a convolution needs at least one input and one output channel");
  const bool winograd = s.algorithm == ConvAlgorithm::winograd || s.algorithm == ConvAlgorithm::winograd2;
  detail::require(!winograd || winograd_supported(s), "Winograd needs a 5x5 kernel with SAME padding, got " + d,
                  "conv2d", "use ConvAlgorithm::automatic or im2col for this layer");
}

ConvAlgorithm conv2d_resolve_algorithm(const Conv2dShape& s) {
  if (s.algorithm != ConvAlgorithm::automatic) return s.algorithm;
  // Below this many channels on either side both are cheap and Winograd's gain is lost in the noise
  // (measured from 8 channels up, docs/performance.md).
  constexpr int kMinChannels = 8;
  return winograd_supported(s) && std::min(s.C_in, s.C_out) >= kMinChannels ? ConvAlgorithm::winograd
                                                                             : ConvAlgorithm::im2col;
}

std::size_t conv2d_workspace_size(const Conv2dShape& s) {
  const Conv2dShape r = resolved(s);
  if (r.algorithm != ConvAlgorithm::im2col) return winograd_workspace_size(r);
  if (s.K == 1) return 0;
  return static_cast<std::size_t>(s.col_rows()) * s.H_out() * s.W_out();
}

template <class T, class ExecSpace>
void conv2d_forward(ExecSpace const& space, Conv2dShape const& s, UView4<const T, ExecSpace> weight,
                    UView4<const T, ExecSpace> in, UView4<T, ExecSpace> out, UView1<T, ExecSpace> workspace) {
  validate(s);
  const std::size_t B = s.B, Ci = s.C_in, Co = s.C_out, K = s.K;
  detail::require_extents(weight, {Co, Ci, K, K}, "conv2d_forward", "weight");
  detail::require_extents(in, {B, Ci, std::size_t(s.H), std::size_t(s.W)}, "conv2d_forward", "in");
  detail::require_extents(out, {B, Co, std::size_t(s.H_out()), std::size_t(s.W_out())}, "conv2d_forward", "out");
  detail::require_workspace(workspace, conv2d_workspace_size(s), "conv2d_forward", "conv2d_workspace_size");
  if (const Conv2dShape r = resolved(s); r.algorithm != ConvAlgorithm::im2col) {
    winograd_conv2d_forward<T>(space, r, weight, in, out, workspace);
    return;
  }

  const std::size_t HW = std::size_t(s.H) * s.W, HW_out = std::size_t(s.H_out()) * s.W_out();
  const std::size_t rows = s.col_rows();
  UView2<const T, ExecSpace> w2(weight.data(), Co, rows);  // (C_out, C_in*K*K)
  UView2<T, ExecSpace> col(workspace.data(), rows, HW_out);
  for (int b = 0; b < s.B; ++b) {
    UView2<T, ExecSpace> out_b(detail::batch_item(out, b), Co, HW_out);  // (C_out, H_out*W_out)
    if (s.K == 1) {
      UView2<const T, ExecSpace> in_b(detail::batch_item(in, b), Ci, HW);  // the input is its own im2col
      detail::gemm(space, "N", "N", T(1), w2, in_b, T(0), out_b);
    } else {
      im2col<T>(space, s, in, b, col);
      detail::gemm(space, "N", "N", T(1), w2, UView2<const T, ExecSpace>(col), T(0), out_b);
    }
  }
}

template <class T, class ExecSpace>
void conv2d_backward(ExecSpace const& space, Conv2dShape const& s, UView4<const T, ExecSpace> weight,
                     UView4<const T, ExecSpace> in, UView4<const T, ExecSpace> d_out, UView4<T, ExecSpace> d_in,
                     UView4<T, ExecSpace> d_weight, UView1<T, ExecSpace> workspace) {
  validate(s);
  const std::size_t B = s.B, Ci = s.C_in, Co = s.C_out, K = s.K, H = s.H, W = s.W;
  const std::size_t Ho = s.H_out(), Wo = s.W_out();
  detail::require_extents(weight, {Co, Ci, K, K}, "conv2d_backward", "weight");
  detail::require_extents(in, {B, Ci, H, W}, "conv2d_backward", "in");
  detail::require_extents(d_out, {B, Co, Ho, Wo}, "conv2d_backward", "d_out");
  if (present(d_in)) detail::require_extents(d_in, {B, Ci, H, W}, "conv2d_backward", "d_in");
  detail::require_extents(d_weight, {Co, Ci, K, K}, "conv2d_backward", "d_weight");
  detail::require_workspace(workspace, conv2d_workspace_size(s), "conv2d_backward", "conv2d_workspace_size");
  if (const Conv2dShape r = resolved(s); r.algorithm != ConvAlgorithm::im2col) {
    winograd_conv2d_backward<T>(space, r, weight, in, d_out, d_in, d_weight, workspace);
    return;
  }

  const std::size_t HW = H * W, HW_out = Ho * Wo, rows = s.col_rows();
  UView2<const T, ExecSpace> w2(weight.data(), Co, rows);  // (C_out, C_in*K*K)
  UView2<T, ExecSpace> dw2(d_weight.data(), Co, rows);     // (C_out, C_in*K*K)
  UView2<T, ExecSpace> col(workspace.data(), rows, HW_out);
  for (int b = 0; b < s.B; ++b) {
    UView2<const T, ExecSpace> dout_b(detail::batch_item(d_out, b), Co, HW_out);  // (C_out, H_out*W_out)
    if (s.K == 1) {
      UView2<const T, ExecSpace> in_b(detail::batch_item(in, b), Ci, HW);
      detail::gemm(space, "N", "T", T(1), dout_b, in_b, T(1), dw2);
      if (present(d_in)) {
        UView2<T, ExecSpace> din_b(detail::batch_item(d_in, b), Ci, HW);  // col2im of a 1x1 kernel is the identity
        detail::gemm(space, "T", "N", T(1), w2, dout_b, T(0), din_b);
      }
    } else {
      im2col<T>(space, s, in, b, col);
      detail::gemm(space, "N", "T", T(1), dout_b, UView2<const T, ExecSpace>(col), T(1), dw2);
      if (present(d_in)) {
        // col is no longer needed: reuse it for d_col (C_in*K*K, H_out*W_out).
        detail::gemm(space, "T", "N", T(1), w2, dout_b, T(0), col);
        col2im<T>(space, s, UView2<const T, ExecSpace>(col), b, d_in);
      }
    }
  }
}

// ---- depthwise ------------------------------------------------------------------------------------------

std::string describe(const DepthwiseConv2dShape& s) {
  return describe_common("DepthwiseConv2dShape", s, "C=" + std::to_string(s.C));
}

void validate(const DepthwiseConv2dShape& s) {
  const std::string d = describe(s);
  validate_common(s, d, "depthwise_conv2d");
  detail::require(s.C >= 1, "invalid channel count " + d, "depthwise_conv2d", "use at least one channel");
}

template <class T, class ExecSpace>
void depthwise_conv2d_forward(ExecSpace const& space, DepthwiseConv2dShape const& s,
                              UView4<const T, ExecSpace> weight, UView4<const T, ExecSpace> in,
                              UView4<T, ExecSpace> out) {
  validate(s);
  const std::size_t B = s.B, C = s.C, K = s.K;
  detail::require_extents(weight, {C, 1, K, K}, "depthwise_conv2d_forward", "weight");
  detail::require_extents(in, {B, C, std::size_t(s.H), std::size_t(s.W)}, "depthwise_conv2d_forward", "in");
  detail::require_extents(out, {B, C, std::size_t(s.H_out()), std::size_t(s.W_out())}, "depthwise_conv2d_forward",
                          "out");
  const int Kk = s.K, pad = s.pad(), H = s.H, W = s.W, H_out = s.H_out(), W_out = s.W_out(), Cc = s.C;
  Kokkos::parallel_for(
      "v1sysid::depthwise_conv2d::forward", Kokkos::RangePolicy<ExecSpace>(space, 0, s.B * Cc * H_out),
      KOKKOS_LAMBDA(const int r) {
        const int y = r % H_out;
        const int c = (r / H_out) % Cc;
        const int b = r / (H_out * Cc);
        T* dst = &out(b, c, y, 0);
        for (int x = 0; x < W_out; ++x) dst[x] = T(0);
        for (int ky = 0; ky < Kk; ++ky) {
          const int iy = y + ky - pad;
          if (iy < 0 || iy >= H) continue;
          for (int kx = 0; kx < Kk; ++kx) {
            const T w = weight(c, 0, ky, kx);
            const T* src = &in(b, c, iy, 0);
            const int shift = kx - pad;
            int lo, hi;
            valid_range(shift, W, W_out, lo, hi);
            for (int x = lo; x < hi; ++x) dst[x] += w * src[x + shift];
          }
        }
      });
}

template <class T, class ExecSpace>
void depthwise_conv2d_backward(ExecSpace const& space, DepthwiseConv2dShape const& s,
                               UView4<const T, ExecSpace> weight, UView4<const T, ExecSpace> in,
                               UView4<const T, ExecSpace> d_out, UView4<T, ExecSpace> d_in,
                               UView4<T, ExecSpace> d_weight) {
  validate(s);
  const std::size_t B = s.B, C = s.C, K = s.K, H = s.H, W = s.W;
  detail::require_extents(weight, {C, 1, K, K}, "depthwise_conv2d_backward", "weight");
  detail::require_extents(in, {B, C, H, W}, "depthwise_conv2d_backward", "in");
  detail::require_extents(d_out, {B, C, std::size_t(s.H_out()), std::size_t(s.W_out())},
                          "depthwise_conv2d_backward", "d_out");
  if (present(d_in)) detail::require_extents(d_in, {B, C, H, W}, "depthwise_conv2d_backward", "d_in");
  detail::require_extents(d_weight, {C, 1, K, K}, "depthwise_conv2d_backward", "d_weight");
  const int Kk = s.K, pad = s.pad(), Hh = s.H, Ww = s.W, H_out = s.H_out(), W_out = s.W_out(), Cc = s.C, Bb = s.B;

  // d_weight[c,0,ky,kx] += sum_{b,y,x} d_out[b,c,y,x] * in[b,c,y+ky-pad,x+kx-pad]: one work item per tap,
  // so no atomics; each row dot product is summed in T, the rows in double.
  Kokkos::parallel_for(
      "v1sysid::depthwise_conv2d::backward_weight", Kokkos::RangePolicy<ExecSpace>(space, 0, Cc * Kk * Kk),
      KOKKOS_LAMBDA(const int r) {
        const int kx = r % Kk;
        const int ky = (r / Kk) % Kk;
        const int c = r / (Kk * Kk);
        const int shift = kx - pad;
        int lo, hi;
        valid_range(shift, Ww, W_out, lo, hi);
        double acc = 0;
        for (int b = 0; b < Bb; ++b)
          for (int y = 0; y < H_out; ++y) {
            const int iy = y + ky - pad;
            if (iy < 0 || iy >= Hh) continue;
            const T* g = &d_out(b, c, y, 0);
            const T* src = &in(b, c, iy, 0);
            T row = T(0);
            for (int x = lo; x < hi; ++x) row += g[x] * src[x + shift];
            acc += row;
          }
        d_weight(c, 0, ky, kx) += T(acc);
      });

  if (!present(d_in)) return;
  // d_in[b,c,iy,ix] = sum_{ky,kx} weight[c,0,ky,kx] * d_out[b,c,iy+pad-ky,ix+pad-kx] (gather, no atomics).
  Kokkos::parallel_for(
      "v1sysid::depthwise_conv2d::backward_input", Kokkos::RangePolicy<ExecSpace>(space, 0, Bb * Cc * Hh),
      KOKKOS_LAMBDA(const int r) {
        const int iy = r % Hh;
        const int c = (r / Hh) % Cc;
        const int b = r / (Hh * Cc);
        T* dst = &d_in(b, c, iy, 0);
        for (int x = 0; x < Ww; ++x) dst[x] = T(0);
        for (int ky = 0; ky < Kk; ++ky) {
          const int oy = iy + pad - ky;
          if (oy < 0 || oy >= H_out) continue;
          for (int kx = 0; kx < Kk; ++kx) {
            const T w = weight(c, 0, ky, kx);
            const T* src = &d_out(b, c, oy, 0);
            const int shift = pad - kx;
            int lo, hi;
            valid_range(shift, W_out, Ww, lo, hi);
            for (int ix = lo; ix < hi; ++ix) dst[ix] += w * src[ix + shift];
          }
        }
      });
}

#define V1SYSID_CONV2D_INSTANTIATE(T, E)                                                                         \
  template void conv2d_forward<T, E>(E const&, Conv2dShape const&, UView4<const T, E>, UView4<const T, E>,       \
                                     UView4<T, E>, UView1<T, E>);                                                \
  template void conv2d_backward<T, E>(E const&, Conv2dShape const&, UView4<const T, E>, UView4<const T, E>,      \
                                      UView4<const T, E>, UView4<T, E>, UView4<T, E>, UView1<T, E>);             \
  template void depthwise_conv2d_forward<T, E>(E const&, DepthwiseConv2dShape const&, UView4<const T, E>,        \
                                               UView4<const T, E>, UView4<T, E>);                                \
  template void depthwise_conv2d_backward<T, E>(E const&, DepthwiseConv2dShape const&, UView4<const T, E>,       \
                                                UView4<const T, E>, UView4<const T, E>, UView4<T, E>, UView4<T, E>);
V1SYSID_INSTANTIATE_FOR_EACH(V1SYSID_CONV2D_INSTANTIATE)

}  // namespace v1sysid::layers
