// Kernels of activations.hpp.
// FP operations may not trap (the default -ftrapping-math stops GCC from if-converting the clamps inside the
// float exp/log1p of activations.hpp, so the activation loops would stay scalar). Set before any include so
// that every function of this file carries the same attribute and inlining is unaffected.
#if defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__) && !defined(__INTEL_COMPILER)
#pragma GCC optimize("no-trapping-math")
#endif
#include "layers/activations.hpp"

namespace v1sysid::layers {

const char* to_string(Activation a) {
  switch (a) {
    case Activation::softplus: return "softplus";
    case Activation::elu: return "elu";
    default: return "none";
  }
}

Activation activation_from_string(const std::string& name) {
  if (name == "none") return Activation::none;
  if (name == "softplus") return Activation::softplus;
  if (name == "elu") return Activation::elu;
  throw ConfigError("unknown nonlinearity \"" + name + "\"", "v1sysid::layers::activation_from_string",
                    "use none, softplus or elu");
}

template <class T, class ExecSpace>
void activation_forward(ExecSpace const& space, Activation act, UView1<const T, ExecSpace> in,
                        UView1<T, ExecSpace> out) {
  detail::require_extents(out, {in.extent(0)}, "activation_forward", "out");
  Kokkos::parallel_for(
      "v1sysid::activation::forward", Kokkos::RangePolicy<ExecSpace>(space, 0, in.extent(0)),
      KOKKOS_LAMBDA(const std::size_t i) { out(i) = activate(act, in(i)); });
}

template <class T, class ExecSpace>
void activation_backward(ExecSpace const& space, Activation act, UView1<const T, ExecSpace> out,
                         UView1<const T, ExecSpace> d_out, UView1<T, ExecSpace> d_in) {
  detail::require_extents(d_out, {out.extent(0)}, "activation_backward", "d_out");
  detail::require_extents(d_in, {out.extent(0)}, "activation_backward", "d_in");
  Kokkos::parallel_for(
      "v1sysid::activation::backward", Kokkos::RangePolicy<ExecSpace>(space, 0, out.extent(0)),
      KOKKOS_LAMBDA(const std::size_t i) { d_in(i) = d_out(i) * activation_grad_from_output(act, out(i)); });
}

#define V1SYSID_ACTIVATION_INSTANTIATE(T, E)                                                              \
  template void activation_forward<T, E>(E const&, Activation, UView1<const T, E>, UView1<T, E>);         \
  template void activation_backward<T, E>(E const&, Activation, UView1<const T, E>, UView1<const T, E>,   \
                                          UView1<T, E>);
V1SYSID_INSTANTIATE_FOR_EACH(V1SYSID_ACTIVATION_INSTANTIATE)

}  // namespace v1sysid::layers
