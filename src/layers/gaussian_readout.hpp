// Gaussian readout of Lurz et al. 2021 (neuralpredictors FullGaussian2d, reference-models §5.1):
//   position  p[b,n] = clamp(mu[n] + Sigma[n] z[b,n], -1, 1)   training, z[b,n] ~ N(0, I_2), one per (image, neuron)
//             p[b,n] = clamp(mu[n], -1, 1)                      evaluation (z absent)
//   sample    s[b,c,n] = bilinear(X[b,c], p[b,n])   align_corners semantics: x_pix = (p_x + 1)/2 (W - 1),
//                                                   y_pix = (p_y + 1)/2 (H - 1); zero outside the image
//   h[b,n]    = sum_c F[n,c] s[b,c,n] + bias[n]
// Coordinates: p = (x, y) with x along the width and y along the height, both in [-1, 1] (PyTorch grid_sample).
// Sigma[n] is the "square root" of the covariance (cov = Sigma Sigma^T): p_i = mu_i + sum_j Sigma[n,i,j] z_j.
// h is the pre-activation; the output nonlinearity (ELU + 1) and the loss are in poisson_loss.hpp.
//
// Noise: gaussian_readout_draw_noise fills z from a counter-based generator, z[b,n] a pure function of
// (seed, b, n) (SplitMix64 finaliser of the counter, Box-Muller), so a step is reproducible from its seed on
// any backend and thread count. The model draws z once per training step into a preallocated (B, N, 2)
// workspace and backward reads the same z.
//
// Backward (per neuron, looping over the batch; no atomics):
//   d_bias[n] += sum_b d_h;   d_F[n,c] += sum_b d_h s[b,c,n]
//   d_p[b,n]   = d_h sum_c F[n,c] ds[b,c,n]/dp      (the piecewise-linear derivative of the bilinear map)
//   d_mu[n,i] += sum_b m[b,n,i] d_p[b,n,i];  d_Sigma[n,i,j] += sum_b m[b,n,i] d_p[b,n,i] z[b,n,j]
// with m = 1 where mu + Sigma z lies inside [-1, 1] (inclusive, as torch.clamp) and 0 where it was clamped.
// d_X[b,c,y,x] = sum_n d_h[b,n] F[n,c] w(b,n,y,x) (the bilinear weights) is computed with one work item per
// (b, c) plane looping over the neurons in order, so every write goes to a plane owned by one thread: no
// atomics, and the result is bitwise reproducible on every backend (GPU included) and thread count.
// At integer pixel positions the bilinear map has a kink (floor convention as grid_sample: the derivative is
// the one of the cell to the right / below).
// Parameter grads accumulate (+=); d_in is assigned.
#pragma once

#include "layers/common.hpp"

#include <cstddef>
#include <cstdint>

namespace v1sysid::layers {

struct GaussianReadoutShape {
  int B = 0;  // batch
  int C = 0;  // core channels
  int H = 0;  // core output height
  int W = 0;  // core output width
  int N = 0;  // neurons
};

std::string describe(const GaussianReadoutShape& s);
void validate(const GaussianReadoutShape& s);

// z[b,n,:] ~ N(0, I_2), a pure function of (seed, b, n).
template <class T, class ExecSpace>
void gaussian_readout_draw_noise(ExecSpace const& space, GaussianReadoutShape const& s, std::uint64_t seed,
                                 UView3<T, ExecSpace> z);  // (B, N, 2), assigned

template <class T, class ExecSpace>
void gaussian_readout_forward(ExecSpace const& space, GaussianReadoutShape const& s,
                              UView2<const T, ExecSpace> mu,        // (N, 2), (x, y) in [-1, 1]
                              UView3<const T, ExecSpace> sigma,     // (N, 2, 2)
                              UView2<const T, ExecSpace> features,  // (N, C)
                              UView1<const T, ExecSpace> bias,      // (N)
                              UView4<const T, ExecSpace> in,        // (B, C, H, W)
                              UView3<const T, ExecSpace> z,         // (B, N, 2), training noise; absent: eval (p = mu)
                              UView3<T, ExecSpace> grid,            // (B, N, 2), assigned: the positions p (cache)
                              UView2<T, ExecSpace> out);            // (B, N), h, assigned

template <class T, class ExecSpace>
void gaussian_readout_backward(ExecSpace const& space, GaussianReadoutShape const& s,
                               UView2<const T, ExecSpace> mu,        // (N, 2)
                               UView3<const T, ExecSpace> sigma,     // (N, 2, 2)
                               UView2<const T, ExecSpace> features,  // (N, C)
                               UView4<const T, ExecSpace> in,        // (B, C, H, W)
                               UView3<const T, ExecSpace> z,         // (B, N, 2) as in forward; absent: eval
                               UView3<const T, ExecSpace> grid,      // (B, N, 2), from forward
                               UView2<const T, ExecSpace> d_out,     // (B, N), d_h
                               UView4<T, ExecSpace> d_in,            // (B, C, H, W), assigned; optional
                               UView2<T, ExecSpace> d_mu,            // (N, 2), accumulated; optional
                               UView3<T, ExecSpace> d_sigma,         // (N, 2, 2), accumulated; optional
                               UView2<T, ExecSpace> d_features,      // (N, C), accumulated
                               UView1<T, ExecSpace> d_bias);         // (N), accumulated

// Cortex grid predictor (neuralpredictors grid_mean_predictor type 'cortex', hidden_layers 0, no tanh):
//   mu[n] = A s[n] + a,  s = cell_motor_coordinates[:, :2] centred and divided by max |.| (done by the caller)
template <class T, class ExecSpace>
void grid_predictor_forward(ExecSpace const& space,
                            UView2<const T, ExecSpace> A,       // (2, 2)
                            UView1<const T, ExecSpace> a,       // (2)
                            UView2<const T, ExecSpace> coords,  // (N, 2), normalised s
                            UView2<T, ExecSpace> mu);           // (N, 2), assigned

// d_A += sum_n d_mu[n] s[n]^T, d_a += sum_n d_mu[n] (double reductions).
template <class T, class ExecSpace>
void grid_predictor_backward(ExecSpace const& space,
                             UView2<const T, ExecSpace> coords,  // (N, 2)
                             UView2<const T, ExecSpace> d_mu,    // (N, 2)
                             UView2<T, ExecSpace> d_A,           // (2, 2), accumulated
                             UView1<T, ExecSpace> d_a);          // (2), accumulated

}  // namespace v1sysid::layers
