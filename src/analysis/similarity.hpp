// Representational similarity matrix (RSM) of a model's predicted population responses (the teacher signal
// of Li et al. 2019): S[i, j] = Pearson correlation over neurons between the predicted response vectors of
// images i and j, predictions in the units of the stored responses (model output * response_std).
//
// Memory: the predictions are computed in batches and z-scored per image into one [I, N] float matrix
// Z (z_i = (p_i - mean_i) / (sd_i * sqrt(N)), ddof 0, so S = Z Z^T); S is then computed one block of rows
// at a time, S[i0:i1, :] = Z[i0:i1] Z^T (KokkosBlas::gemm), and written to the HDF5 file with a hyperslab
// write, so only Z and one [block, I] slab are ever in memory (10,000 images x 6,000 neurons: 240 MB + 40 MB
// at block 1024). An image whose predicted population vector is constant has no correlation: its row and
// column are 0 (its diagonal entry too).
#pragma once

#include "data/dataset.hpp"
#include "model/model.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace v1sysid {

// Images to compare: from a stimuli file of `v1sysid images` (images [I, H, W]; ids = row numbers) or a
// StaticImageSet .h5 (images [n, 1, H, W]; each item_info/frame_image_id once, first occurrence, so repeated
// test images count once).
struct ImageSet {
  std::vector<float> images;  // [I, H, W] grey levels as stored
  std::vector<int64_t> image_ids;
  int64_t count = 0, height = 0, width = 0;
  std::string id_source;  // "row" or "item_info/frame_image_id"
};
ImageSet read_image_set(const std::string& path);

// Evaluation-mode predictions [I, N] (stored response units) of images [I, H, W], `batch` images at a time.
// readout: the model's readout (p: its preprocessing).
std::vector<float> predict_images(Model<Real>& model, const Preprocessing& p, const ImageSet& images, int batch = 128,
                                  int readout = 0);

struct SimilarityOptions {
  int block = 1024;  // rows of S per GEMM and per HDF5 write
  bool force = false;
  std::string checkpoint_path;  // recorded as an attribute
  int readout = 0;              // the model's readout (p: its preprocessing)
};

// Computes S for `images` and writes `out`: rsm float32 [I, I], image_ids int64 [I], mean_prediction
// float32 [I] (mean over neurons), attributes. Returns the number of images with a constant prediction.
int64_t write_similarity(Model<Real>& model, const Preprocessing& p, const ImageSet& images, const std::string& out,
                         const SimilarityOptions& o);

}  // namespace v1sysid
