// Runs a sweep's unfinished trials across the ranks of a communicator with dynamic scheduling: a shared
// counter in an MPI window (MPI_Fetch_and_op) hands out the next unfinished trial to whichever rank is free, so
// no rank idles while trials remain and no rank is reserved for bookkeeping. Each finished trial is written
// to the results file at once by the rank that ran it.
#pragma once

#include "sweep/results_file.hpp"
#include "sweep/sweep_config.hpp"
#include "sweep/trial_result.hpp"

#include <mpi.h>

#include <functional>

namespace v1sysid {

// Where a trial in progress reports itself at every validation check (status "running", counters, the curve so
// far): the scheduler writes it into the trial's live row (ResultsFile::write_running_row, at most once a
// second) and returns true when the trial is to stop as "pruned" (the median stopping rule, PruningConfig).
using TrialProgress = std::function<bool(const TrialResult&)>;
// Runs one trial. Exceptions are recorded: DivergedError -> "diverged", any other -> "failed", except an
// EnvironmentError (full disk, I/O error), which leaves the trial pending for the next run.
using TrialRunner = std::function<TrialResult(const Trial&, const TrialProgress&)>;

struct SweepSummary {
  int64_t total = 0;            // trials in the table
  int64_t already_finished = 0; // finished before this run (resume)
  int64_t ran = 0;              // finished by this run, all ranks
  int64_t ok = 0, diverged = 0, failed = 0, pruned = 0;  // of those run now, all ranks
  bool stopped = false;         // a stop signal ended the run early
  std::string environment_error;  // non-empty: a rank met an EnvironmentError; its trial is still pending
  int64_t pending() const { return total - already_finished - ran; }
  double wall_seconds = 0;
};

// Collective over comm. Closes the results file at the end. on_recorded, when set, is called on the rank that ran a
// trial once its row is written (e.g. to remove the trial's resumable state).
// pruning: the median stopping rule for the trials' progress reports (off unless pruning.enabled).
SweepSummary run_sweep(MPI_Comm comm, const std::vector<Trial>& trials, ResultsFile& results, const TrialRunner& runner,
                       const std::function<void(const Trial&)>& on_recorded = {}, const PruningConfig& pruning = {});

// Which way a validation curve improves: the loss falls (Ecker's schedule), the correlation rises (Lurz's).
enum class CurveDirection { lower_is_better, higher_is_better };

// The median stopping rule: whether a trial whose validation curve so far is `curve` stops, given the curves of
// the finished ok trials of its architecture and data fraction (`peers`): its best value so far is worse than the
// median of the peers' best values by the same check.
bool median_rule_prunes(const PruningConfig& rule, const std::vector<double>& curve,
                        const std::vector<const std::vector<double>*>& peers, CurveDirection direction);

// A trial that trains nothing: it waits a configurable time and returns deterministic synthetic numbers, so
// scheduling and results I/O can be exercised at any rank count (`--dry-run`). While it waits it reports a
// synthetic check every 0.1 s to `progress` (live rows, `v1sysid status`).
TrialResult run_dry_trial(const SweepConfig& sweep, const Trial& trial, const TrialProgress& progress = {});

}  // namespace v1sysid
