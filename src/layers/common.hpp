// Shared plumbing of the layer kernels in src/layers/: unmanaged View aliases for arguments, host-side shape
// checks that throw ShapeError before any dispatch, the GEMM entry point, row helpers and the list of
// (scalar, execution space) pairs that every layer .cpp instantiates.
//
// Calling convention (style.md §2.3): every kernel is `template <class T, class ExecSpace>` with the scalar
// given explicitly and the space deduced, e.g. `conv2d_forward<Real>(space, shape, ...)`. View arguments are
// unmanaged LayoutRight Views in ExecSpace's memory space; managed Views, const-adding conversions and
// arena slot views all convert to them implicitly. An "optional" View argument is absent when it is default
// constructed (data() == nullptr).
#pragma once

#include "core/error.hpp"
#include "core/instantiate.hpp"
#include "core/types.hpp"

#include <KokkosBlas3_gemm.hpp>
#include <Kokkos_Core.hpp>

#include <cstddef>
#include <initializer_list>
#include <string>
#include <type_traits>

namespace v1sysid::layers {

using Unmanaged = Kokkos::MemoryTraits<Kokkos::Unmanaged>;

template <class T, class ExecSpace>
using UView1 = Kokkos::View<T*, Kokkos::LayoutRight, typename ExecSpace::memory_space, Unmanaged>;
template <class T, class ExecSpace>
using UView2 = Kokkos::View<T**, Kokkos::LayoutRight, typename ExecSpace::memory_space, Unmanaged>;
template <class T, class ExecSpace>
using UView3 = Kokkos::View<T***, Kokkos::LayoutRight, typename ExecSpace::memory_space, Unmanaged>;
template <class T, class ExecSpace>
using UView4 = Kokkos::View<T****, Kokkos::LayoutRight, typename ExecSpace::memory_space, Unmanaged>;

// Padding of a stride-1 convolution: SAME keeps H x W (odd K, K/2 zeros on each side), VALID has no padding
// and shrinks the image by K-1 (the Lurz 15x15 input layer, Klindt's first layer).
enum class Padding { same, valid };

inline const char* to_string(Padding p) { return p == Padding::same ? "same" : "valid"; }

// A 1-D view of all elements of a contiguous LayoutRight View (for the elementwise kernels).
template <class V>
auto flat(const V& v) {
  return Kokkos::View<typename V::value_type*, Kokkos::LayoutRight, typename V::memory_space, Unmanaged>(
      v.data(), v.span());
}

template <class V>
bool present(const V& v) {
  return v.data() != nullptr;
}

namespace detail {

inline std::string join_extents(std::initializer_list<std::size_t> e) {
  std::string s = "(";
  bool first = true;
  for (std::size_t x : e) {
    if (!first) s += ", ";
    s += std::to_string(x);
    first = false;
  }
  return s + ")";
}

template <class V>
std::string view_extents(const V& v) {
  std::string s = "(";
  for (unsigned r = 0; r < V::rank; ++r) {
    if (r) s += ", ";
    s += std::to_string(v.extent(r));
  }
  return s + ")";
}

// Throws ShapeError unless `v` has exactly the extents `expected`.
template <class V>
void require_extents(const V& v, std::initializer_list<std::size_t> expected, const char* where, const char* name) {
  bool ok = expected.size() == V::rank;
  unsigned r = 0;
  for (std::size_t e : expected) {
    if (ok && v.extent(r) != e) ok = false;
    ++r;
  }
  if (!ok)
    throw ShapeError(std::string(name) + " has extents " + view_extents(v) + " but the layer expects " +
                         join_extents(expected),
                     std::string("v1sysid::layers::") + where,
                     "allocate it from the same shape struct that is passed to the layer");
}

template <class V>
void require_workspace(const V& ws, std::size_t needed, const char* where, const char* size_function) {
  if (ws.extent(0) < needed)
    throw ShapeError("workspace holds " + std::to_string(ws.extent(0)) + " scalars but " + std::to_string(needed) +
                         " are needed",
                     std::string("v1sysid::layers::") + where,
                     std::string("size it with ") + size_function + "(shape)");
}

inline void require(bool ok, const std::string& what, const char* where, const std::string& fix) {
  if (!ok) throw ShapeError(what, std::string("v1sysid::layers::") + where, fix);
}

// C = alpha * op(A) * op(B) + beta * C through KokkosBlas (OpenBLAS sgemm/dgemm on the host, cuBLAS on CUDA
// builds). Kokkos Kernels 3.4 has no execution-space overload, so the GEMM runs on the default instance of
// ExecSpace; the layers therefore assume `space` is that default instance (true for everything in v1sysid).
template <class ExecSpace, class AV, class BV, class CV>
void gemm(ExecSpace const& /*space*/, const char* trans_a, const char* trans_b,
          typename CV::const_value_type alpha, const AV& A, const BV& B, typename CV::const_value_type beta,
          const CV& C) {
  KokkosBlas::gemm(trans_a, trans_b, alpha, A, B, beta, C);
}

// Pointer to the first element of image b of a (B, ...) view, computed without touching an element: host code
// may hold views of device memory (CUDA), where view(b, 0, 0, 0) would be an inaccessible access.
template <class V>
auto batch_item(const V& view, std::size_t b) -> decltype(view.data()) {
  return view.data() + b * view.stride(0);
}

// Sum of x[0..n) in double with four independent accumulators, so the loop is not bound by the latency of
// one dependent chain of double adds (this is the inner loop of every batch-norm reduction).
template <class T>
KOKKOS_INLINE_FUNCTION double row_sum(const T* x, int n) {
  double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    a0 += x[i];
    a1 += x[i + 1];
    a2 += x[i + 2];
    a3 += x[i + 3];
  }
  for (; i < n; ++i) a0 += x[i];
  return (a0 + a1) + (a2 + a3);
}

}  // namespace detail

}  // namespace v1sysid::layers
