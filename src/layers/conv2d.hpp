// 2-D convolution, stride 1, no bias, cross-correlation exactly as PyTorch's conv2d (and TF's conv2d after
// the [k,k,in,out] -> [out,in,k,k] transpose):
//   out[b,o,y,x] = sum_{i,ky,kx} weight[o,i,ky,kx] * in[b, i, y+ky-pad, x+kx-pad]   (zero outside the image)
// Padding SAME (odd K, pad K/2, H_out = H) or VALID (pad 0, H_out = H-K+1).
//
// Dense conv (conv2d_*): per image, im2col into the workspace col (C_in*K*K, H_out*W_out) and one GEMM
//   out_b (C_out, H_out*W_out) = weight (C_out, C_in*K*K) x col.
// Backward recomputes col per image (no cache of B im2col matrices):
//   d_weight += d_out_b x col^T;  d_col = weight^T x d_out_b;  d_in_b = col2im(d_col)
// col2im is a gather over the K*K taps that reach an input pixel, so it needs no atomics. For K == 1 the
// input is its own im2col matrix and no workspace is used.
//
// Winograd (winograd.hpp): 5x5 SAME convolutions with enough channels go through Winograd F(4x4, 5x5)
// instead, forward and backward (Conv2dShape::algorithm; automatic picks it, im2col forces the reference path).
//
// Depthwise conv (depthwise_conv2d_*, groups = C, weight [C, 1, K, K], Lurz's depth-separable layers): a
// direct kernel; it is K*K*H*W*C FLOPs per image, negligible next to the dense layers.
//
// Gradient policy: d_weight accumulates (+=), d_in is assigned (=) and optional (absent: default View).
#pragma once

#include "layers/common.hpp"

#include <cstddef>

namespace v1sysid::layers {

// How conv2d_forward / conv2d_backward compute a dense convolution.
enum class ConvAlgorithm {
  automatic,  // winograd where conv2d_resolve_algorithm picks it (5x5 SAME, enough channels), else im2col
  im2col,     // im2col + GEMM for every shape: the reference path
  winograd,   // Winograd F(4x4, 5x5) (winograd.hpp); K == 5 with SAME padding only
  winograd2,  // Winograd F(2x2, 5x5): fewer saved FLOPs, kept for comparison; K == 5 with SAME padding only
};

const char* to_string(ConvAlgorithm a);
// "automatic", "im2col", "winograd", "winograd2"; throws ConfigError for anything else.
ConvAlgorithm parse_conv_algorithm(const std::string& name);

struct Conv2dShape {
  int B = 0;      // batch
  int C_in = 0;   // input channels
  int C_out = 0;  // output channels
  int H = 0;      // input height
  int W = 0;      // input width
  int K = 1;      // kernel size (K x K)
  Padding padding = Padding::same;
  ConvAlgorithm algorithm = ConvAlgorithm::automatic;

  int pad() const { return padding == Padding::same ? K / 2 : 0; }
  int H_out() const { return H + 2 * pad() - K + 1; }
  int W_out() const { return W + 2 * pad() - K + 1; }
  int col_rows() const { return C_in * K * K; }  // rows of the im2col matrix = GEMM inner dimension
};

// "Conv2dShape{B=2, C_in=3, C_out=4, H=7, W=7, K=3, padding=same}" for error and test messages.
std::string describe(const Conv2dShape& s);
// Throws ShapeError for negative sizes, K < 1, even K with SAME padding, a VALID kernel larger than the image,
// or a Winograd algorithm asked for a shape it does not support.
void validate(const Conv2dShape& s);
// The algorithm s runs with: s.algorithm, with automatic resolved (never returns automatic).
ConvAlgorithm conv2d_resolve_algorithm(const Conv2dShape& s);
// Scalars of type T the workspace of conv2d_forward / conv2d_backward must hold: im2col: C_in*K*K*H_out*W_out
// (one image's im2col matrix), or 0 when K == 1; Winograd: winograd_workspace_size (winograd.hpp). It does not
// decrease with B, so a workspace sized for a batch capacity serves every smaller batch.
std::size_t conv2d_workspace_size(const Conv2dShape& s);

template <class T, class ExecSpace>
void conv2d_forward(ExecSpace const& space, Conv2dShape const& s,
                    UView4<const T, ExecSpace> weight,  // (C_out, C_in, K, K)
                    UView4<const T, ExecSpace> in,      // (B, C_in, H, W)
                    UView4<T, ExecSpace> out,           // (B, C_out, H_out, W_out), assigned
                    UView1<T, ExecSpace> workspace);    // (>= conv2d_workspace_size(s)), scratch

template <class T, class ExecSpace>
void conv2d_backward(ExecSpace const& space, Conv2dShape const& s,
                     UView4<const T, ExecSpace> weight,  // (C_out, C_in, K, K)
                     UView4<const T, ExecSpace> in,      // (B, C_in, H, W), the forward input
                     UView4<const T, ExecSpace> d_out,   // (B, C_out, H_out, W_out)
                     UView4<T, ExecSpace> d_in,          // (B, C_in, H, W), assigned; optional
                     UView4<T, ExecSpace> d_weight,      // (C_out, C_in, K, K), accumulated
                     UView1<T, ExecSpace> workspace);    // (>= conv2d_workspace_size(s)), scratch

struct DepthwiseConv2dShape {
  int B = 0;  // batch
  int C = 0;  // channels (= groups)
  int H = 0;
  int W = 0;
  int K = 1;
  Padding padding = Padding::same;

  int pad() const { return padding == Padding::same ? K / 2 : 0; }
  int H_out() const { return H + 2 * pad() - K + 1; }
  int W_out() const { return W + 2 * pad() - K + 1; }
};

std::string describe(const DepthwiseConv2dShape& s);
void validate(const DepthwiseConv2dShape& s);

// out[b,c,y,x] = sum_{ky,kx} weight[c,0,ky,kx] * in[b, c, y+ky-pad, x+kx-pad]. No workspace.
template <class T, class ExecSpace>
void depthwise_conv2d_forward(ExecSpace const& space, DepthwiseConv2dShape const& s,
                              UView4<const T, ExecSpace> weight,  // (C, 1, K, K)
                              UView4<const T, ExecSpace> in,      // (B, C, H, W)
                              UView4<T, ExecSpace> out);          // (B, C, H_out, W_out), assigned

template <class T, class ExecSpace>
void depthwise_conv2d_backward(ExecSpace const& space, DepthwiseConv2dShape const& s,
                               UView4<const T, ExecSpace> weight,  // (C, 1, K, K)
                               UView4<const T, ExecSpace> in,      // (B, C, H, W)
                               UView4<const T, ExecSpace> d_out,   // (B, C, H_out, W_out)
                               UView4<T, ExecSpace> d_in,          // (B, C, H, W), assigned; optional
                               UView4<T, ExecSpace> d_weight);     // (C, 1, K, K), accumulated

}  // namespace v1sysid::layers
