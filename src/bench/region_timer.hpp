// Wall time per named Kokkos profiling region (core/profiling.hpp), collected through Kokkos' tool callbacks:
// the per-layer and per-pass breakdown of `v1sysid bench`. Nested GEMM regions ("KokkosBlas::gemm[...]",
// pushed by Kokkos Kernels) are not reported on their own; their time is added to the `gemm_seconds` of every
// enclosing region, which splits each layer into BLAS time and the rest (im2col, batch norm, ...).
//
// Only one RegionTimer may listen at a time (the callbacks are process-wide). On a device backend every
// region boundary fences, so the times are those of the kernels, not of their launches.
#pragma once

#include <map>
#include <string>

namespace v1sysid::bench {

struct RegionTime {
  double seconds = 0;       // inclusive wall time
  double gemm_seconds = 0;  // of which inside KokkosBlas::gemm
  long calls = 0;
};

class RegionTimer {
 public:
  // Installs the push/pop region callbacks; throws std::logic_error if another RegionTimer is listening.
  RegionTimer();
  // Removes the callbacks.
  ~RegionTimer();
  RegionTimer(const RegionTimer&) = delete;
  RegionTimer& operator=(const RegionTimer&) = delete;

  // The totals since construction or the last take(), by region name; resets them.
  std::map<std::string, RegionTime> take();
};

}  // namespace v1sysid::bench
