// Minibatches of training rows as the reference draws them (reference-models.md §3.1, §3.3):
//  - the training tier is permuted once with the seed; data_fraction keeps the first
//    max(1, round(f * n_train)) rows of that fixed permutation (nested subsets for data-efficiency curves:
//    with one seed, the rows kept at f = 0.25 are a subset of those kept at f = 0.5);
//  - minibatches are consecutive slices of a shuffled epoch permutation of the kept rows; when fewer than
//    batch_size rows remain in the epoch, a new permutation is drawn (the remainder is skipped).
// When fewer rows than batch_size are kept, the batch is all kept rows (batch_size() says so).
#pragma once

#include "core/random.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace v1sysid {

// Where a Batcher stands (resumable training states, train/train_state.hpp): the current epoch's permutation,
// the position in it, the epochs started and the epoch generator's state. The kept rows are not part of it:
// they follow from the seed and data fraction, which the resumed run shares.
struct BatcherState {
  std::vector<int64_t> epoch;
  int64_t position = 0;
  int64_t epochs = 0;
  uint64_t rng_state = 0;
};

class Batcher {
 public:
  // train_rows: dataset rows of the training tier in file order.
  Batcher(const std::vector<int64_t>& train_rows, double data_fraction, int batch_size, uint64_t seed);
  // Rows this run trains on, in fixed-permutation order.
  const std::vector<int64_t>& rows() const { return m_rows; }
  int batch_size() const { return m_batch_size; }
  // The next minibatch of batch_size() rows; the reference stays valid until the next call.
  const std::vector<int64_t>& next();
  int64_t epochs_started() const { return m_epochs; }
  BatcherState state() const;
  // Continues from `s`; DataError (naming `origin`) when it is not a state of this batcher's rows.
  void restore(const BatcherState& s, const std::string& origin);

 private:
  void new_epoch();
  std::vector<int64_t> m_rows, m_epoch, m_batch;
  int m_batch_size;
  size_t m_position = 0;
  int64_t m_epochs = 0;
  SplitMix64 m_epoch_rng;
};

}  // namespace v1sysid
