// Ensembles of trained models (issue 22): several checkpoints of one architecture (e.g. the K best trials of a
// sweep, as `v1sysid ensemble` picks them) that act as one model whose prediction is the mean of the members'
// predictions in the units of the stored responses. Every command that takes --checkpoint (evaluate, predict,
// rf, mei) also takes an ensemble file.
//
// Ensemble file (HDF5), schema in docs/formats.md ("Ensemble"):
//   attributes  kind "v1sysid ensemble", format_version 1, results, architecture, data_fraction, ranked_by
//   members     strings [K]  the members' checkpoint files (absolute paths)
//   digests     strings [K]  SHA-256 of each checkpoint file (data/digest.hpp), checked when loading
//   trials      int64 [K]    the members' sweep trials (-1: not from a sweep)
//   val_loss    float64 [K]  their best validation losses
//   val_correlation float64 [K]  their best validation correlations (Lurz's schedule; NaN for Ecker's)
// ranked_by ("validation loss" / "validation correlation", the criterion the members were chosen by) and
// val_correlation are provenance only, absent from files written before them; readers need neither, so the
// format version stays 1.
// The members stay where they are (the sweep's --save-checkpoints folder): a member that was changed or replaced
// since is refused, naming it.
#pragma once

#include "train/checkpoint.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace v1sysid {

struct EnsembleSpec {
  std::string results;       // provenance: the results file the members were chosen from
  std::string architecture;
  double data_fraction = 1;
  std::vector<std::string> members;
  std::vector<int64_t> trials;
  std::vector<double> val_loss;
  std::vector<double> val_correlation;
  std::string ranked_by;  // the sweep's selection criterion; empty: not from a sweep
};

// Writes an ensemble file after loading every member (so an unreadable member or one that does not match the
// first is refused before anything is written). An existing file without force is an IoError.
void save_ensemble(const std::string& path, const EnsembleSpec& spec, bool force);

// Whether `path` is an ensemble file (an HDF5 file whose kind attribute says so); false for anything else.
bool is_ensemble_file(const std::string& path);

// The trained models behind a --checkpoint argument: the checkpoint itself, or every member of an ensemble
// file in its order. Members are checked against their digests and against member 0: the same image size,
// the same readouts (data keys, neuron counts) and the same recorded neuron subsets, else ShapeError naming
// the member.
std::vector<Checkpoint> load_models(const std::string& path);

}  // namespace v1sysid
