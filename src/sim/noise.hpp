// Trial-to-trial variability of the digital V1 and its analytic moments.
//
// A trial t shows one image. Every neuron j has a noise-free rate lambda_j on that image (neuron_model.hpp).
// The trial first draws a gain shared by all neurons,
//     g_t = exp(s z - s^2 / 2),  z ~ N(0, 1),  s = shared_gain_sd      (log-normal, E[g] = 1, E[g^2] = e^{s^2})
// and then each response independently given mu = g_t lambda_j:
//   poisson              r ~ Poisson(mu)                                  Var(r | mu) = mu
//   negative_binomial    r ~ Poisson(Gamma(shape nb_r, mean mu))          Var(r | mu) = mu + mu^2 / nb_r
//   zero_inflated_gamma  r = 0 with probability p0, else Gamma(shape k, mean mu / (1 - p0))
//                                                                         Var(r | mu) = mu^2 ((1 + 1/k) / (1 - p0) - 1)
// so E[r | lambda] = lambda for every model, and the trial-to-trial variance of one neuron on one image is
// (law of total variance over g)
//     V(lambda) = E_g[Var(r | g lambda)] + Var_g(g lambda)
//   poisson:              lambda + lambda^2 (e^{s^2} - 1)
//   negative_binomial:    lambda + lambda^2 e^{s^2} / nb_r + lambda^2 (e^{s^2} - 1)
//   zero_inflated_gamma:  lambda^2 e^{s^2} (1 + 1/k) / (1 - p0) - lambda^2
// The shared gain also makes responses of different neurons covary (noise correlations); the per-neuron
// ceilings below only need V.
#pragma once

#include "sim/random.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace v1sysid::sim {

enum class NoiseModel { poisson, negative_binomial, zero_inflated_gamma };
NoiseModel parse_noise_model(const std::string& name);  // names as in the config; throws ConfigError
const char* noise_model_name(NoiseModel m);

struct NoiseParameters {
  NoiseModel model = NoiseModel::poisson;
  double nb_r = 4;
  double zig_zero_probability = 0.3;
  double zig_shape = 2;
  double shared_gain_sd = 0;
};

// The shared gain of one trial, drawn from the trial's generator (always consumes one normal, even when
// shared_gain_sd is 0, so that the rest of the trial's stream does not depend on the setting).
double draw_shared_gain(const NoiseParameters& p, Rng& rng);
// One response given its mean mu = g * lambda (>= 0).
double draw_response(const NoiseParameters& p, double mean, Rng& rng);
// Var(r | mu) for a fixed mean (no shared gain).
double conditional_variance(const NoiseParameters& p, double mean);
// V(lambda): the trial-to-trial variance of a neuron with noise-free rate lambda, shared gain included.
double trial_variance(const NoiseParameters& p, double rate);

// Responses of all neurons in trial `trial` of animal `animal`: a pure function of its arguments.
//   rates: (n) noise-free rates of the trial's image; responses: (n) output
void simulate_trial(const NoiseParameters& p, uint64_t seed, uint64_t animal, uint64_t trial, const float* rates,
                    int64_t n, float* responses);

// Analytic ceilings of one neuron from its noise-free rates on the test images (test_rates, length m):
//   S = 1/(m-1) sum_i (lambda_i - mean lambda)^2    signal variance over the test images (ddof 1)
//   N = (1/m) sum_i V(lambda_i)                     mean trial-to-trial variance
//   fev                 = S / (S + N)               fraction of explainable variance of a single trial
//   ceiling_correlation = sqrt(S / (S + N / R))     expected corr(lambda, mean of R repeats) over the images
// ddof 1 because the sample correlation over the m images removes the mean of the noise too: the noise
// part of the variance of the repeat means across images is (m-1)/m N/R in expectation, and
// S_ddof1 / (S_ddof1 + N/R) = S_ddof0 / (S_ddof0 + (m-1)/m N/R). What is left is the O(1/m) bias of a sample
// correlation (E[1/sqrt(var)] > 1/sqrt(E[var])), a few thousandths for 100 images (tests/test_sim.cpp).
struct Ceiling {
  double signal_variance = 0;
  double noise_variance = 0;
  double fev = 0;
  double ceiling_correlation = 0;
};
Ceiling analytic_ceiling(const NoiseParameters& p, const double* test_rates, int64_t m, int repeats);

}  // namespace v1sysid::sim
