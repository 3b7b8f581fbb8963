#include "train/batcher.hpp"

#include "core/error.hpp"

#include <algorithm>
#include <cmath>

namespace v1sysid {

namespace {
constexpr uint64_t kStreamDataPermutation = 1;
constexpr uint64_t kStreamEpochs = 2;
}  // namespace

Batcher::Batcher(const std::vector<int64_t>& train_rows, double data_fraction, int batch_size, uint64_t seed)
    : m_epoch_rng(seed, kStreamEpochs) {
  if (train_rows.empty())
    throw DataError("the training tier is empty", "the dataset", "give a dataset with tier 'train' rows");
  if (!(data_fraction > 0 && data_fraction <= 1))
    throw ConfigError("data_fraction must be in (0, 1]", "train.data_fraction", "fix the value");
  if (batch_size < 1) throw ConfigError("batch_size must be positive", "train.batch_size", "fix the value");
  m_rows = train_rows;
  SplitMix64 permutation_rng(seed, kStreamDataPermutation);
  shuffle_in_place(m_rows, permutation_rng);
  const auto n = static_cast<double>(m_rows.size());
  const auto kept = std::max<int64_t>(1, static_cast<int64_t>(std::llround(data_fraction * n)));
  m_rows.resize(static_cast<size_t>(std::min<int64_t>(kept, static_cast<int64_t>(m_rows.size()))));
  m_batch_size = static_cast<int>(std::min<size_t>(static_cast<size_t>(batch_size), m_rows.size()));
  m_epoch = m_rows;
  m_batch.resize(static_cast<size_t>(m_batch_size));
  m_position = m_epoch.size();  // forces a permutation before the first batch
}

void Batcher::new_epoch() {
  shuffle_in_place(m_epoch, m_epoch_rng);
  m_position = 0;
  ++m_epochs;
}

const std::vector<int64_t>& Batcher::next() {
  if (m_position + static_cast<size_t>(m_batch_size) > m_epoch.size()) new_epoch();
  std::copy_n(m_epoch.begin() + static_cast<std::ptrdiff_t>(m_position), m_batch_size, m_batch.begin());
  m_position += static_cast<size_t>(m_batch_size);
  return m_batch;
}

BatcherState Batcher::state() const {
  return BatcherState{m_epoch, static_cast<int64_t>(m_position), m_epochs, m_epoch_rng.state()};
}

void Batcher::restore(const BatcherState& s, const std::string& origin) {
  std::vector<int64_t> sorted_state = s.epoch, sorted_rows = m_rows;
  std::sort(sorted_state.begin(), sorted_state.end());
  std::sort(sorted_rows.begin(), sorted_rows.end());
  if (sorted_state != sorted_rows || s.position < 0 || s.position > static_cast<int64_t>(s.epoch.size()) || s.epochs < 0)
    throw DataError("the minibatch state is not one of this run's training rows (" + std::to_string(s.epoch.size()) +
                        " rows at position " + std::to_string(s.position) + ", the run keeps " +
                        std::to_string(m_rows.size()) + ")",
                    origin, "remove the state file to train from the start");
  m_epoch = s.epoch;
  m_position = static_cast<size_t>(s.position);
  m_epochs = s.epochs;
  m_epoch_rng = SplitMix64::from_state(s.rng_state);
}

}  // namespace v1sysid
