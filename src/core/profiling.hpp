// Named Kokkos profiling regions around the phases of a training step (per layer and pass), so that a
// Kokkos tool (kp_space_time_stack, or the timer of `v1sysid bench`) can attribute time to them.
// With no tool loaded a region costs one branch: the name is built only when a tool listens.
#pragma once

#include <Kokkos_Core.hpp>

#include <string>
#include <utility>

namespace v1sysid {

class ScopedRegion {
 public:
  // `name` is called (and the string built) only when a profiling tool is loaded.
  template <class NameFn>
  explicit ScopedRegion(NameFn&& name) : m_active(Kokkos::Profiling::profileLibraryLoaded()) {
    if (m_active) Kokkos::Profiling::pushRegion(std::forward<NameFn>(name)());
  }
  explicit ScopedRegion(const char* name) : m_active(Kokkos::Profiling::profileLibraryLoaded()) {
    if (m_active) Kokkos::Profiling::pushRegion(name);
  }
  ~ScopedRegion() {
    if (m_active) Kokkos::Profiling::popRegion();
  }
  ScopedRegion(const ScopedRegion&) = delete;
  ScopedRegion& operator=(const ScopedRegion&) = delete;

 private:
  bool m_active;
};

// "forward/layer2/conv" style names.
inline std::string layer_region(const char* pass, int layer, const char* part) {
  return std::string(pass) + "/layer" + std::to_string(layer) + "/" + part;
}

}  // namespace v1sysid
