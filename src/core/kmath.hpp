// Device-safe math that compiles against Kokkos 3.4 (functions in Kokkos::Experimental) and 4.x
// (functions in Kokkos). Kernels call v1sysid::kmath::exp etc. and never std:: in device code.
#pragma once

#include <Kokkos_Core.hpp>

namespace v1sysid::kmath {

#if KOKKOS_VERSION >= 30700
namespace impl = ::Kokkos;
#else
namespace impl = ::Kokkos::Experimental;
#endif

template <class T> KOKKOS_INLINE_FUNCTION T exp(T x) { return impl::exp(x); }
template <class T> KOKKOS_INLINE_FUNCTION T log(T x) { return impl::log(x); }
template <class T> KOKKOS_INLINE_FUNCTION T log1p(T x) { return impl::log1p(x); }
template <class T> KOKKOS_INLINE_FUNCTION T expm1(T x) { return impl::expm1(x); }
template <class T> KOKKOS_INLINE_FUNCTION T sqrt(T x) { return impl::sqrt(x); }
template <class T> KOKKOS_INLINE_FUNCTION T fabs(T x) { return impl::fabs(x); }
template <class T> KOKKOS_INLINE_FUNCTION T sin(T x) { return impl::sin(x); }
template <class T> KOKKOS_INLINE_FUNCTION T cos(T x) { return impl::cos(x); }
template <class T> KOKKOS_INLINE_FUNCTION T tanh(T x) { return impl::tanh(x); }
template <class T> KOKKOS_INLINE_FUNCTION bool isfinite(T x) { return impl::isfinite(x); }

// softplus(x) = log(1 + e^x), evaluated without overflow for large |x|.
template <class T>
KOKKOS_INLINE_FUNCTION T softplus(T x) {
  return x > T(0) ? x + log1p(exp(-x)) : log1p(exp(x));
}
// d softplus / dx = sigmoid(x)
template <class T>
KOKKOS_INLINE_FUNCTION T sigmoid(T x) {
  if (x >= T(0)) return T(1) / (T(1) + exp(-x));
  const T e = exp(x);
  return e / (T(1) + e);
}

}  // namespace v1sysid::kmath
