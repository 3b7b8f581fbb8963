// The in-memory dataset every reader produces and every consumer (training, evaluation, info) takes.
// Host-side std::vectors in row-major order; models copy the pieces they need into device Views.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace v1sysid {

enum class Tier : uint8_t { train = 0, validation = 1, test = 2, final_test = 3 };
constexpr int kNumTiers = 4;
const char* tier_name(Tier t);
// Parses "train", "validation", "test", "final_test"; anything else throws DataError naming `where`.
Tier parse_tier(const std::string& name, const std::string& where);

// Ground truth of a simulated (digital V1) population, read from the `gt/` group when present.
struct GroundTruth {
  std::vector<std::string> cell_type;       // [n]
  std::vector<float> orientation;           // [n] radians, in [0, pi)
  std::vector<float> position;              // [n, 2] (x, y) in pixels of the stored image
  std::vector<int64_t> test_image_ids;      // [n_test_images], row order of test_rates
  std::vector<float> test_rates;            // [n_test_images, n] noise-free rates
  std::vector<float> ceiling_correlation;   // [n] analytic corr(true rate, mean of the R repeats)
  std::vector<float> fev;                   // [n] analytic fraction of explainable variance (single trial)
};

// Statistics shipped with the data (`statistics/` group or `meta/statistics/` folder, the `all` subset), kept
// for reference; v1sysid's own preprocessing recomputes them from the training tier (compute_preprocessing).
struct StoredStatistics {
  std::optional<double> image_mean;   // 0-d in the files
  std::optional<double> image_std;
  std::vector<float> response_mean;   // [n] or empty
  std::vector<float> response_std;    // [n] or empty (ddof 1 in neuro_data's files)
};

struct Dataset {
  std::string source;    // path it was read from
  std::string format;    // "hdf5" (StaticImageSet), "filetree" (folder) or "filetree-zip"
  std::string data_key;  // e.g. "20457-5-9-0" for static20457-5-9-preproc0.h5
  std::string image_id_source;  // field the image ids came from, or "pixel hash" when the file has none
  int64_t n_trials = 0;
  int64_t height = 0;
  int64_t width = 0;
  int64_t n_neurons = 0;

  std::vector<float> images;       // [n_trials, 1, height, width], as stored (0..255 for real data)
  std::vector<float> responses;    // [n_trials, n_neurons], as stored
  std::vector<Tier> tiers;         // [n_trials]
  std::vector<int64_t> image_ids;  // [n_trials]; equal ids mark repeats of one image
  std::vector<int64_t> unit_ids;   // [n_neurons]
  std::vector<float> cortical_coordinates;  // [n_neurons, 3] or empty (neurons/cell_motor_coordinates)
  std::optional<GroundTruth> ground_truth;
  std::optional<StoredStatistics> stored_statistics;

  // Row indices of one tier, in file order.
  std::vector<int64_t> indices(Tier t) const;
  int64_t count(Tier t) const;
  // Number of distinct image ids in a tier and the minimum number of repeats of any of them.
  int64_t unique_images(Tier t) const;
  int64_t min_repeats(Tier t) const;
};

// Reads a StaticImageSet .h5 file, a FileTree folder, or a zipped FileTree (.zip). Validates shapes,
// tiers and finiteness; every problem throws a typed error naming file, field and fix.
// Dispatch: a directory is a FileTree, a file ending in .zip (or starting with the zip magic) a zipped
// FileTree, anything else HDF5. Readers never write anything into or next to the dataset.
Dataset load_dataset(const std::string& path);
// The individual readers behind load_dataset (same validation).
Dataset read_static_image_set(const std::string& h5_path);
Dataset read_file_tree(const std::string& folder_or_zip_path);

// data_key as the SENSORIUM / Lurz loaders derive it: for names starting with "static", the text after
// "static" up to the first '.', with "preproc" removed ("static20457-5-9-preproc0.h5" -> "20457-5-9-0");
// otherwise the file or folder name without its extension.
std::string data_key_from_path(const std::string& path);

// Checks a Dataset built in memory (e.g. by the simulator) as the readers check theirs: consistent sizes,
// non-empty train/validation/test tiers, finite images and responses, ground-truth shapes. Throws DataError.
void validate_dataset(const Dataset& d);

// A subset of a dataset's neurons (`train --neurons SPEC`, Ecker's half-neurons experiment). SPEC is
//   A:B   indices A, A+1, ..., B-1 (0-based, half-open as in Python; ":B" = "0:B", "A:" = "A:n")
//   even  indices 0, 2, 4, ...        odd  indices 1, 3, 5, ...
// Empty `indices` means every neuron (no selection).
struct NeuronSelection {
  std::string spec;                // as given, e.g. "0:75"
  int64_t dataset_neurons = 0;     // n_neurons of the dataset the indices refer to
  std::vector<int64_t> indices;    // ascending dataset neuron indices
  std::vector<int64_t> unit_ids;   // the dataset's unit_ids of those neurons
  bool all() const { return indices.empty(); }
};
// Parses SPEC against `d`; an empty, malformed or out-of-range SPEC throws ConfigError naming `option`
// (e.g. "--neurons") and the valid forms.
NeuronSelection parse_neuron_selection(const std::string& spec, const Dataset& d, const std::string& option);
// Columns `indices` of a row-major [rows, cols] matrix, e.g. some neurons of responses [trials, neurons].
std::vector<float> neuron_columns(const std::vector<float>& values, int64_t cols, const std::vector<int64_t>& indices);
// Keeps only the neurons `indices` (ascending, in range) in every per-neuron field of `d`: responses,
// unit_ids, cortical coordinates, stored response statistics and the ground truth.
void keep_neurons(Dataset& d, const std::vector<int64_t>& indices);
// Applies a selection recorded for another run (a checkpoint's) to `d`, after checking that `d` is the kind
// of dataset it was made on: the same neuron count and, for the selected neurons, the same unit_ids.
// ShapeError otherwise, naming `origin` (e.g. "checkpoint.h5 (preprocessing/neuron_indices)") and `d`.
void apply_neuron_selection(Dataset& d, const NeuronSelection& s, const std::string& origin);

// Training-tier statistics as the reference computes them (reference-models.md §3.3).
struct Preprocessing {
  double image_mean = 0;               // scalar over all training pixels
  double image_std = 1;                // scalar (ddof 0)
  std::vector<float> response_std;     // [n] per-neuron divisor; SD < 1% of mean SD is replaced (see .cpp)
  NeuronSelection neurons;             // the dataset neurons the statistics (and a model) are for
};
// Throws DataError when the training images are constant (no SD to divide by).
Preprocessing compute_preprocessing(const Dataset& d);
// Returns images z-scored and responses divided by response_std (responses clipped at 0 first), for every
// trial of every tier: images [n_trials, 1, H, W], responses [n_trials, n_neurons].
void apply_preprocessing(const Preprocessing& p, const Dataset& d, std::vector<float>& images,
                         std::vector<float>& responses);
// Area-downsamples images by an integer factor (e.g. SENSORIUM 144 x 256 -> 36 x 64 with factor 4): each
// output pixel is the mean of a factor x factor block. Ground-truth positions move to the new pixel grid.
// A factor that does not divide height and width throws ConfigError; factor 1 changes nothing.
void downsample_images(Dataset& d, int factor);

}  // namespace v1sysid
