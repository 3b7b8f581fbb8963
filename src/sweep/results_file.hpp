// results.h5: one parallel-HDF5 file holding every trial of a sweep (file contract in docs/formats.md).
//
// Crash safety: rank 0 alone creates the file and all its fixed-size datasets (contiguous, allocated early,
// filled with NaN / "pending") under a partial name, checks that every byte reached the disk and renames it, so
// a file under the final name always has complete metadata, and a full disk fails on rank 0 before any rank
// opens the file (every rank then reports the same error). Afterwards ranks only overwrite raw rows with
// independent MPI-IO writes, which never touch HDF5 metadata; a row's checksum and then its status are written
// last. A job killed at any moment therefore leaves a file that h5py can read, in which every row is either
// complete (status ok/diverged/failed, checksum matching) or "pending", and a rerun redoes exactly the pending
// rows (and any finished row whose checksum no longer matches).
#pragma once

#include "io/h5.hpp"
#include "sweep/sweep_config.hpp"
#include "sweep/trial_result.hpp"

#include <mpi.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace v1sysid {

struct ResultsLayout {
  int64_t n_trials = 0;
  int64_t max_checks = 0;   // width of trials/val_curve
  int64_t n_neurons = 0;    // width of trials/neuron_correlation
  std::vector<std::string> hyperparameters;
};

struct ResultsMetadata {
  std::string sweep_yaml;      // shown to people (paths as resolved from the sweep file)
  std::string sweep_identity;  // compared on resume (SweepConfig::identity_yaml)
  std::vector<ModelFileChecksum> model_files;
  std::string dataset_path;
  std::string dataset_checksum;  // data/digest.hpp: SHA-256 per --data, comma-separated
  // Files started before the SHA-256 digests recorded 64-bit FNV-1a checksums (16 hex digits each); such a file
  // resumes when this (rank 0 only, called only then) returns the same FNV-1a checksums of today's --data.
  std::function<std::string()> legacy_dataset_checksum;
  // trials/config: every trial's resolved model config (YAML, as a checkpoint's config attribute), in trial
  // order; empty strings in a dry run. Written once at creation.
  std::vector<std::string> trial_configs;
};

struct ResultsColumnTable;  // results_file.cpp: the file's columns and their HDF5 value types

class ResultsFile {
 public:
  // 2: trials/row_checksum, sweep_identity and model_files (version 1 files have none of them).
  // 3: trials/iterations is the schedule's counter (as metrics.json and checkpoints), trials/steps the optimiser
  //    steps (version 2 stored the steps in trials/iterations).
  // 4: trials/heartbeat and live rows (status "running" while a trial trains); version 3 files are upgraded
  //    in place when a sweep resumes them (the column is added, nothing else changes).
  // 5: trials/best_val_correlation (Lurz schedule; NaN for Ecker's), hashed; version 3 and 4 files are upgraded in
  //    place when a sweep resumes them (the columns are added as NaN and the finished rows' checksums, verified
  //    first, are recomputed with them; no other value changes).
  // 6: trials/val_correlation_curve (Lurz schedule: the validation correlation at every check, which the median
  //    stopping rule compares for those trials; NaN for Ecker's), hashed; version 3 to 5 files are upgraded in
  //    place as above.
  static constexpr int64_t kFormatVersion = 6;
  // Version 2 stored the optimiser steps in trials/iterations: no upgrade can tell them from iterations.
  static constexpr int64_t kOldestUpgradedVersion = 3;
  // Collective. Creates the file (refusing an existing one unless force) and writes the trial table's
  // static columns (trial_id, architecture, data_fraction, seed, hyperparameters).
  static ResultsFile create(const std::string& path, MPI_Comm comm, const ResultsLayout& layout,
                            const ResultsMetadata& meta, const std::vector<Trial>& trials, bool force);
  // Collective. Opens an existing file to resume. Rank 0 first checks it read-only, so a file that is not a
  // v1sysid results file, has another format version, another sweep (an edited model file included) or
  // dataset is refused unchanged, with an error that says to use --force or a new --out.
  static ResultsFile open_for_resume(const std::string& path, MPI_Comm comm, const ResultsLayout& layout,
                                     const ResultsMetadata& meta);

  // Independent: writes one finished trial's row (checksum, then status last) and its heartbeat.
  void write_row(const Trial& trial, const TrialResult& r, int rank, const std::string& host);
  // Independent: the live row of a trial in progress (status "running", counters, best validation loss and the
  // validation curve so far, elapsed time, rank, host, heartbeat = now). Not checksummed and not finished: a run
  // that dies leaves it "running", which the next run treats as pending.
  void write_running_row(const Trial& trial, const TrialResult& progress, int rank, const std::string& host);
  // Independent: status "pending" again, for a trial this run leaves unfinished (stopped, or a full disk).
  void mark_pending(const Trial& trial);
  // Reads every row's status (independent read, rank 0 after open_for_resume). A finished row whose checksum
  // does not match reads as "damaged", which is not finished: the sweep runs it again.
  std::vector<TrialStatus> read_statuses() const;
  // Independent: the validation curves (finite prefix) of every ok row with its architecture and data fraction,
  // for the median stopping rule.
  struct OkCurve {
    std::string architecture;
    double data_fraction = 0;
    std::vector<double> curve;  // validation loss at each check
    std::vector<double> correlation_curve;  // Lurz schedule: validation correlation at each check; Ecker's: empty
  };
  std::vector<OkCurve> read_ok_curves() const;
  // Collective close.
  void close();

  const ResultsLayout& layout() const { return m_layout; }

 private:
  ResultsFile(h5::File f, ResultsLayout layout) : m_file(std::move(f)), m_layout(std::move(layout)) {}
  void open_datasets();
  // Writes one row's cells (file column order): the live columns, and for a finished row the result columns and
  // the checksum; then the heartbeat and the status, last.
  void write_cells(int64_t row, const std::vector<std::string>& cells, bool finished) const;
  std::string read_column(const std::string& name) const;
  h5::File m_file;
  ResultsLayout m_layout;
  std::map<std::string, h5::Handle> m_datasets;
  std::shared_ptr<const ResultsColumnTable> m_columns;  // made once by open_datasets, for every row written
  std::vector<int64_t> m_damaged;  // rank 0: finished rows whose checksum did not match at open
};

// The finished rows (is_finished) of an open results file whose trials/row_checksum does not
// match their values: a damaged file. Files without checksums (format_version 1) have none.
std::vector<int64_t> rows_failing_checksum(const h5::File& f);

}  // namespace v1sysid
