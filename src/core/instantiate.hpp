// Which execution spaces (and scalars) the .cpp files of layers/, core/ and optim/ instantiate their templates for.
// Always the default space (where training runs); in addition the host space when it is a different one
// (CUDA/HIP/SYCL builds), so that tests and host-side tools can run the same code on host Views.
// Explicitly instantiating the same space twice is an error, hence the macro instead of two plain lines.
#pragma once

#include "core/types.hpp"

#include <type_traits>

#if defined(KOKKOS_ENABLE_CUDA) || defined(KOKKOS_ENABLE_HIP) || defined(KOKKOS_ENABLE_SYCL) || \
    defined(KOKKOS_ENABLE_OPENMPTARGET)
#define V1SYSID_HOST_SPACE_IS_SEPARATE 1
#else
#define V1SYSID_HOST_SPACE_IS_SEPARATE 0
#endif

static_assert(std::is_same_v<v1sysid::ExecSpace, v1sysid::HostExecSpace> == !V1SYSID_HOST_SPACE_IS_SEPARATE,
              "v1sysid: V1SYSID_HOST_SPACE_IS_SEPARATE disagrees with Kokkos' default execution spaces; "
              "update src/core/instantiate.hpp for this backend");

// The reference space of the backend tests (tests/test_backend.cpp, BackendOps.*): Serial where Kokkos has it,
// else the host space. Every kernel runs there too, so its results on ExecSpace (OpenMP threads, a GPU) can be
// compared with a one-thread run of the same code. Serial needs its own instantiations where it is enabled beside
// a parallel host backend (it is then neither ExecSpace nor HostExecSpace).
#if defined(KOKKOS_ENABLE_SERIAL) && \
    (defined(KOKKOS_ENABLE_OPENMP) || defined(KOKKOS_ENABLE_THREADS) || defined(KOKKOS_ENABLE_HPX))
#define V1SYSID_SERIAL_IS_SEPARATE 1
#else
#define V1SYSID_SERIAL_IS_SEPARATE 0
#endif

namespace v1sysid {
#if defined(KOKKOS_ENABLE_SERIAL)
using ReferenceExecSpace = Kokkos::Serial;
#else
using ReferenceExecSpace = HostExecSpace;
#endif
}  // namespace v1sysid

static_assert(!V1SYSID_SERIAL_IS_SEPARATE || (!std::is_same_v<v1sysid::ReferenceExecSpace, v1sysid::ExecSpace> &&
                                              !std::is_same_v<v1sysid::ReferenceExecSpace, v1sysid::HostExecSpace>),
              "v1sysid: V1SYSID_SERIAL_IS_SEPARATE is set but Serial is a default space of this Kokkos; "
              "update src/core/instantiate.hpp for this backend");

// The (scalar, execution space) pairs every kernel .cpp instantiates: float and double on ExecSpace, on
// HostExecSpace too where the default space is a device, and on Serial where it is separate (above). MACRO(T, S)
// expands to the explicit instantiations of one pair.
#if V1SYSID_HOST_SPACE_IS_SEPARATE
#define V1SYSID_INSTANTIATE_DEFAULT_AND_HOST(MACRO)                                                \
  MACRO(float, ::v1sysid::ExecSpace)                                                               \
  MACRO(double, ::v1sysid::ExecSpace) MACRO(float, ::v1sysid::HostExecSpace) MACRO(double, ::v1sysid::HostExecSpace)
#else
#define V1SYSID_INSTANTIATE_DEFAULT_AND_HOST(MACRO) MACRO(float, ::v1sysid::ExecSpace) MACRO(double, ::v1sysid::ExecSpace)
#endif
#if V1SYSID_SERIAL_IS_SEPARATE
#define V1SYSID_INSTANTIATE_FOR_EACH(MACRO) \
  V1SYSID_INSTANTIATE_DEFAULT_AND_HOST(MACRO) MACRO(float, ::Kokkos::Serial) MACRO(double, ::Kokkos::Serial)
#else
#define V1SYSID_INSTANTIATE_FOR_EACH(MACRO) V1SYSID_INSTANTIATE_DEFAULT_AND_HOST(MACRO)
#endif
