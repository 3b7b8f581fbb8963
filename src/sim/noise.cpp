#include "sim/noise.hpp"

#include "core/error.hpp"

#include <cmath>

namespace v1sysid::sim {

NoiseModel parse_noise_model(const std::string& name) {
  if (name == "poisson") return NoiseModel::poisson;
  if (name == "negative_binomial") return NoiseModel::negative_binomial;
  if (name == "zero_inflated_gamma") return NoiseModel::zero_inflated_gamma;
  throw ConfigError("unknown noise model '" + name + "'", "noise.model",
                    "use poisson, negative_binomial or zero_inflated_gamma");
}

const char* noise_model_name(NoiseModel m) {
  switch (m) {
    case NoiseModel::poisson: return "poisson";
    case NoiseModel::negative_binomial: return "negative_binomial";
    case NoiseModel::zero_inflated_gamma: return "zero_inflated_gamma";
  }
  return "?";
}

double draw_shared_gain(const NoiseParameters& p, Rng& rng) {
  const double z = rng.normal();
  const double s = p.shared_gain_sd;
  return s > 0 ? std::exp(s * z - 0.5 * s * s) : 1.0;
}

double draw_response(const NoiseParameters& p, double mean, Rng& rng) {
  if (!(mean > 0)) return 0;
  switch (p.model) {
    case NoiseModel::poisson:
      return static_cast<double>(rng.poisson(mean));
    case NoiseModel::negative_binomial:
      // Gamma-Poisson mixture: the Poisson mean is Gamma(shape r, scale mean / r).
      return static_cast<double>(rng.poisson(rng.gamma(p.nb_r) * mean / p.nb_r));
    case NoiseModel::zero_inflated_gamma: {
      if (rng.uniform() < p.zig_zero_probability) return 0;
      const double nonzero_mean = mean / (1.0 - p.zig_zero_probability);
      return rng.gamma(p.zig_shape) * nonzero_mean / p.zig_shape;
    }
  }
  return 0;
}

double conditional_variance(const NoiseParameters& p, double mean) {
  switch (p.model) {
    case NoiseModel::poisson: return mean;
    case NoiseModel::negative_binomial: return mean + mean * mean / p.nb_r;
    case NoiseModel::zero_inflated_gamma:
      return mean * mean * ((1.0 + 1.0 / p.zig_shape) / (1.0 - p.zig_zero_probability) - 1.0);
  }
  return 0;
}

double trial_variance(const NoiseParameters& p, double rate) {
  const double second_moment = std::exp(p.shared_gain_sd * p.shared_gain_sd);  // E[g^2]
  const double l2 = rate * rate;
  // E_g[Var(r | g lambda)]: the linear terms keep E[g] = 1, the quadratic ones pick up E[g^2].
  double within = 0;
  switch (p.model) {
    case NoiseModel::poisson: within = rate; break;
    case NoiseModel::negative_binomial: within = rate + l2 * second_moment / p.nb_r; break;
    case NoiseModel::zero_inflated_gamma:
      within = l2 * second_moment * ((1.0 + 1.0 / p.zig_shape) / (1.0 - p.zig_zero_probability) - 1.0);
      break;
  }
  return within + l2 * (second_moment - 1.0);  // + Var_g(g lambda)
}

void simulate_trial(const NoiseParameters& p, uint64_t seed, uint64_t animal, uint64_t trial, const float* rates,
                    int64_t n, float* responses) {
  Rng rng(seed, animal, Stream::trial, trial);
  const double gain = draw_shared_gain(p, rng);
  for (int64_t j = 0; j < n; ++j) responses[j] = static_cast<float>(draw_response(p, gain * rates[j], rng));
}

Ceiling analytic_ceiling(const NoiseParameters& p, const double* test_rates, int64_t m, int repeats) {
  Ceiling c;
  if (m <= 0) return c;
  double mean = 0;
  for (int64_t i = 0; i < m; ++i) mean += test_rates[i];
  mean /= static_cast<double>(m);
  for (int64_t i = 0; i < m; ++i) {
    const double d = test_rates[i] - mean;
    c.signal_variance += d * d;
    c.noise_variance += trial_variance(p, test_rates[i]);
  }
  c.signal_variance /= static_cast<double>(m > 1 ? m - 1 : 1);  // ddof 1, see noise.hpp
  c.noise_variance /= static_cast<double>(m);
  const double s = c.signal_variance, nv = c.noise_variance;
  c.fev = s + nv > 0 ? s / (s + nv) : 0;
  c.ceiling_correlation = s > 0 ? std::sqrt(s / (s + nv / repeats)) : 0;
  return c;
}

}  // namespace v1sysid::sim
