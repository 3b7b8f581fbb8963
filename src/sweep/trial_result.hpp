// What one trial of a sweep produces; one row of results.h5 trials/.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace v1sysid {

struct TrialResult {
  std::string status = "failed";  // ok | diverged | failed; "running" for the live row of a trial in progress
                                  // ("pending" only marks rows not yet written)
  std::string message;
  double best_val_loss = std::numeric_limits<double>::quiet_NaN();
  double test_correlation = std::numeric_limits<double>::quiet_NaN();
  double feve = std::numeric_limits<double>::quiet_NaN();
  double fraction_oracle = std::numeric_limits<double>::quiet_NaN();
  int64_t iterations = 0;  // the schedule's counter at the end (TrainResult::iterations)
  int64_t steps = 0;       // optimiser steps taken (TrainResult::steps)
  double wall_seconds = 0;
  std::vector<double> val_curve;           // validation loss at every check (so far, in a live row)           // validation loss at every check
  std::vector<float> neuron_correlation;   // [N] per-neuron test correlation
};

}  // namespace v1sysid
