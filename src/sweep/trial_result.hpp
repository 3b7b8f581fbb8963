// What one trial of a sweep produces; one row of results.h5 trials/.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace v1sysid {

// The state of one row of results.h5 trials/. Spelled in the file as status_name gives (docs/formats.md).
enum class TrialStatus {
  pending,   // not started, or left unfinished by a run (rows are created pending)
  running,   // the live row of a trial in progress (or of one whose run died: unfinished)
  ok,        // finished
  diverged,  // finished: the loss became NaN or infinite
  failed,    // finished: an error ended the trial (the message says which)
  pruned,    // finished: stopped by the median stopping rule
  damaged,   // read only, never stored: a finished row whose checksum does not match (run again)
};

// The one spelling of each status.
std::string_view status_name(TrialStatus status);
// The status spelled `name`, or nothing for a spelling no v1sysid writes.
std::optional<TrialStatus> parse_status(std::string_view name);
// The status a row of `file` spells in trials/status; a spelling no v1sysid writes is a DataError naming the row.
TrialStatus stored_status(std::string_view spelled, int64_t row, const std::string& file);
// ok, diverged, failed and pruned rows are finished (a rerun leaves them); pending, running and damaged are not.
bool is_finished(TrialStatus status);

struct TrialResult {
  TrialStatus status = TrialStatus::failed;  // running for the live row of a trial in progress
  std::string message;
  double best_val_loss = std::numeric_limits<double>::quiet_NaN();
  // Lurz schedule: the validation correlation of the best epoch, the criterion that schedule (and `select`) ranks
  // by; NaN for Ecker's schedule, which stops on the validation loss.
  double best_val_correlation = std::numeric_limits<double>::quiet_NaN();
  double test_correlation = std::numeric_limits<double>::quiet_NaN();
  double feve = std::numeric_limits<double>::quiet_NaN();
  double fraction_oracle = std::numeric_limits<double>::quiet_NaN();
  int64_t iterations = 0;  // the schedule's counter at the end (TrainResult::iterations)
  int64_t steps = 0;       // optimiser steps taken (TrainResult::steps)
  double wall_seconds = 0;
  std::vector<double> val_curve;          // validation loss at every check (so far, in a live row)
  // Lurz schedule: the validation correlation at every check (its own criterion; empty for Ecker's schedule)
  std::vector<double> val_correlation_curve;
  std::vector<float> neuron_correlation;  // [N] per-neuron test correlation
};

}  // namespace v1sysid
