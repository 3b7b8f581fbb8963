// Winograd fast convolution F(m x m, 5 x 5) for the dense 5x5 SAME convolutions of conv2d.hpp (Lavin & Gray
// 2016). The output is cut into m x m tiles; tile p of channel o is
//   Y_p = A^T [ sum_i (G w[o,i] G^T) (.) (B^T d_{i,p} B) ] A        ((.): elementwise, alpha = m + 4)
// where d_{i,p} is the alpha x alpha input patch under the tile (zero outside the image). With the transformed
// filter U[t] (C_out, C_in) and transformed input V[t] (C_in, tiles) the sum over i is alpha^2 independent
// GEMMs M[t] = U[t] V[t], t = 0 .. alpha^2-1, which is where the FLOPs are: alpha^2 multiplies per m^2
// outputs instead of 25.
//
// Backward, per chunk of images:
//   d_weight: the adjoint of the forward: dM[t] = A dY_p A^T per output tile, dU[t] += dM[t] V[t]^T (GEMM),
//             and once per call d_weight += G^T dU G.
//   d_in:     a SAME 5x5 correlation of d_out with the 180-degree rotated, in/out transposed filter
//             w'[i,o,ky,kx] = w[o,i,4-ky,4-kx], run through the forward's chunk code (its U transformed once).
//
// Tile sizes: m = 4 (alpha 8, 64 GEMMs, 6.25x fewer multiplies than im2col; interpolation points
// 0, +-1, +-2, +-1/2, inf) is the default; m = 2 (alpha 6, 36 GEMMs, 2.8x fewer; points 0, +-1, +-2, inf) is
// kept as ConvAlgorithm::winograd2 for comparison. Float error against the exact convolution is a few 1e-6 of
// the output's magnitude for both (im2col: ~2e-7), see docs/performance.md.
//
// Images go through in chunks of winograd_chunk_images(s) so that the workspace stays bounded; nothing is
// allocated here. The functions below are called by conv2d_forward / conv2d_backward after their shape checks.
#pragma once

#include "layers/conv2d.hpp"

#include <cstddef>

namespace v1sysid::layers {

// Whether s can run through Winograd at all: K == 5, SAME padding.
bool winograd_supported(const Conv2dShape& s);
// Output tile size m of s.algorithm (winograd: 4, winograd2: 2).
int winograd_tile(const Conv2dShape& s);
// Images per chunk: enough m x m tiles for efficient GEMMs, at most B (0 for B == 0).
int winograd_chunk_images(const Conv2dShape& s);
// Scalars of workspace winograd_conv2d_forward and winograd_conv2d_backward need (the backward's, the larger):
// 2 alpha^2 C_out C_in (transformed filters) + 2 alpha^2 max(C_in, C_out) * tiles of one chunk.
std::size_t winograd_workspace_size(const Conv2dShape& s);

template <class T, class ExecSpace>
void winograd_conv2d_forward(ExecSpace const& space, Conv2dShape const& s,
                             UView4<const T, ExecSpace> weight,  // (C_out, C_in, 5, 5)
                             UView4<const T, ExecSpace> in,      // (B, C_in, H, W)
                             UView4<T, ExecSpace> out,           // (B, C_out, H, W), assigned
                             UView1<T, ExecSpace> workspace);    // (>= winograd_workspace_size(s))

template <class T, class ExecSpace>
void winograd_conv2d_backward(ExecSpace const& space, Conv2dShape const& s,
                              UView4<const T, ExecSpace> weight,  // (C_out, C_in, 5, 5)
                              UView4<const T, ExecSpace> in,      // (B, C_in, H, W)
                              UView4<const T, ExecSpace> d_out,   // (B, C_out, H, W)
                              UView4<T, ExecSpace> d_in,          // (B, C_in, H, W), assigned; optional
                              UView4<T, ExecSpace> d_weight,      // (C_out, C_in, 5, 5), accumulated
                              UView1<T, ExecSpace> workspace);    // (>= winograd_workspace_size(s))

}  // namespace v1sysid::layers
