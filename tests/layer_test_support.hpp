// Helpers shared by the layer test files: random host data, unmanaged host views over std::vectors, and the
// central-difference gradient check every layer backward is tested with (style.md §2.4).
#pragma once

#include "core/types.hpp"
#include "layers/common.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

namespace v1sysid::testing {

using HostE = v1sysid::HostExecSpace;
using Vec = std::vector<double>;

// What parameter and input gradient buffers hold before backward: a wrong `=` instead of `+=` (parameters) or
// a missed assignment (inputs) then shows up in the check.
constexpr double kParamGradFill = 0.25;
constexpr double kInputGradFill = 1e30;

template <class T = double>
std::vector<T> random_vec(std::size_t n, unsigned seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = T(u(gen));
  return v;
}

template <class T>
layers::UView1<T, HostE> u1(std::vector<std::remove_const_t<T>>& v) {
  return layers::UView1<T, HostE>(v.data(), v.size());
}
template <class T>
layers::UView2<T, HostE> u2(std::vector<std::remove_const_t<T>>& v, int a, int b) {
  return layers::UView2<T, HostE>(v.data(), a, b);
}
template <class T>
layers::UView3<T, HostE> u3(std::vector<std::remove_const_t<T>>& v, int a, int b, int c) {
  return layers::UView3<T, HostE>(v.data(), a, b, c);
}
template <class T>
layers::UView4<T, HostE> u4(std::vector<std::remove_const_t<T>>& v, int a, int b, int c, int d) {
  return layers::UView4<T, HostE>(v.data(), a, b, c, d);
}

struct Checked {
  std::string name;
  Vec* value;
  const Vec* grad;
  double grad_fill;  // what the gradient buffer held before backward (kParamGradFill or 0)
};

// Central differences of L = sum(w .* forward()) w.r.t. every element of every tensor in `checked`, with
// step `rel_step * max(1, |x|)`. A larger step suits functions linear in each checked tensor (convolutions):
// their central difference has no truncation error, and the round-off shrinks with the step.
inline void check_gradients(const std::string& context, const std::vector<Checked>& checked, const Vec& w,
                            const std::function<Vec()>& forward, double floor = 1e-3, double rel_step = 1e-6) {
  for (const Checked& c : checked) {
    int failures = 0;
    double worst = 0;
    for (std::size_t i = 0; i < c.value->size(); ++i) {
      double& x = (*c.value)[i];
      const double x0 = x, step = rel_step * std::max(1.0, std::abs(x0));
      x = x0 + step;
      const Vec out_plus = forward();
      x = x0 - step;
      const Vec out_minus = forward();
      x = x0;
      double diff = 0;
      for (std::size_t k = 0; k < w.size(); ++k) diff += w[k] * (out_plus[k] - out_minus[k]);
      const double fd = diff / (2 * step);
      const double an = (*c.grad)[i] - c.grad_fill;
      const double err = std::abs(fd - an) / std::max(floor, std::abs(fd) + std::abs(an));
      worst = std::max(worst, err);
      if (!(err < 1e-6) && failures++ < 5)
        ADD_FAILURE() << context << ": d" << c.name << "[" << i << "] analytic " << an << " vs finite difference "
                      << fd << " (relative error " << err << ")";
    }
    if (std::getenv("V1SYSID_FD_VERBOSE")) std::printf("%s d%s worst %.3g\n", context.c_str(), c.name.c_str(), worst);
    EXPECT_EQ(failures, 0) << context << ": " << failures << " of " << c.value->size() << " entries of d" << c.name
                           << " wrong; worst relative error " << worst;
  }
}

}  // namespace v1sysid::testing
