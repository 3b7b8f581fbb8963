#include "sim/random.hpp"

#include "core/random.hpp"

#include <cmath>

namespace v1sysid::sim {

namespace {
constexpr double kPi = 3.14159265358979323846;
inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

uint64_t stream_key(uint64_t seed, uint64_t animal, Stream stream, uint64_t index) {
  // Each counter is added with its own odd constant before mixing, so (a, b) and (b, a) differ.
  uint64_t h = splitmix64_mix(seed + kSplitMix64Gamma);
  h = splitmix64_mix(h ^ (animal + 0xd1b54a32d192ed03ULL));
  h = splitmix64_mix(h ^ (static_cast<uint64_t>(stream) + 0x8cb92ba72f3d8dd7ULL));
  h = splitmix64_mix(h ^ (index + 0xabc98388fb8fac03ULL));
  return h;
}

Rng::Rng(uint64_t key) {
  // SplitMix64 sequence from the key fills the state (never all zero).
  uint64_t z = key;
  for (auto& s : m_s) {
    z += kSplitMix64Gamma;
    s = splitmix64_mix(z);
  }
}

uint64_t Rng::next() {
  const uint64_t result = rotl(m_s[1] * 5, 7) * 9;
  const uint64_t t = m_s[1] << 17;
  m_s[2] ^= m_s[0];
  m_s[3] ^= m_s[1];
  m_s[1] ^= m_s[2];
  m_s[0] ^= m_s[3];
  m_s[2] ^= t;
  m_s[3] = rotl(m_s[3], 45);
  return result;
}

double Rng::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
double Rng::uniform_open0() { return (static_cast<double>(next() >> 11) + 1.0) * 0x1.0p-53; }

double Rng::log_uniform(double lo, double hi) { return std::exp(uniform(std::log(lo), std::log(hi))); }

uint64_t Rng::below(uint64_t n) {
  // Rejection of the top partial block keeps x % n exactly uniform (plain 64-bit arithmetic, no __int128).
  const uint64_t threshold = (0 - n) % n;  // 2^64 mod n
  while (true) {
    const uint64_t x = next();
    if (x >= threshold) return x % n;
  }
}

double Rng::normal() {
  const double u1 = uniform_open0();
  const double u2 = uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * kPi * u2);
}

int64_t Rng::poisson(double mean) {
  if (!(mean > 0)) return 0;
  if (mean < 10) {
    // Count uniforms until their product falls below exp(-mean).
    const double limit = std::exp(-mean);
    int64_t k = 0;
    double product = uniform_open0();
    while (product > limit) {
      ++k;
      product *= uniform_open0();
    }
    return k;
  }
  // PTRS: transformed rejection with squeeze, W. Hoermann, Insurance: Mathematics and Economics 12 (1993).
  const double smu = std::sqrt(mean);
  const double b = 0.931 + 2.53 * smu;
  const double a = -0.059 + 0.02483 * b;
  const double inv_alpha = 1.1239 + 1.1328 / (b - 3.4);
  const double v_r = 0.9277 - 3.6224 / (b - 2);
  const double log_mean = std::log(mean);
  while (true) {
    const double u = uniform() - 0.5;
    const double v = uniform_open0();
    const double us = 0.5 - std::fabs(u);
    const double k = std::floor((2 * a / us + b) * u + mean + 0.43);
    if (us >= 0.07 && v <= v_r) return static_cast<int64_t>(k);
    if (k < 0 || (us < 0.013 && v > us)) continue;
    if (std::log(v) + std::log(inv_alpha) - std::log(a / (us * us) + b) <= -mean + k * log_mean - std::lgamma(k + 1)) {
      return static_cast<int64_t>(k);
    }
  }
}

double Rng::gamma(double shape) {
  if (shape < 1) {
    // Gamma(a) = Gamma(a + 1) * U^(1/a).
    return gamma(shape + 1) * std::pow(uniform_open0(), 1.0 / shape);
  }
  const double d = shape - 1.0 / 3.0;
  const double c = 1.0 / std::sqrt(9.0 * d);
  while (true) {
    double x, v;
    do {
      x = normal();
      v = 1.0 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const double u = uniform_open0();
    if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
    if (std::log(u) < 0.5 * x * x + d * (1.0 - v + std::log(v))) return d * v;
  }
}

}  // namespace v1sysid::sim
