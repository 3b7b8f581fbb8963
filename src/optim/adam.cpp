// Adam (TF formulation) over a ParamArena; see adam.hpp.
#include "optim/adam.hpp"

#include "core/error.hpp"
#include "core/kmath.hpp"
#include "core/instantiate.hpp"

#include <cmath>
#include <string>

namespace v1sysid {

double adam_step_size(AdamConfig const& config, std::int64_t step) {
  const double t = static_cast<double>(step);
  return config.learning_rate * std::sqrt(1.0 - std::pow(config.beta2, t)) / (1.0 - std::pow(config.beta1, t));
}

namespace detail {

void validate(AdamConfig const& c) {
  auto bad = [](std::string const& what) {
    throw ConfigError(what, "Adam configuration", "use lr > 0, 0 <= beta < 1, epsilon > 0 (TF defaults: "
                                                  "beta1 0.9, beta2 0.999, epsilon 1e-8)");
  };
  if (!(c.learning_rate > 0)) bad("learning rate " + std::to_string(c.learning_rate) + " is not positive");
  if (!(c.beta1 >= 0 && c.beta1 < 1)) bad("beta1 " + std::to_string(c.beta1) + " is outside [0, 1)");
  if (!(c.beta2 >= 0 && c.beta2 < 1)) bad("beta2 " + std::to_string(c.beta2) + " is outside [0, 1)");
  if (!(c.epsilon > 0)) bad("epsilon " + std::to_string(c.epsilon) + " is not positive");
}

// Update of the element range [begin, end) of the four flat buffers.
template <class ExecSpace, class T>
void adam_update_range(ExecSpace const& space, View1<T, typename ExecSpace::memory_space> const& params,
                       View1<T, typename ExecSpace::memory_space> const& grads,
                       View1<T, typename ExecSpace::memory_space> const& m,
                       View1<T, typename ExecSpace::memory_space> const& v, std::size_t begin, std::size_t end,
                       T step_size, T one_minus_beta1, T one_minus_beta2, T epsilon) {
  Kokkos::parallel_for(
      "v1sysid::adam::update", Kokkos::RangePolicy<ExecSpace>(space, begin, end), KOKKOS_LAMBDA(std::size_t i) {
        const T g = grads(i);
        const T m_i = m(i) + one_minus_beta1 * (g - m(i));
        const T v_i = v(i) + one_minus_beta2 * (g * g - v(i));
        m(i) = m_i;
        v(i) = v_i;
        params(i) -= step_size * m_i / (kmath::sqrt(v_i) + epsilon);
      });
}

}  // namespace detail

template <class ExecSpace, class T>
void adam_step(ExecSpace const& space, ParamArena<T, typename ExecSpace::memory_space>& arena,
               AdamConfig const& config, std::vector<bool> const& frozen) {
  detail::validate(config);
  if (!frozen.empty() && frozen.size() != static_cast<std::size_t>(arena.num_slots()))
    throw ShapeError("frozen-slot mask has " + std::to_string(frozen.size()) + " entries but the arena has " +
                         std::to_string(arena.num_slots()) + " slots",
                     "adam_step", "pass an empty mask or one flag per slot (slot_mask_with_prefix)");
  const std::int64_t step = arena.adam_step() + 1;
  const T step_size = static_cast<T>(adam_step_size(config, step));
  const T one_minus_beta1 = static_cast<T>(1.0 - config.beta1);
  const T one_minus_beta2 = static_cast<T>(1.0 - config.beta2);
  const T epsilon = static_cast<T>(config.epsilon);
  auto params = arena.params();
  auto grads = arena.grads();
  auto m = arena.adam_m();
  auto v = arena.adam_v();

  // Coalesce consecutive updatable slots (and the zero padding between them, which stays zero) into runs.
  bool in_run = false;
  std::size_t run_begin = 0, run_end = 0;
  auto flush = [&]() {
    if (in_run && run_end > run_begin)
      detail::adam_update_range(space, params, grads, m, v, run_begin, run_end, step_size, one_minus_beta1,
                        one_minus_beta2, epsilon);
    in_run = false;
  };
  auto const& slots = arena.slots();
  for (std::size_t s = 0; s < slots.size(); ++s) {
    const bool update = slots[s].trainable && (frozen.empty() || !frozen[s]);
    if (!update) {
      flush();
      continue;
    }
    if (!in_run) {
      in_run = true;
      run_begin = slots[s].offset;
    }
    run_end = slots[s].offset + slots[s].size;
  }
  flush();
  arena.set_adam_step(step);
}

#define V1SYSID_INSTANTIATE_ADAM(SPACE, T)                                                                \
  template void adam_step<SPACE, T>(SPACE const&, ParamArena<T, SPACE::memory_space>&, AdamConfig const&, \
                                    std::vector<bool> const&);

V1SYSID_INSTANTIATE_ADAM(ExecSpace, float)
V1SYSID_INSTANTIATE_ADAM(ExecSpace, double)
#if V1SYSID_HOST_SPACE_IS_SEPARATE
V1SYSID_INSTANTIATE_ADAM(HostExecSpace, float)
V1SYSID_INSTANTIATE_ADAM(HostExecSpace, double)
#endif
#if V1SYSID_SERIAL_IS_SEPARATE  // the reference space of the backend tests (core/instantiate.hpp)
V1SYSID_INSTANTIATE_ADAM(Kokkos::Serial, float)
V1SYSID_INSTANTIATE_ADAM(Kokkos::Serial, double)
#endif

}  // namespace v1sysid
