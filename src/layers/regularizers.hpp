// Regularisation penalties of the reference models, each a pair
//   <name>_value(space, tensors..., weights)               -> penalty (double)
//   <name>_grad (space, tensors..., weights, d_tensors...) -> penalty (double), and d_tensors += d penalty
// The penalty is accumulated in double whatever the storage type T; gradients accumulate (+=) into the
// arena's gradient views, which are zeroed once per step (ParamArena::zero_grad). The _grad functions
// also return the value, so a training step needs only them. A weight of exactly 0 returns 0 at once
// without launching anything (e.g. group sparsity on layer 1 with rel_sparse = [0, 1, 1]). Nothing is
// allocated: every intermediate is computed on the fly inside the kernels.
//
// Convolution weights are in PyTorch order W[o, c, y, x] = (C_out, C_in, K_h, K_w). The reference (TF) stores
// [K, K, C_in, C_out]; the formulas are the same per output filter o.
//
// Ecker et al. 2019 core (cnn-sys-ident architectures/cores.py):
//   conv_smoothness:     w * sum_o [ sum_{c,y,x} (L*W)[o,c,y,x]^2 / (1e-8 + sum_{c,y,x} W[o,c,y,x]^2) ]
//                        L = [[.25,.5,.25],[.5,-3,.5],[.25,.5,.25]] applied to every K x K slice W[o,c] with
//                        zero SAME padding (L is symmetric, so correlation and convolution agree).
//   conv_group_sparsity: w * sum_o [ sum_c sqrt(sum_{y,x} W[o,c]^2) / sqrt(1e-8 + sum_{c,y,x} W[o]^2) ]
//                        The gradient of sqrt at a group that is exactly zero is undefined (TF gives NaN);
//                        we define the gradient of an all-zero group W[o,c] as 0 (a valid subgradient: the
//                        penalty is minimal there).
// Ecker et al. 2019 readout (architectures/readouts.py), on the raw mask M~ (N, H, W) and raw features
// F~ (N, C); the model uses |M~| and, with positive features, |F~|, so |M| = |M~| and |F| = |F~| either way:
//   readout_joint_l1:              w * sum_n (sum_{y,x} |M~_n|) (sum_c |F~_n|)      (the paper's default)
//   readout_separate_l1:           m * sum |M~| + f * sum |F~|                      (Table 1 control)
//   readout_l1_mask_l2_features:   m * sum |M~| + lambda * sum F~^2                 (Table 1 "L2 features")
//   The gradient of |x| uses sign(0) = 0.
// Lurz et al. 2021 (neuralpredictors LaplaceL2norm with avg=False, and gamma_readout):
//   laplace_l2: w * sum_{o,c,y,x} (L*W)^2 / sum_{o,c,y,x} W^2, with L = [[0,-1,0],[-1,4,-1],[0,-1,0]], zero
//               padding 1. One ratio over the whole tensor (not per filter), no epsilon in the reference: for
//               an all-zero W (0/0 there) we return 0 and add no gradient.
//   gamma_readout * sum |features|: l1_value / l1_grad on the feature slot (arena.param_flat(slot)).
// Element-wise primitives on a rank-1 View: l1 = w * sum |x|, l2 = w * sum x^2.
// Instantiated (regularizers.cpp) for T in {float, double} on ExecSpace and, where different, HostExecSpace;
// views are those of the space's memory space, e.g. ParamArena slot views (arena.param<4>(slot)).
#pragma once

#include "core/types.hpp"

