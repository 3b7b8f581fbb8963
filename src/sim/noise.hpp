// Trial-to-trial variability of the digital V1 and its analytic moments.
//
// A trial t shows one image. Every neuron j has a noise-free rate lambda_j on that image (neuron_model.hpp).
// The trial scales it by a gain q_tj with E[q] = 1 and draws the response given mu = q_tj lambda_j from the
// observation model. The gain is the product of a shared and a private part, q_tj = g_tj h_tj:
//   shared, legacy (noise.shared_gain_sd):  g_t = exp(s z_t - s^2 / 2), z_t ~ N(0, 1), the same for all neurons
//   shared, latent factors (noise.gain_factors, k of them):
//       z_t ~ N(0, I_k) per trial (stored in the dataset as `behavior`), w_j in R^k per neuron (gt/gain_loadings),
//       g_tj = exp(s w_j . z_t - s^2 |w_j|^2 / 2),  s = gain_factors.log_sd
//       so log g_tj ~ N(-s^2 |w_j|^2 / 2, s^2 |w_j|^2), E[g] = 1, E[g^2] = e^{s^2 |w_j|^2}; w_j is a unit vector,
//       so every neuron's gain has log-SD s and cov(log g_i, log g_j) = s^2 w_i . w_j (noise correlations).
//       Physiology: arousal, locomotion and attention-like state variables scale the responses of many V1 cells
//       together, each with its own sign and strength (Niell & Stryker 2010; Stringer et al. 2019), which is
//       why neuralpredictors datasets carry behaviour (pupil, running) next to the responses.
//   private (noise.private_gain): h_tj ~ Gamma(shape 1 / v_j, scale v_j), independent across neurons and trials,
//       E[h] = 1, Var(h) = v_j; v_j drawn per neuron (log-normal: v_j = median exp(log_sd e_j), e_j ~ N(0, 1)).
//       Physiology: the modulated Poisson model of Goris, Movshon & Simoncelli 2014 (Nat Neurosci 17:858): each
//       neuron's excitability fluctuates from trial to trial by a gamma-distributed gain whose variance differs
//       across neurons by orders of magnitude; with Poisson observations the neuron's counts are negative
//       binomial with dispersion 1 / v_j. In two-photon data the per-neuron spread of reliability also reflects
//       indicator expression and the neuropil, which likewise scale each neuron's variability on its own.
// and then each response independently given mu = q lambda_j:
//   poisson              r ~ Poisson(mu)                                  Var(r | mu) = mu
//   negative_binomial    r ~ Poisson(Gamma(shape nb_r, mean mu))          Var(r | mu) = mu + mu^2 / nb_r
//   zero_inflated_gamma  r = 0 with probability p0, else Gamma(shape k, mean mu / (1 - p0))
//                                                                         Var(r | mu) = mu^2 ((1 + 1/k) / (1 - p0) - 1)
// so E[r | lambda] = lambda for every model. With M_j = E[q^2] = E[g^2] E[h^2] = e^{s^2 |w_j|^2} (1 + v_j) (legacy
// gain: |w_j| = 1, s = shared_gain_sd; no factors: e^0 = 1), the trial-to-trial variance of neuron j on one image
// is (law of total variance over q)
//     V(lambda) = E_q[Var(r | q lambda)] + Var_q(q lambda)
//   poisson:              lambda + lambda^2 (M_j - 1)
//   negative_binomial:    lambda + lambda^2 M_j / nb_r + lambda^2 (M_j - 1)
//   zero_inflated_gamma:  lambda^2 M_j (1 + 1/k) / (1 - p0) - lambda^2
// Different trials have independent gains, so the mean of R repeats has variance V / R. The shared gain also
// makes responses of different neurons covary (noise correlations); the per-neuron ceilings below only need V.
//
// Random streams: without gain factors and private gains, a trial draws one normal (the legacy gain), then the
// responses (unchanged files). With either, it draws max(k, 1) normals (the k latents, or the legacy gain when
// k = 0), then per neuron the private gain (when v_j > 0) and the response.
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
  double shared_gain_sd = 0;  // legacy single shared gain (loading 1 for every neuron); 0 with gain factors
  int gain_factors = 0;       // k latent factors of the shared gain (0: none)
  double gain_log_sd = 0;     // s of the factors
  bool private_gain = false;  // private gains drawn (v_j may still be 0 for some neurons)
};

