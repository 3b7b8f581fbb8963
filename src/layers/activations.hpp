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

#include <type_traits>

namespace v1sysid::layers {

enum class Activation { none, softplus, elu };

// Float fast path. libm's expf/log1pf are scalar calls (~10 ns per element here), and with Serial Kokkos the
// fused batch-norm kernels are single-threaded, so they are not negligible next to the GEMMs. These are
// branch-free and vectorisable: Cody-Waite exp with a Taylor polynomial for expm1 on |r| <= ln2/2, and
// log1p(t) = 2 atanh(t / (2 + t)) as a series; both are accurate to a few float ulp (tested against libm
// in double). double keeps libm, so the finite-difference tests run on the reference functions.
namespace fast {

// exp(z) = 2^n (1 + p) with p = expm1(r), r = z - n ln2, |r| <= ln2/2, for z <= 0. Below z = -87 (exp(z) no
// longer a normal float) n stays at -126 and r is clamped, so exp returns ~8e-39 instead of 0 and expm1 -1.
// The clamps are written so that GCC vectorises the loops: a float clamp feeding the float->int conversion,
// or a final select, would not be (no -ffast-math here).
KOKKOS_INLINE_FUNCTION void exp_parts_nonpositive(float z, float& two_n, float& p) {
  int n = static_cast<int>(z * 1.44269504f - 0.5f);  // round to nearest for z <= 0
  n = n < -126 ? -126 : n;
  const float nf = static_cast<float>(n);
  float r = (z - nf * 0.693145752f) - nf * 1.42860677e-6f;  // ln2 split in hi + lo
  r = r < -0.35f ? -0.35f : r;
  p = r * (1.0f + r * (0.5f + r * (1.66666667e-1f + r * (4.16666667e-2f +
      r * (8.33333333e-3f + r * (1.38888889e-3f + r * 1.98412698e-4f))))));
  union {
    int i;
    float f;
  } scale;
  scale.i = (n + 127) << 23;
  two_n = scale.f;
}

KOKKOS_INLINE_FUNCTION float exp_nonpositive(float z) {
  float two_n, p;
  exp_parts_nonpositive(z, two_n, p);
  return two_n + two_n * p;
}

KOKKOS_INLINE_FUNCTION float expm1_nonpositive(float z) {
  float two_n, p;
  exp_parts_nonpositive(z, two_n, p);
  return two_n * p + (two_n - 1.0f);  // no cancellation at n = 0, where it is p itself
}

// log1p(t) for 0 <= t <= 1.
KOKKOS_INLINE_FUNCTION float log1p_unit(float t) {
  const float s = t / (2.0f + t), s2 = s * s;  // s <= 1/3
  return 2.0f * s * (1.0f + s2 * (3.33333333e-1f + s2 * (2.0e-1f + s2 * (1.42857143e-1f +
         s2 * (1.11111111e-1f + s2 * (9.09090909e-2f + s2 * (7.69230769e-2f + s2 * 6.66666667e-2f)))))));
}

// softplus(x) = max(x, 0) + log1p(exp(-|x|))
KOKKOS_INLINE_FUNCTION float softplus(float x) {
  const float a = x < 0.0f ? -x : x;
  return (x > 0.0f ? x : 0.0f) + log1p_unit(exp_nonpositive(-a));
}

}  // namespace fast

const char* to_string(Activation a);
// Parses "none" | "softplus" | "elu" (the checkpoint's `nonlinearity` attribute); throws ConfigError otherwise.
Activation activation_from_string(const std::string& name);

// activate() for a kind fixed at compile time; float takes the fast:: path, double libm.
template <Activation A, class T>
KOKKOS_INLINE_FUNCTION T activate_as(T x) {
  constexpr bool is_float = std::is_same<T, float>::value;
  if constexpr (A == Activation::softplus) {
    if constexpr (is_float) return fast::softplus(x);
    else return kmath::softplus(x);
  } else if constexpr (A == Activation::elu) {
    if constexpr (is_float) {
      const float e = fast::expm1_nonpositive(x < 0.0f ? x : 0.0f);
      return x > 0.0f ? x : e;
    }
    else {
      return x > T(0) ? x : kmath::expm1(x);
    }
  } else {
    return x;
  }
}

// d activate(x) / dx expressed through y = activate(x).
template <Activation A, class T>
KOKKOS_INLINE_FUNCTION T activation_grad_from_output_as(T y) {
  if constexpr (A == Activation::softplus) {  // sigmoid(x) = 1 - e^{-softplus(x)}, exact for tiny y
    if constexpr (std::is_same<T, float>::value) return -fast::expm1_nonpositive(-y);
    else return -kmath::expm1(-y);
  } else if constexpr (A == Activation::elu) {
    return y > T(0) ? T(1) : y + T(1);
  } else {
    return T(1);
  }
}

// Calls body(std::integral_constant<Activation, a>{}) so that loops inside body see the kind as a compile-time
// constant: a switch inside the loop would stop the compiler from vectorising it.
template <class Body>
KOKKOS_INLINE_FUNCTION void with_activation(Activation a, Body&& body) {
  switch (a) {
    case Activation::softplus: body(std::integral_constant<Activation, Activation::softplus>()); break;
    case Activation::elu: body(std::integral_constant<Activation, Activation::elu>()); break;
    default: body(std::integral_constant<Activation, Activation::none>()); break;
  }
}

template <class T>
KOKKOS_INLINE_FUNCTION T activate(Activation a, T x) {
  T y = x;
  with_activation(a, [&](auto kind) { y = activate_as<decltype(kind)::value>(x); });
  return y;
}

template <class T>
KOKKOS_INLINE_FUNCTION T activation_grad_from_output(Activation a, T y) {
  T g = T(1);
  with_activation(a, [&](auto kind) { g = activation_grad_from_output_as<decltype(kind)::value>(y); });
  return g;
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
