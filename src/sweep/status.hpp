// `v1sysid status RESULTS`: what a sweep has done and is doing, read from its results file while the job writes
// it (read-only; a read that meets a file being changed is retried). Live rows (ResultsFile::write_running_row)
// give the running trials' counters, curves and heartbeats.
//
//   counts      finished (ok, diverged, failed), running, pending (a "running" row whose heartbeat has stopped is
//               counted as running and listed as stalled: its job died or hangs; the next run redoes it)
//   ETA         remaining work / ranks at work: pending trials x the mean time of the finished ones, plus what the
//               running ones still need of that mean; before any trial has finished, the running trials' rate
//               extrapolated to their max_iterations (trials/config), an upper bound (early stopping ends sooner)
//   best        per (architecture, data fraction): the best ok trial by its schedule's validation criterion (loss,
//               or correlation for the Lurz schedule), as `select` picks it
//   stalled     running trials whose heartbeat is older than stall_checks times their mean time per check (and
//               than 60 s)
#pragma once

#include "sweep/select.hpp"
#include "sweep/trial_result.hpp"

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace v1sysid {

struct StatusRow {
  int64_t trial = 0;
  std::string architecture, host;
  TrialStatus status = TrialStatus::pending;
  double data_fraction = 0, best_val_loss = 0, test_correlation = 0, wall_seconds = 0, heartbeat = 0;
  double best_val_correlation = std::numeric_limits<double>::quiet_NaN();  // Lurz schedule, results format 5 on
  int64_t iterations = 0, steps = 0, max_iterations = 0;
  int32_t rank = -1;
  std::vector<double> curve;  // the finite part of trials/val_curve
};

struct SweepBest {
  std::string architecture;
  double data_fraction = 0;
  int64_t trial = 0, ok_trials = 0;
  RankedBy ranked_by = RankedBy::validation_loss;
  double best_val_loss = 0, best_val_correlation = 0, test_correlation = 0;
};

struct SweepStatus {
  std::string path;
  double now = 0;  // Unix seconds when it was read
  int64_t total = 0, ok = 0, diverged = 0, failed = 0, pruned = 0, running = 0, pending = 0;
  int64_t ranks_working = 0;  // distinct (host, rank) of the running rows
  int64_t ranks_for_eta = 1;  // ranks_working, or the ranks the file was created with when none runs
  double eta_seconds = -1;    // -1: unknown (nothing finished or running yet)
  std::vector<SweepBest> best;
  std::vector<int64_t> stalled;
  std::vector<StatusRow> rows;
  int64_t finished() const { return ok + diverged + failed + pruned; }
};

// Reads `path` read-only (retrying a torn read up to 10 times); IoError/DataError naming the file otherwise.
SweepStatus read_sweep_status(const std::string& path, int stall_checks = 5);
std::string sweep_status_json(const SweepStatus& s);
// The summary, the best per architecture and fraction, stalled and running trials, and the validation curves of
// up to three best trials as a plot `plot_width` characters wide.
std::string sweep_status_text(const SweepStatus& s, int plot_width = 64);
// The same curves as an 800 x 500 PNG (no text: trial 1 blue, 2 orange, 3 green, as listed by the text; axes grey,
// x = check index, y = validation loss over the curves' range). Empty string when no trial has two checks yet.
std::string sweep_status_png(const SweepStatus& s);

}  // namespace v1sysid
