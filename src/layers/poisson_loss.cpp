// Kernels of poisson_loss.hpp.
#include "layers/poisson_loss.hpp"

#include "core/kmath.hpp"

namespace v1sysid::layers {

namespace {

template <class T>
KOKKOS_INLINE_FUNCTION T output_value(OutputNonlinearity f, T h) {
  if (f == OutputNonlinearity::softplus) return kmath::softplus(h);
  return h > T(0) ? h + T(1) : kmath::exp(h);  // ELU(h) + 1
}

template <class T>
KOKKOS_INLINE_FUNCTION T output_derivative(OutputNonlinearity f, T h) {
  if (f == OutputNonlinearity::softplus) return kmath::sigmoid(h);
  return h > T(0) ? T(1) : kmath::exp(h);
}

template <class V>
void check_2d(const V& v, const char* where, const char* name, std::size_t B, std::size_t N) {
  detail::require_extents(v, {B, N}, where, name);
}

}  // namespace

const char* to_string(OutputNonlinearity f) {
  return f == OutputNonlinearity::softplus ? "softplus" : "elu_plus_one";
}

OutputNonlinearity output_nonlinearity_from_string(const std::string& name) {
  if (name == "softplus") return OutputNonlinearity::softplus;
  if (name == "elu_plus_one") return OutputNonlinearity::elu_plus_one;
  throw ConfigError("unknown output nonlinearity \"" + name + "\"",
                    "v1sysid::layers::output_nonlinearity_from_string", "use softplus or elu_plus_one");
}

template <class T, class ExecSpace>
void output_nonlinearity_forward(ExecSpace const& space, OutputNonlinearity f, UView2<const T, ExecSpace> h,
                                 UView2<T, ExecSpace> yhat) {
  check_2d(yhat, "output_nonlinearity_forward", "yhat", h.extent(0), h.extent(1));
  const T* hp = h.data();
  T* yp = yhat.data();
  Kokkos::parallel_for(
      "v1sysid::output_nonlinearity::forward", Kokkos::RangePolicy<ExecSpace>(space, 0, h.span()),
      KOKKOS_LAMBDA(const std::size_t i) { yp[i] = output_value(f, hp[i]); });
}

template <class T, class ExecSpace>
void output_nonlinearity_backward(ExecSpace const& space, OutputNonlinearity f, UView2<const T, ExecSpace> h,
                                  UView2<const T, ExecSpace> d_yhat, UView2<T, ExecSpace> d_h) {
  check_2d(d_yhat, "output_nonlinearity_backward", "d_yhat", h.extent(0), h.extent(1));
  check_2d(d_h, "output_nonlinearity_backward", "d_h", h.extent(0), h.extent(1));
  const T* hp = h.data();
  const T* gp = d_yhat.data();
  T* dp = d_h.data();
  Kokkos::parallel_for(
      "v1sysid::output_nonlinearity::backward", Kokkos::RangePolicy<ExecSpace>(space, 0, h.span()),
      KOKKOS_LAMBDA(const std::size_t i) { dp[i] = gp[i] * output_derivative(f, hp[i]); });
}

template <class T, class ExecSpace>
double poisson_loss_forward(ExecSpace const& space, OutputNonlinearity f, PoissonLossOptions const& o,
                            UView2<const T, ExecSpace> h, UView2<const T, ExecSpace> y, UView2<T, ExecSpace> yhat) {
  const char* where = "poisson_loss_forward";
  const std::size_t B = h.extent(0), N = h.extent(1);
  check_2d(y, where, "y", B, N);
  check_2d(yhat, where, "yhat", B, N);
  detail::require(B >= 1, "Poisson loss of an empty batch", where, "use at least one trial");
  const int Nn = N;
  const T eps = T(o.eps);
  double total = 0;
  // One work item per trial; each row is summed in double.
  Kokkos::parallel_reduce(
      "v1sysid::poisson_loss::forward", Kokkos::RangePolicy<ExecSpace>(space, 0, int(B)),
      KOKKOS_LAMBDA(const int b, double& acc) {
        double row = 0;
        for (int n = 0; n < Nn; ++n) {
          const T r = output_value(f, h(b, n));
          yhat(b, n) = r;
          row += double(r) - double(y(b, n)) * double(kmath::log(r + eps));
        }
        acc += row;
      },
      total);
  return total / double(B);
}

template <class T, class ExecSpace>
void poisson_loss_backward(ExecSpace const& space, OutputNonlinearity f, PoissonLossOptions const& o,
                           UView2<const T, ExecSpace> h, UView2<const T, ExecSpace> y, UView2<T, ExecSpace> d_h,
                           double d_loss) {
  const char* where = "poisson_loss_backward";
  const std::size_t B = h.extent(0), N = h.extent(1);
  check_2d(y, where, "y", B, N);
  check_2d(d_h, where, "d_h", B, N);
  detail::require(B >= 1, "Poisson loss of an empty batch", where, "use at least one trial");
  const T eps = T(o.eps), scale = T(d_loss / double(B));
  const T* hp = h.data();
  const T* yp = y.data();
  T* gp = d_h.data();
  Kokkos::parallel_for(
      "v1sysid::poisson_loss::backward", Kokkos::RangePolicy<ExecSpace>(space, 0, h.span()),
      KOKKOS_LAMBDA(const std::size_t i) {
        const T hv = hp[i];
        const T r = output_value(f, hv);
        gp[i] = scale * (T(1) - yp[i] / (r + eps)) * output_derivative(f, hv);
      });
}

#define V1SYSID_POISSON_INSTANTIATE(T, E)                                                                        \
  template void output_nonlinearity_forward<T, E>(E const&, OutputNonlinearity, UView2<const T, E>, UView2<T, E>); \
  template void output_nonlinearity_backward<T, E>(E const&, OutputNonlinearity, UView2<const T, E>,              \
                                                   UView2<const T, E>, UView2<T, E>);                            \
  template double poisson_loss_forward<T, E>(E const&, OutputNonlinearity, PoissonLossOptions const&,            \
                                             UView2<const T, E>, UView2<const T, E>, UView2<T, E>);              \
  template void poisson_loss_backward<T, E>(E const&, OutputNonlinearity, PoissonLossOptions const&,             \
                                            UView2<const T, E>, UView2<const T, E>, UView2<T, E>, double);
V1SYSID_INSTANTIATE_FOR_EACH(V1SYSID_POISSON_INSTANTIATE)

}  // namespace v1sysid::layers
