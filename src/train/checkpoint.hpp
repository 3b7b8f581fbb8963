// Checkpoint files (HDF5) of a trained Model<Real>: everything needed to resume or evaluate in v1sysid, and
// an `export/` group from which any framework can run the model without v1sysid. Schema: docs/formats.md
// ("Checkpoint"). Written under <path>.partial and renamed on success (h5::File::create).
#pragma once

#include "data/dataset.hpp"
#include "model/model.hpp"
#include "train/trainer.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace v1sysid {

constexpr int64_t kCheckpointFormatVersion = 1;

// Writes `model` (parameters, BN running statistics, Adam state), its resolved config, the preprocessing,
// the training record (curve, status) and export/. An existing file is an IoError unless force.
// `trial_id`: the sweep trial the model belongs to (root attribute trial_id, which analysis/report.py checks
// against the results row); -1 for a model not trained by a sweep (no attribute).
void save_checkpoint(const std::string& path, const Model<Real>& model, const Preprocessing& preprocessing,
                     const TrainResult& training, const std::string& dataset_source, bool force,
                     int64_t trial_id = -1);
// A model with several readouts: one preprocessing per readout (readout order). Besides the single-readout
// layout it writes readouts/data_keys, readouts/n_neurons and readouts/<key>/preprocessing/, and the export
// has one export/readouts/<key>/ group per readout instead of export/readout/ (attribute data_keys on
// export/). preprocessing/ holds readout 0's statistics.
void save_checkpoint(const std::string& path, const Model<Real>& model,
                     const std::vector<Preprocessing>& preprocessing, const TrainResult& training,
                     const std::string& dataset_source, bool force, int64_t trial_id = -1);

struct Checkpoint {
  std::string path;
  std::unique_ptr<Model<Real>> model;  // parameters and Adam state loaded
  Preprocessing preprocessing;                       // readout 0
  std::vector<Preprocessing> readout_preprocessing;  // one per readout
  TrainResult training;  // status, counters and the validation curve as recorded
  std::string dataset_source;
};

// Reads a checkpoint. Not a v1sysid checkpoint, another format_version, or parameters whose names or shapes
// differ from what the stored config builds: IoError / ShapeError naming the file and the object.
Checkpoint load_checkpoint(const std::string& path);

// The readout of the checkpoint's model that belongs to `d`: 0 for a one-readout model, else the readout
// whose data_key is d.data_key.
int readout_of_dataset(const Checkpoint& c, const Dataset& d);
// That readout; throws ShapeError unless it fits `d` (image size, neuron count).
int check_checkpoint_fits(const Checkpoint& c, const Dataset& d);
// What evaluate and predict call: applies the neuron subset recorded for that readout (a model trained with
// --neurons; Preprocessing::neurons) to `d`, refusing a dataset that does not match it, then
// check_checkpoint_fits. Returns the readout index.
int fit_dataset_to_checkpoint(const Checkpoint& c, Dataset& d);

}  // namespace v1sysid
