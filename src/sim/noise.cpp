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

double gain_second_moment(const NoiseParameters& p, const NeuronNoise* neuron) {
  double shared = p.shared_gain_sd * p.shared_gain_sd;  // s^2 |w|^2 of the legacy gain (|w| = 1)
  if (neuron != nullptr && p.gain_factors > 0) {
    double w2 = 0;
    for (double w : neuron->loadings) w2 += w * w;
    shared = p.gain_log_sd * p.gain_log_sd * w2;
  }
  const double private_part = neuron != nullptr && p.private_gain ? 1.0 + neuron->private_gain_variance : 1.0;
  return std::exp(shared) * private_part;
}

double factor_gain(double log_sd, const double* loadings, const double* latents, int k) {
  double dot = 0, w2 = 0;
  for (int i = 0; i < k; ++i) {
    dot += loadings[i] * latents[i];
    w2 += loadings[i] * loadings[i];
  }
  return std::exp(log_sd * dot - 0.5 * log_sd * log_sd * w2);
}

double trial_variance(const NoiseParameters& p, double rate) {
  return trial_variance(p, rate, std::exp(p.shared_gain_sd * p.shared_gain_sd));
}

double trial_variance(const NoiseParameters& p, double rate, double second_moment) {
  const double l2 = rate * rate;
  // E_q[Var(r | q lambda)]: the linear terms keep E[q] = 1, the quadratic ones pick up E[q^2].
  double within = 0;
  switch (p.model) {
    case NoiseModel::poisson: within = rate; break;
    case NoiseModel::negative_binomial: within = rate + l2 * second_moment / p.nb_r; break;
    case NoiseModel::zero_inflated_gamma:
      within = l2 * second_moment * ((1.0 + 1.0 / p.zig_shape) / (1.0 - p.zig_zero_probability) - 1.0);
      break;
  }
  return within + l2 * (second_moment - 1.0);  // + Var_q(q lambda)
}

void simulate_trial(const NoiseParameters& p, uint64_t seed, uint64_t animal, uint64_t trial, const float* rates,
                    int64_t n, float* responses) {
  Rng rng(seed, animal, Stream::trial, trial);
  const double gain = draw_shared_gain(p, rng);
  for (int64_t j = 0; j < n; ++j) responses[j] = static_cast<float>(draw_response(p, gain * rates[j], rng));
}

void simulate_trial(const NoiseParameters& p, const std::vector<NeuronNoise>& neurons, uint64_t seed, uint64_t animal,
                    uint64_t trial, const float* rates, int64_t n, float* responses, float* latents) {
  if (!per_neuron_noise(p)) {
    simulate_trial(p, seed, animal, trial, rates, n, responses);
    return;
  }
  if (static_cast<int64_t>(neurons.size()) != n) {
    throw ShapeError("simulate_trial: " + std::to_string(neurons.size()) + " neurons' noise parameters for " +
                         std::to_string(n) + " rates",
                     "noise", "draw the noise parameters of every neuron (draw_neuron_noise)");
  }
  Rng rng(seed, animal, Stream::trial, trial);
  const int k = p.gain_factors;
  std::vector<double> z(static_cast<size_t>(k));
  double legacy_gain = 1;
  if (k == 0) {
    legacy_gain = draw_shared_gain(p, rng);
  } else {
    for (double& v : z) v = rng.normal();
  }
  if (latents != nullptr) {
    for (int i = 0; i < k; ++i) latents[i] = static_cast<float>(z[static_cast<size_t>(i)]);
  }
  for (int64_t j = 0; j < n; ++j) {
    const NeuronNoise& nn = neurons[static_cast<size_t>(j)];
    double gain = k == 0 ? legacy_gain : factor_gain(p.gain_log_sd, nn.loadings.data(), z.data(), k);
    const double v = nn.private_gain_variance;
    if (p.private_gain && v > 0) gain *= rng.gamma(1.0 / v) * v;  // Gamma(shape 1/v, scale v): mean 1, var v
    responses[j] = static_cast<float>(draw_response(p, gain * rates[j], rng));
  }
}

NeuronNoise draw_neuron_noise(const NeuronNoiseDistribution& d, uint64_t seed, uint64_t animal, uint64_t neuron) {
  Rng rng(seed, animal, Stream::noise, neuron);
  NeuronNoise out;
  if (d.gain_factors > 0) {
    // A direction in latent space: u ~ N(mean, sd^2 I), normalised; redrawn in the (measure-zero) case u = 0.
    double norm = 0;
    while (!(norm > 0)) {
      out.loadings.assign(static_cast<size_t>(d.gain_factors), 0.0);
      norm = 0;
      for (int i = 0; i < d.gain_factors; ++i) {
        const double mean = i < static_cast<int>(d.loading_mean.size()) ? d.loading_mean[static_cast<size_t>(i)] : 0.0;
        const double u = mean + d.loading_sd * rng.normal();
        out.loadings[static_cast<size_t>(i)] = u;
        norm += u * u;
      }
      norm = std::sqrt(norm);
    }
    for (double& w : out.loadings) w /= norm;
  }
  if (d.private_gain) {
    out.private_gain_variance = d.private_variance_median * std::exp(d.private_variance_log_sd * rng.normal());
  }
  return out;
}

Ceiling analytic_ceiling(const NoiseParameters& p, const double* test_rates, int64_t m, int repeats) {
  return analytic_ceiling(p, test_rates, m, repeats, std::exp(p.shared_gain_sd * p.shared_gain_sd));
}

Ceiling analytic_ceiling(const NoiseParameters& p, const double* test_rates, int64_t m, int repeats,
                         double gain_second_moment) {
  Ceiling c;
  if (m <= 0) return c;
  double mean = 0;
  for (int64_t i = 0; i < m; ++i) mean += test_rates[i];
  mean /= static_cast<double>(m);
  for (int64_t i = 0; i < m; ++i) {
    const double d = test_rates[i] - mean;
    c.signal_variance += d * d;
    c.noise_variance += trial_variance(p, test_rates[i], gain_second_moment);
  }
  c.signal_variance /= static_cast<double>(m > 1 ? m - 1 : 1);  // ddof 1, see noise.hpp
  c.noise_variance /= static_cast<double>(m);
  const double s = c.signal_variance, nv = c.noise_variance;
  c.fev = s + nv > 0 ? s / (s + nv) : 0;
  c.ceiling_correlation = s > 0 ? std::sqrt(s / (s + nv / repeats)) : 0;
  return c;
}

}  // namespace v1sysid::sim