namespace v1sysid::layers {

// ---- convolution weights ---------------------------------------------------------------------------
template <class T, class ExecSpace>
double conv_smoothness_value(ExecSpace const& space,
                             View4<T, typename ExecSpace::memory_space> const& w,  // (C_out, C_in, K, K)
                             double weight);
template <class T, class ExecSpace>
double conv_smoothness_grad(ExecSpace const& space,
                            View4<T, typename ExecSpace::memory_space> const& w,    // (C_out, C_in, K, K)
                            double weight,
                            View4<T, typename ExecSpace::memory_space> const& d_w); // (C_out, C_in, K, K) +=

template <class T, class ExecSpace>
double conv_group_sparsity_value(ExecSpace const& space,
                                 View4<T, typename ExecSpace::memory_space> const& w,  // (C_out, C_in, K, K)
                                 double weight);
template <class T, class ExecSpace>
double conv_group_sparsity_grad(ExecSpace const& space,
                                View4<T, typename ExecSpace::memory_space> const& w,    // (C_out, C_in, K, K)
                                double weight,
                                View4<T, typename ExecSpace::memory_space> const& d_w); // (C_out, C_in, K, K) +=

template <class T, class ExecSpace>
double laplace_l2_value(ExecSpace const& space,
                        View4<T, typename ExecSpace::memory_space> const& w,  // (C_out, C_in, K, K)
                        double weight);
template <class T, class ExecSpace>
double laplace_l2_grad(ExecSpace const& space,
                       View4<T, typename ExecSpace::memory_space> const& w,    // (C_out, C_in, K, K)
                       double weight,
                       View4<T, typename ExecSpace::memory_space> const& d_w); // (C_out, C_in, K, K) +=

// ---- factorised readout ----------------------------------------------------------------------------
template <class T, class ExecSpace>
double readout_joint_l1_value(ExecSpace const& space,
                              View3<T, typename ExecSpace::memory_space> const& mask,      // (N, H, W) raw M~
                              View2<T, typename ExecSpace::memory_space> const& features,  // (N, C) raw F~
                              double weight);
template <class T, class ExecSpace>
double readout_joint_l1_grad(ExecSpace const& space,
                             View3<T, typename ExecSpace::memory_space> const& mask,        // (N, H, W)
                             View2<T, typename ExecSpace::memory_space> const& features,    // (N, C)
                             double weight,
                             View3<T, typename ExecSpace::memory_space> const& d_mask,      // (N, H, W) +=
                             View2<T, typename ExecSpace::memory_space> const& d_features); // (N, C) +=

template <class T, class ExecSpace>
double readout_separate_l1_value(ExecSpace const& space,
                                 View3<T, typename ExecSpace::memory_space> const& mask,      // (N, H, W)
                                 View2<T, typename ExecSpace::memory_space> const& features,  // (N, C)
                                 double mask_weight, double feature_weight);
template <class T, class ExecSpace>
double readout_separate_l1_grad(ExecSpace const& space,
                                View3<T, typename ExecSpace::memory_space> const& mask,        // (N, H, W)
                                View2<T, typename ExecSpace::memory_space> const& features,    // (N, C)
                                double mask_weight, double feature_weight,
                                View3<T, typename ExecSpace::memory_space> const& d_mask,      // (N, H, W) +=
                                View2<T, typename ExecSpace::memory_space> const& d_features); // (N, C) +=

template <class T, class ExecSpace>
double readout_l1_mask_l2_features_value(ExecSpace const& space,
                                         View3<T, typename ExecSpace::memory_space> const& mask,      // (N,H,W)
                                         View2<T, typename ExecSpace::memory_space> const& features,  // (N, C)
                                         double mask_weight, double feature_weight);
template <class T, class ExecSpace>
double readout_l1_mask_l2_features_grad(ExecSpace const& space,
                                        View3<T, typename ExecSpace::memory_space> const& mask,       // (N,H,W)
                                        View2<T, typename ExecSpace::memory_space> const& features,   // (N, C)
                                        double mask_weight, double feature_weight,
                                        View3<T, typename ExecSpace::memory_space> const& d_mask,     // (N,H,W) +=
                                        View2<T, typename ExecSpace::memory_space> const& d_features); // (N, C) +=

// ---- element-wise primitives -------------------------------------------------------------------------
template <class T, class ExecSpace>
double l1_value(ExecSpace const& space, View1<T, typename ExecSpace::memory_space> const& x,  // (n)
                double weight);
template <class T, class ExecSpace>
double l1_grad(ExecSpace const& space, View1<T, typename ExecSpace::memory_space> const& x,  // (n)
               double weight, View1<T, typename ExecSpace::memory_space> const& d_x);        // (n) +=
template <class T, class ExecSpace>
double l2_value(ExecSpace const& space, View1<T, typename ExecSpace::memory_space> const& x,  // (n)
                double weight);
template <class T, class ExecSpace>
double l2_grad(ExecSpace const& space, View1<T, typename ExecSpace::memory_space> const& x,  // (n)
               double weight, View1<T, typename ExecSpace::memory_space> const& d_x);        // (n) +=

}  // namespace v1sysid::layers
