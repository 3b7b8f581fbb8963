// Batch normalisation over (B, H, W) per channel, or over (B, R, H, W) per feature when statistics are
// shared across rotations, fused with the layer's activation:
//   out = act(gamma_g * (x - mean_g) * rstd_g + beta_g),   rstd_g = 1 / sqrt(var_g + eps)
// Channels are rotation-major, c = r*F + f. Group g of channel c is f = c % F when shared_rotations (then
// mean/var/beta/gamma have F entries), else c itself (R*F entries). R = 1 is plain batch norm.
//
// Training (batchnorm_forward_train): mean/var are the batch statistics (biased variance, accumulated in
// double, two passes per group over data that stays in cache), saved to the mean/rstd caches for backward,
// and the running statistics are updated in TF's convention
//   running_mean = momentum * running_mean + (1 - momentum) * batch_mean
//   running_var  = momentum * running_var  + (1 - momentum) * batch_var * n / (n - 1)
// with n = elements per group. The n/(n-1) (Bessel) factor is what TF's fused batch norm (Ecker's
// tf.contrib.layers.batch_norm(fused=True)) and PyTorch's BatchNorm2d feed into the moving variance; set
// unbiased_running_var = false for the biased one. PyTorch's momentum m corresponds to momentum = 1 - m
// here (Lurz: BatchNorm2d(momentum=0.9) -> momentum 0.1, eps 1e-5).
// Evaluation (batchnorm_forward_eval): running statistics, no update.
//
// Backward through the batch statistics (training) or through the affine map only (evaluation), with the
// activation fused: d_z = d_out * act'(out) is recomputed from the saved output in both passes.
//   d_beta_g += sum d_z,  d_gamma_g += sum d_z * xhat,
//   d_in = gamma * rstd * (d_z - mean(d_z) - xhat * mean(d_z * xhat))          (training)
//   d_in = gamma * rstd_running * d_z                                           (evaluation)
// Parameter grads accumulate (+=); d_in is assigned. Without scale (Ecker's last layer) gamma is absent
// (pass an empty View) and d_gamma is neither read nor written.
#pragma once

#include "layers/activations.hpp"
#include "layers/common.hpp"

namespace v1sysid::layers {

struct BatchNormShape {
  int B = 0;  // batch
  int R = 1;  // rotation blocks (1 for an ordinary CNN)
  int F = 0;  // features per rotation block; channels C = R*F
  int H = 0;
  int W = 0;
  int C() const { return R * F; }
};

struct BatchNormOptions {
  double momentum = 0.9;          // TF decay: fraction of the old running statistic kept (0.9 roteq, 0.98 CNN)
  double eps = 1e-3;              // TF default (PyTorch: 1e-5)
  bool scale = true;              // gamma present (false on Ecker's last layer)
  bool shared_rotations = false;  // statistics and beta/gamma per feature f over (B, R, H, W)
  bool unbiased_running_var = true;
};

std::string describe(const BatchNormShape& s, const BatchNormOptions& o);
void validate(const BatchNormShape& s, const BatchNormOptions& o);
// Entries of mean/rstd/running statistics/beta/gamma: F when shared_rotations, else R*F.
int batchnorm_groups(const BatchNormShape& s, const BatchNormOptions& o);
// Batch norm needs no workspace; its forward->backward cache is mean and rstd (batchnorm_groups entries each).

template <class T, class ExecSpace>
void batchnorm_forward_train(ExecSpace const& space, BatchNormShape const& s, BatchNormOptions const& o,
                             Activation act,
                             UView1<const T, ExecSpace> gamma,     // (G), or empty when !o.scale
                             UView1<const T, ExecSpace> beta,      // (G)
                             UView4<const T, ExecSpace> in,        // (B, C, H, W)
                             UView4<T, ExecSpace> out,             // (B, C, H, W), assigned; must not alias in
                             UView1<T, ExecSpace> mean,            // (G), cache: batch mean
                             UView1<T, ExecSpace> rstd,            // (G), cache: 1/sqrt(batch var + eps)
                             UView1<T, ExecSpace> running_mean,    // (G), updated
                             UView1<T, ExecSpace> running_var);    // (G), updated

template <class T, class ExecSpace>
void batchnorm_forward_eval(ExecSpace const& space, BatchNormShape const& s, BatchNormOptions const& o,
                            Activation act,
                            UView1<const T, ExecSpace> gamma,         // (G), or empty when !o.scale
                            UView1<const T, ExecSpace> beta,          // (G)
                            UView1<const T, ExecSpace> running_mean,  // (G)
                            UView1<const T, ExecSpace> running_var,   // (G)
                            UView4<const T, ExecSpace> in,            // (B, C, H, W)
                            UView4<T, ExecSpace> out);                // (B, C, H, W), assigned; may alias in

template <class T, class ExecSpace>
void batchnorm_backward_train(ExecSpace const& space, BatchNormShape const& s, BatchNormOptions const& o,
                              Activation act,
                              UView1<const T, ExecSpace> gamma,  // (G), or empty when !o.scale
                              UView4<const T, ExecSpace> in,     // (B, C, H, W), the forward input
                              UView4<const T, ExecSpace> out,    // (B, C, H, W), the forward output (read unless act == none)
                              UView1<const T, ExecSpace> mean,   // (G), cache of batchnorm_forward_train
                              UView1<const T, ExecSpace> rstd,   // (G), cache of batchnorm_forward_train
                              UView4<const T, ExecSpace> d_out,  // (B, C, H, W)
                              UView4<T, ExecSpace> d_in,         // (B, C, H, W), assigned; may alias d_out
                              UView1<T, ExecSpace> d_gamma,      // (G), accumulated; empty when !o.scale
                              UView1<T, ExecSpace> d_beta);      // (G), accumulated

template <class T, class ExecSpace>
void batchnorm_backward_eval(ExecSpace const& space, BatchNormShape const& s, BatchNormOptions const& o,
                             Activation act,
                             UView1<const T, ExecSpace> gamma,         // (G), or empty when !o.scale
                             UView1<const T, ExecSpace> running_mean,  // (G)
                             UView1<const T, ExecSpace> running_var,   // (G)
                             UView4<const T, ExecSpace> in,            // (B, C, H, W)
                             UView4<const T, ExecSpace> out,           // (B, C, H, W) (read unless act == none)
                             UView4<const T, ExecSpace> d_out,         // (B, C, H, W)
                             UView4<T, ExecSpace> d_in,                // (B, C, H, W), assigned; may alias d_out
                             UView1<T, ExecSpace> d_gamma,             // (G), accumulated; empty when !o.scale
                             UView1<T, ExecSpace> d_beta);             // (G), accumulated

}  // namespace v1sysid::layers
