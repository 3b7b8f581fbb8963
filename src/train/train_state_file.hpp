// Files of resumable training states (train/train_state.hpp), HDF5, written under "<path>.partial-<pid>" and
// renamed when complete (h5::File::create), so a kill while saving leaves the previous state intact.
//
// Layout (format attribute "v1sysid-train-state", version 1; root attributes identity and schedule):
//   arena/{params, adam_m, adam_v}        float [size]      arena/adam_step          int64
//   snapshot/{params, adam_m, adam_v}     float [size]      snapshot/adam_step       int64   (when taken)
//   model/sample_counter                  uint64
//   batchers/<k>/{epoch int64 [rows], position, epochs int64, rng_state uint64}
//   schedule/<counter>                    the scalars of ScheduleState
//   schedule/curve/{iteration, step, train_loss, val_loss, learning_rate, val_correlation}   [checks]
#pragma once

#include "train/train_state.hpp"

#include <string>

namespace v1sysid {

constexpr int64_t kTrainStateFormatVersion = 1;

// Replaces `path` with `state`. A failure (a full disk included) throws and leaves the previous file.
void save_train_state(const std::string& path, const TrainState& state);
// Reads a state; IoError for an unreadable file, DataError naming the field for a missing or malformed one
// (the fix: remove the file to train from the start).
TrainState load_train_state(const std::string& path);

}  // namespace v1sysid
