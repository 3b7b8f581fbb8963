// Small, portable random numbers: the one SplitMix64 mix that every seeded draw of the project goes through
// (host and device: sweep draws, the simulator's stream keys, photo selection, the Gaussian readout's noise),
// and the host generator of a training run (data permutations, minibatch order, parameter initialisation).
// std::shuffle and std::normal_distribution differ between standard libraries, so a seed would not reproduce a
// run across machines; these do (pure integer arithmetic plus IEEE double operations).
#pragma once

#include <Kokkos_Core.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

namespace v1sysid {

// The Weyl increment of SplitMix64 (2^64 / golden ratio, odd).
constexpr uint64_t kSplitMix64Gamma = 0x9E3779B97F4A7C15ull;

// The SplitMix64 finaliser (Steele, Lea, Flood 2014; constants of Stafford's "Mix13"): a bijection of 64-bit
// words whose outputs pass as independent for distinct inputs. Callable in device kernels.
KOKKOS_INLINE_FUNCTION constexpr uint64_t splitmix64_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// SplitMix64 (Steele, Lea, Flood 2014): a 64-bit state advanced by a Weyl constant and mixed.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : m_state(seed) {}
  // An independent stream for (seed, stream): e.g. stream 1 = data permutation, 2 = minibatches, 3 = init.
  SplitMix64(uint64_t seed, uint64_t stream) : m_state(seed) {
    m_state = next() ^ (stream * 0xD1B54A32D192ED03ull);
  }
  // The whole generator state, for resumable training states (train/train_state.hpp).
  uint64_t state() const { return m_state; }
  static SplitMix64 from_state(uint64_t state) {
    SplitMix64 r(0);
    r.m_state = state;
    return r;
  }
  uint64_t next() { return splitmix64_mix(m_state += kSplitMix64Gamma); }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  // Uniform integer in [0, n) without modulo bias (rejection of the incomplete last block).
  uint64_t below(uint64_t n) {
    const uint64_t limit = ~uint64_t(0) - (~uint64_t(0) % n);
    uint64_t x;
    do x = next(); while (x >= limit);
    return x % n;
  }
  // Standard normal by Box-Muller (one value per call; the second is discarded for simplicity).
  double normal() {
    double u1 = uniform();
    while (u1 <= 0.0) u1 = uniform();
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  // Normal with standard deviation sd truncated at 2 sd by redrawing, as tf.truncated_normal.
  double truncated_normal(double sd) {
    double x;
    do x = normal(); while (std::fabs(x) > 2.0);
    return x * sd;
  }

 private:
  uint64_t m_state;
};

// Fisher-Yates shuffle in place.
template <class T>
void shuffle_in_place(std::vector<T>& v, SplitMix64& rng) {
  for (size_t i = v.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(rng.below(i));
    std::swap(v[i - 1], v[j]);
  }
}

}  // namespace v1sysid
