#include "bench/region_timer.hpp"

#include <Kokkos_Core.hpp>

#include <chrono>
#include <stdexcept>
#include <vector>

namespace v1sysid::bench {

namespace {

using Clock = std::chrono::steady_clock;

struct Frame {
  std::string name;
  Clock::time_point start;
  double gemm_seconds = 0;
};

struct State {
  bool listening = false;
  std::vector<Frame> stack;
  std::map<std::string, RegionTime> totals;
};

State& state() {
  static State s;
  return s;
}

bool is_gemm(const std::string& name) { return name.rfind("KokkosBlas::gemm", 0) == 0; }

void on_push(const char* name) {
  Kokkos::fence();  // a no-op on the host backends; on devices the region then times its kernels
  state().stack.push_back(Frame{name, Clock::now(), 0.0});
}

void on_pop() {
  Kokkos::fence();
  auto& s = state();
  if (s.stack.empty()) return;  // a region opened before the timer started
  const Frame f = s.stack.back();
  s.stack.pop_back();
  const double dt = std::chrono::duration<double>(Clock::now() - f.start).count();
  if (is_gemm(f.name)) {
    for (auto& outer : s.stack) outer.gemm_seconds += dt;
    if (s.stack.empty()) {
      auto& t = s.totals["gemm (outside any region)"];
      t.seconds += dt;
      t.gemm_seconds += dt;
      ++t.calls;
    }
    return;
  }
  auto& t = s.totals[f.name];
  t.seconds += dt;
  t.gemm_seconds += f.gemm_seconds;
  ++t.calls;
}

}  // namespace

RegionTimer::RegionTimer() {
  auto& s = state();
  if (s.listening) throw std::logic_error("v1sysid::bench::RegionTimer: another timer is already listening");
  s.listening = true;
  s.stack.clear();
  s.totals.clear();
  Kokkos::Tools::Experimental::set_push_region_callback(on_push);
  Kokkos::Tools::Experimental::set_pop_region_callback(on_pop);
}

RegionTimer::~RegionTimer() {
  Kokkos::Tools::Experimental::set_push_region_callback(nullptr);
  Kokkos::Tools::Experimental::set_pop_region_callback(nullptr);
  auto& s = state();
  s.listening = false;
  s.stack.clear();
  s.totals.clear();
}

std::map<std::string, RegionTime> RegionTimer::take() {
  auto& s = state();
  std::map<std::string, RegionTime> out;
  out.swap(s.totals);
  return out;
}

}  // namespace v1sysid::bench
