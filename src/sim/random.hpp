// Counter-based random numbers for the digital V1.
//
// Every random quantity of a simulation is drawn from a generator whose seed is a hash of
// (config seed, animal, stream, index): a neuron's parameters from (seed, animal, kNeuronStream, neuron),
// a trial's shared gain and noise from (seed, animal, kTrialStream, trial), and so on. Results therefore do
// not depend on the order in which loops run, and any single trial can be re-simulated on its own.
//
// The generator is xoshiro256** (Blackman & Vigna 2018) seeded through SplitMix64; the samplers below are
// our own (not std:: distributions, whose algorithms differ between standard libraries), so a seed gives the
// same numbers with any compiler.
#pragma once

#include <cstdint>

namespace v1sysid::sim {

// Independent streams of one (seed, animal).
enum class Stream : uint64_t {
  neuron = 1,        // index: neuron; cell parameters
  cell_types = 2,    // index: 0; shuffle of the cell-type assignment
  images = 3,        // index: 0 train/validation pick, 1 test pick
  trial_order = 4,   // index: 0; presentation order
  trial = 5,         // index: trial (row); shared gain and response noise of that trial
  retinotopy = 6,    // index: neuron; cortical jitter and depth
  cell_library = 7,  // index: neuron; base and modulators of a deep-library cell
  noise = 8,         // index: neuron; gain-factor loadings and private gain variance (noise.hpp)
};

// Hash of the four counters that name a stream; distinct tuples give unrelated seeds.
uint64_t stream_key(uint64_t seed, uint64_t animal, Stream stream, uint64_t index);

class Rng {
 public:
  explicit Rng(uint64_t key);
  Rng(uint64_t seed, uint64_t animal, Stream stream, uint64_t index) : Rng(stream_key(seed, animal, stream, index)) {}

  uint64_t next();
  // Uniform in [0, 1) with 53 random bits.
  double uniform();
  // Uniform in (0, 1]: safe to take the log of.
  double uniform_open0();
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // exp(uniform(log lo, log hi)); lo, hi > 0.
  double log_uniform(double lo, double hi);
  // Uniform integer in [0, n), n > 0 (unbiased: rejection below 2^64 mod n, then modulo).
  uint64_t below(uint64_t n);
  // Standard normal (Box-Muller, one value per call so that the stream position is simple).
  double normal();
  // Poisson(mean): multiplication method below 10, PTRS transformed rejection (Hoermann 1993) above.
  int64_t poisson(double mean);
  // Gamma(shape, scale = 1): Marsaglia & Tsang 2000; shape < 1 through the boost U^(1/shape).
  double gamma(double shape);

 private:
  uint64_t m_s[4];
};

}  // namespace v1sysid::sim
