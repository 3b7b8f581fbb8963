// Factorised ("spatial x feature") readout of Klindt et al. 2017 / Ecker et al. 2019 (reference-models §2):
//   h[b,n] = sum_c F[n,c] * sum_{y,x} |M~[n,y,x]| * X[b,c,y,x] + bias[n]
// with F = F~ (signed) or |F~| (positive_features). h is the pre-activation; the output nonlinearity
// (softplus, or ELU + 1) and the loss are in poisson_loss.hpp.
//
// Computed as GEMMs, not per-neuron loops:
//   T (B*C, N) = X (B*C, H*W) x |M|^T (H*W, N)          one GEMM; |M| materialised in the workspace
//   h[b,n]     = bias[n] + sum_c F[n,c] * T[b*C+c, n]   (F^T materialised in the workspace)
// T is the forward->backward cache. Backward, with d_T[b*C+c, n] = d_h[b,n] * F[n,c]:
//   d_bias += sum_b d_h;  d_F[n,c] += s_F * sum_b d_h[b,n] T[b*C+c, n]
//   d_X (B*C, H*W) = d_T x |M|   (GEMM, assigned; optional)
//   d|M| (N, H*W)  = d_T^T x X   (GEMM);  d_M~ += sign(M~) * d|M|
// s_F = sign(F~) when positive_features, else 1. sign(0) = 0: a parameter exactly at the kink of |.| gets
// no gradient (TF's and PyTorch's abs gradient use the same convention).
// Parameter grads accumulate (+=); d_in is assigned. Backward overwrites the cache T with d_T.
#pragma once

#include "layers/common.hpp"

#include <cstddef>

namespace v1sysid::layers {

struct FactorizedReadoutShape {
  int B = 0;  // batch
  int C = 0;  // core channels
  int H = 0;  // core output height
  int W = 0;  // core output width
  int N = 0;  // neurons
};

struct FactorizedReadoutOptions {
  bool positive_features = false;  // F = |F~| (Table 1 control; Klindt's readout) instead of signed F~
};

std::string describe(const FactorizedReadoutShape& s, const FactorizedReadoutOptions& o);
void validate(const FactorizedReadoutShape& s);
// Scalars of the scratch workspace: N*H*W (|M|, then d|M|) + C*N (F^T, then the d_F partial sums).
std::size_t factorized_readout_workspace_size(const FactorizedReadoutShape& s);
// Scalars of the forward->backward cache T: B*C*N.
std::size_t factorized_readout_cache_size(const FactorizedReadoutShape& s);

template <class T, class ExecSpace>
void factorized_readout_forward(ExecSpace const& space, FactorizedReadoutShape const& s,
                                FactorizedReadoutOptions const& o,
                                UView3<const T, ExecSpace> mask_raw,  // (N, H, W), M~
                                UView2<const T, ExecSpace> features,  // (N, C), F~
                                UView1<const T, ExecSpace> bias,      // (N)
                                UView4<const T, ExecSpace> in,        // (B, C, H, W), X
                                UView2<T, ExecSpace> out,             // (B, N), h, assigned
                                UView1<T, ExecSpace> cache,           // (>= factorized_readout_cache_size(s)), T
                                UView1<T, ExecSpace> workspace);      // (>= factorized_readout_workspace_size(s))

template <class T, class ExecSpace>
void factorized_readout_backward(ExecSpace const& space, FactorizedReadoutShape const& s,
                                 FactorizedReadoutOptions const& o,
                                 UView3<const T, ExecSpace> mask_raw,  // (N, H, W)
                                 UView2<const T, ExecSpace> features,  // (N, C)
                                 UView4<const T, ExecSpace> in,        // (B, C, H, W)
                                 UView2<const T, ExecSpace> d_out,     // (B, N), d_h
                                 UView1<T, ExecSpace> cache,           // T from forward; overwritten with d_T
                                 UView4<T, ExecSpace> d_in,            // (B, C, H, W), assigned; optional
                                 UView3<T, ExecSpace> d_mask_raw,      // (N, H, W), accumulated
                                 UView2<T, ExecSpace> d_features,      // (N, C), accumulated
                                 UView1<T, ExecSpace> d_bias,          // (N), accumulated
                                 UView1<T, ExecSpace> workspace);      // (>= factorized_readout_workspace_size(s))

}  // namespace v1sysid::layers