// Per-neuron noise parameters (drawn by draw_neuron_noise; gt/gain_loadings, gt/private_gain_variance).
struct NeuronNoise {
  std::vector<double> loadings;      // (k) w_j, unit norm; empty without gain factors
  double private_gain_variance = 0;  // v_j
};

// Whether trials use the per-neuron path (gain factors or private gains) rather than the legacy one.
inline bool per_neuron_noise(const NoiseParameters& p) { return p.gain_factors > 0 || p.private_gain; }

// M_j = E[q_tj^2] of one neuron (noise.hpp top); `neuron` may be null (legacy gain, no private part).
double gain_second_moment(const NoiseParameters& p, const NeuronNoise* neuron);
// The gain g_tj of the latent factors for latents z (k of them) and loadings w (k).
double factor_gain(double log_sd, const double* loadings, const double* latents, int k);

// The shared gain of one trial, drawn from the trial's generator (always consumes one normal, even when
// shared_gain_sd is 0, so that the rest of the trial's stream does not depend on the setting).
double draw_shared_gain(const NoiseParameters& p, Rng& rng);
// One response given its mean mu = g * lambda (>= 0).
double draw_response(const NoiseParameters& p, double mean, Rng& rng);
// Var(r | mu) for a fixed mean (no shared gain).
double conditional_variance(const NoiseParameters& p, double mean);
// V(lambda): the trial-to-trial variance of a neuron with noise-free rate lambda and gain second moment M
// (gain_second_moment); without M, the legacy shared gain alone (M = e^{shared_gain_sd^2}).
double trial_variance(const NoiseParameters& p, double rate, double gain_second_moment);
double trial_variance(const NoiseParameters& p, double rate);

// Responses of all neurons in trial `trial` of animal `animal`: a pure function of its arguments.
//   rates: (n) noise-free rates of the trial's image; responses: (n) output
//   neurons: (n) per-neuron noise, required when per_neuron_noise(p); latents: (gain_factors) output z_t, or null
void simulate_trial(const NoiseParameters& p, uint64_t seed, uint64_t animal, uint64_t trial, const float* rates,
                    int64_t n, float* responses);
void simulate_trial(const NoiseParameters& p, const std::vector<NeuronNoise>& neurons, uint64_t seed, uint64_t animal,
                    uint64_t trial, const float* rates, int64_t n, float* responses, float* latents);

// Per-neuron noise parameters of neuron j of an animal, drawn from (seed, animal, Stream::noise, j):
//   loadings u ~ N(loading_mean, loading_sd^2 I) per component, w = u / |u|; v_j = median exp(log_sd e).
struct NeuronNoiseDistribution {
  int gain_factors = 0;
  std::vector<double> loading_mean;  // (gain_factors)
  double loading_sd = 1;
  bool private_gain = false;
  double private_variance_median = 0;
  double private_variance_log_sd = 0;
};
NeuronNoise draw_neuron_noise(const NeuronNoiseDistribution& d, uint64_t seed, uint64_t animal, uint64_t neuron);

// Analytic ceilings of one neuron from its noise-free rates on the test images (test_rates, length m):
//   S = 1/(m-1) sum_i (lambda_i - mean lambda)^2    signal variance over the test images (ddof 1)
//   N = (1/m) sum_i V(lambda_i)                     mean trial-to-trial variance (V with the neuron's M_j)
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
Ceiling analytic_ceiling(const NoiseParameters& p, const double* test_rates, int64_t m, int repeats,
                         double gain_second_moment);

}  // namespace v1sysid::sim
