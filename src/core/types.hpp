// Scalar, execution-space and View aliases shared by every part of v1sysid.
// Views are always LayoutRight (NCHW, rotations folded into channels as c = r*F + f), so host mirrors,
// HDF5 files and PyTorch exports share one memory order on every backend.
#pragma once

#include <Kokkos_Core.hpp>

#include <cstdint>

namespace v1sysid {

using Real = float;  // storage type of parameters and activations; accumulators are double
using ExecSpace = Kokkos::DefaultExecutionSpace;
using MemSpace = ExecSpace::memory_space;
using HostExecSpace = Kokkos::DefaultHostExecutionSpace;
using HostSpace = Kokkos::HostSpace;

template <class T, class M = MemSpace>
using View1 = Kokkos::View<T*, Kokkos::LayoutRight, M>;
template <class T, class M = MemSpace>
using View2 = Kokkos::View<T**, Kokkos::LayoutRight, M>;
template <class T, class M = MemSpace>
using View3 = Kokkos::View<T***, Kokkos::LayoutRight, M>;
template <class T, class M = MemSpace>
using View4 = Kokkos::View<T****, Kokkos::LayoutRight, M>;

template <class T>
using HostView1 = View1<T, HostSpace>;
template <class T>
using HostView2 = View2<T, HostSpace>;
template <class T>
using HostView3 = View3<T, HostSpace>;
template <class T>
using HostView4 = View4<T, HostSpace>;

}  // namespace v1sysid
