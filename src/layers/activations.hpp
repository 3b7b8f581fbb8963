// Elementwise activations of the core layers:
//   softplus(x) = log(1 + e^x)           (Ecker's soft_threshold; derivative sigmoid(x))
//   elu(x)      = x > 0 ? x : e^x - 1    (alpha = 1, Lurz's cores; derivative x > 0 ? 1 : e^x)
//   none        = identity               (Ecker's last core layer)
// Backward takes the activation's OUTPUT y, not its input: both derivatives are functions of y
// (softplus' = 1 - e^{-y}, elu' = y > 0 ? 1 : y + 1), so a layer need not keep the pre-activation and
// forward may run in place (out aliasing in). batchnorm.hpp fuses these into its forward and backward.
#pragma once

#include "core/kmath.hpp"
#include "layers/common.hpp"

namespace v1sysid::layers {

enum class Activation { none, softplus, elu };

const char* to_string(Activation a);
// Parses "none" | "softplus" | "elu" (the checkpoint's `nonlinearity` attribute); throws ConfigError otherwise.
Activation activation_from_string(const std::string& name);

template <class T>
KOKKOS_INLINE_FUNCTION T activate(Activation a, T x) {
  switch (a) {
    case Activation::softplus: return kmath::softplus(x);
    case Activation::elu: return x > T(0) ? x : kmath::expm1(x);
    default: return x;
  }
}

// d activate(x) / dx expressed through y = activate(x).
template <class T>
KOKKOS_INLINE_FUNCTION T activation_grad_from_output(Activation a, T y) {
  switch (a) {
    case Activation::softplus: return -kmath::expm1(-y);  // sigmoid(x) = 1 - e^{-softplus(x)}, exact for tiny y
    case Activation::elu: return y > T(0) ? T(1) : y + T(1);
    default: return T(1);
  }
}

// out = activate(in); out may alias in.
template <class T, class ExecSpace>
void activation_forward(ExecSpace const& space, Activation act,
                        UView1<const T, ExecSpace> in,  // (n)
                        UView1<T, ExecSpace> out);      // (n), assigned

// d_in = d_out * activate'(x), computed from out = activate(x); d_in may alias d_out.
template <class T, class ExecSpace>
void activation_backward(ExecSpace const& space, Activation act,
                         UView1<const T, ExecSpace> out,    // (n), the forward output
                         UView1<const T, ExecSpace> d_out,  // (n)
                         UView1<T, ExecSpace> d_in);        // (n), assigned

}  // namespace v1sysid::layers
