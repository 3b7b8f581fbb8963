// results.h5: one parallel-HDF5 file holding every trial of a sweep (file contract in docs/formats.md).
//
// Crash safety: the file and all its fixed-size datasets (contiguous, allocated early, filled with NaN /
// "pending") are created collectively under "<path>.partial", closed and renamed, so a file under the final
// name always has complete metadata. Afterwards ranks only overwrite raw rows with independent MPI-IO writes,
// which never touch HDF5 metadata; a row's status is written last. A job killed at any moment therefore leaves
// a file that h5py can read, in which every row is either complete (status ok/diverged/failed) or "pending",
// and a rerun redoes exactly the pending rows.
#pragma once

#include "io/h5.hpp"
#include "sweep/sweep_config.hpp"
#include "sweep/trial_result.hpp"

#include <mpi.h>

#include <map>
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
  std::string sweep_yaml;
  std::string dataset_path;
  std::string dataset_checksum;
};

class ResultsFile {
 public:
  static constexpr int64_t kFormatVersion = 1;
  // Collective. Creates the file (refusing an existing one unless force) and writes the trial table's
  // static columns (trial_id, architecture, data_fraction, seed, hyperparameters).
  static ResultsFile create(const std::string& path, MPI_Comm comm, const ResultsLayout& layout,
                            const ResultsMetadata& meta, const std::vector<Trial>& trials, bool force);
  // Collective. Opens an existing file to resume; checks format_version, that the stored sweep equals
  // meta.sweep_yaml and that the dataset checksum matches, with errors that say to use --force or a new --out.
  static ResultsFile open_for_resume(const std::string& path, MPI_Comm comm, const ResultsLayout& layout,
                                     const ResultsMetadata& meta);

  // Independent: writes one finished trial's row (status last).
  void write_row(int64_t trial_id, const TrialResult& r, int rank, const std::string& host);
  // Reads every row's status (independent read, any rank).
  std::vector<std::string> read_statuses() const;
  // Collective close.
  void close();

  const ResultsLayout& layout() const { return m_layout; }

 private:
  ResultsFile(h5::File f, ResultsLayout layout) : m_file(std::move(f)), m_layout(std::move(layout)) {}
  void open_datasets();
  h5::File m_file;
  ResultsLayout m_layout;
  std::map<std::string, h5::Handle> m_datasets;
};

bool is_finished_status(const std::string& status);

}  // namespace v1sysid
