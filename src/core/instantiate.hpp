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

// The (scalar, execution space) pairs every kernel .cpp instantiates: float and double on ExecSpace, and on
// HostExecSpace too where the default space is a device. MACRO(T, S) expands to the explicit instantiations of
// one pair.
#if V1SYSID_HOST_SPACE_IS_SEPARATE
#define V1SYSID_INSTANTIATE_FOR_EACH(MACRO)                                                        \
  MACRO(float, ::v1sysid::ExecSpace)                                                               \
  MACRO(double, ::v1sysid::ExecSpace) MACRO(float, ::v1sysid::HostExecSpace) MACRO(double, ::v1sysid::HostExecSpace)
#else
#define V1SYSID_INSTANTIATE_FOR_EACH(MACRO) MACRO(float, ::v1sysid::ExecSpace) MACRO(double, ::v1sysid::ExecSpace)
#endif
