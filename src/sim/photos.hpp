// Natural-image stimuli cut from real photographs (data-formats §A), and the stimulus file they go into.
//
// Pipeline, per photo of the curated, licence-clean list below:
//   decode (libjpeg / libpng / libwebp) -> luminance L = 0.299 R + 0.587 G + 0.114 B (Rec.601, kept as float 0..255)
//   -> area-downsample so the width becomes 128, 256, 512 and 1024 px (only widths <= the photo's; the
//      height follows with the same factor) -> tile H x W crops with stride H x W (no overlap within a
//      scale) -> drop crops whose pixel SD is below 4 grey levels (4/255 of the 0..255 range: flat sky,
//      black borders, blown-out areas).
// Photos reserved for the test set contribute test crops only; all other photos contribute train/validation
// crops only, so no source photo is shared across the split. `trainval_count` and `test_count` crops are
// selected balanced over source photos (one crop per photo per round; within a photo the scale that covers
// the least of it so far) in a seeded random order, and a crop that overlaps one already chosen from the same
// photo, mapped back to the photo's own coordinates, is skipped: no two crops share a pixel of a photograph.
// Fisher-Yates shuffles with an own bounded draw on std::mt19937_64, so the same seed gives the same crops
// with every standard library.
//
// Stimulus file (format_version 1), written by write_stimuli and `v1sysid images`:
//   images        [N, H, W] float32, grey levels 0..255 (rows: all "trainval" crops, then all "test" crops)
//   split         [N] fixed-length byte strings, "trainval" or "test" (the source photo's reservation)
//   photo_index   [N] int32, row of photos/* the crop comes from; -1 for procedural images
//   scale         [N] float32, downsampling factor (photo width / width of the scaled photo); 1 if procedural
//   position      [N, 2] int32, top-left corner (x, y) of the crop in the scaled photo
//   scaled_width  [N] int32, width of the scaled photo (0 if procedural); the crop covers
//                 [x, x + W) * photo width / scaled_width of the photo (files before issue 17 lack it)
//   photos/name, photos/path, photos/package, photos/author, photos/licence   [P] byte strings
//   root attributes: format_version = 1 (int), generator = "photographs" or
//     "dead_leaves (procedural fallback, not natural images)", seed (int), min_crop_sd (float, grey levels)
//   summary group, attributes (StimulusSummary): {trainval,test}_{crops, photos, crops_per_photo_min,
//     crops_per_photo_median, crops_per_photo_max, effective_photos}, available_trainval_crops,
//     available_test_crops (-1 if procedural), overlapping_crop_pairs, photos_in_both_tiers
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace v1sysid::sim {

// One photograph of the curated list. `relative_path` is inside the unpacked package, i.e. the file lies at
// <photo cache>/<package>/<relative_path> (the layout env/fetch-photos.sh makes).
struct PhotoSource {
  const char* name;           // short identifier, unique
  const char* package;        // Debian package that ships it
  const char* relative_path;  // path inside the unpacked package
  const char* author;
  const char* licence;     // SPDX-style: CC0-1.0, CC-BY-4.0, public-domain
  bool reserved_for_test;  // contributes test crops only (and no train/validation crops)
};

// The 111 licence-clean photos of docs/stimuli/photo-survey.md (12 Debian packages; CC0, public-domain,
// CC-BY or permissive), 22 of them reserved for test. Text, synthetic, share-alike and uncertain images are
// excluded.
const std::vector<PhotoSource>& curated_photos();

// Default photo cache: $V1SYSID_PHOTO_CACHE, else /var/cache/v1sysid/photos.
std::string default_photo_cache();

// A single-channel image, row-major (height, width), grey levels 0..255 as float.
struct GrayImage {
  int height = 0;
  int width = 0;
  std::vector<float> pixels;  // (height, width)
  float at(int y, int x) const { return pixels[static_cast<size_t>(y) * static_cast<size_t>(width) + x]; }
};

// Rec.601 luma of 8-bit (or 0..255 float) R, G, B.
inline float rec601_luminance(float r, float g, float b) { return 0.299f * r + 0.587f * g + 0.114f * b; }

// Decodes a JPEG, PNG or WebP (chosen by the file's signature, not its name) to luminance. Grey images are kept
// as they are; colour images go through rec601_luminance; 16-bit PNG samples are scaled to 0..255; alpha is
// ignored; no gamma correction (values are taken as stored, like PIL's "L"). Unreadable, truncated or
// unsupported files (CMYK JPEG, other formats) throw IoError/DataError naming the file.
GrayImage decode_photo(const std::string& path);

// Area (box) downsampling by the rational factor f = factor_num / factor_den >= 1: output pixel (i, j) is
// the mean of the input over the square [j f, (j+1) f) x [i f, (i+1) f), with partially covered input
// pixels weighted by the covered fraction (interval ends are computed exactly in integers). Output size:
// floor(width / f) x floor(height / f). f < 1 throws (downsampling only).
GrayImage area_downsample(const GrayImage& in, int64_t factor_num, int64_t factor_den);

// Mean and population standard deviation of a crop.
struct CropStats {
  double mean = 0;
  double sd = 0;
};
CropStats crop_stats(const float* pixels, int height, int width, int row_stride);

struct CropOptions {
  int height = 36;
  int width = 64;
  // Crops with a pixel SD below this many grey levels (0..255 scale) are dropped: 4 = 4/255 of the range.
  double min_sd = 4.0;
  // Widths the photo is area-downsampled to; widths above the photo's own width are skipped.
  std::vector<int> scale_widths{128, 256, 512, 1024};
};

// Top-left corners (x, y) of the H x W crops of `image` on a grid of stride H, W (crops side by side, not
// overlapping) whose SD is at least options.min_sd. Rows are in raster order.
std::vector<std::pair<int, int>> tile_positions(const GrayImage& image, const CropOptions& options);

// A crop of a scaled photo: top-left corner (x, y) in the scaled photo, and that photo's width.
struct PhotoCrop {
  int32_t x = 0, y = 0;
  int32_t scaled_width = 0;
};
// Whether two height x width crops of the same photograph share any of its area, compared in the photo's
// own coordinates (exact integer arithmetic); crops that only touch do not overlap.
bool crops_overlap(const PhotoCrop& a, const PhotoCrop& b, int height, int width);

struct StimulusOptions {
  long trainval_count = 5400;  // enough for data/paper.yaml (4,860 train + 540 validation)
  long test_count = 100;       // the papers' 100 test images
  uint64_t seed = 0;
  CropOptions crop;
  std::string photo_dir;  // cache made by env/fetch-photos.sh; empty = default_photo_cache()
  // Restricts the photos used to these indices of curated_photos() (tests use it to stay fast); empty = all.
  std::vector<int> photo_subset;
};

struct PhotoRecord {
  std::string name, path, package, author, licence;
};

// An in-memory stimulus file (see the format above).
struct StimulusSet {
  int height = 0;
  int width = 0;
  std::vector<float> images;         // (N, H, W), 0..255
  std::vector<std::string> split;    // (N) "trainval" | "test"
  std::vector<int32_t> photo_index;  // (N)
  std::vector<float> scale;          // (N)
  std::vector<int32_t> position;     // (N, 2) x, y
  std::vector<int32_t> scaled_width;  // (N); empty when read from a file that lacks it
  std::vector<PhotoRecord> photos;   // (P)
  std::string generator;
  uint64_t seed = 0;
  double min_crop_sd = 0;
  // Non-overlapping crops the selection could have given per tier (before --count / --test-count cut it);
  // -1 where unknown (procedural, or read from a file).
  long available_trainval = -1, available_test = -1;
  std::string path;                  // the file it was read from (empty for a set built in memory)
  size_t size() const { return split.size(); }
  // Rows of the test split (test = true) or the trainval split, ascending.
  std::vector<int64_t> indices(bool test) const;
};

// The numbers behind "how many distinct images": per tier, crops, distinct photographs, crops per photograph
// and the effective number of photographs, the inverse Simpson index 1 / sum_p s_p^2 of the crop shares s_p
// (equal to the number of photographs when each gives as many crops; smaller when a few dominate).
struct TierSummary {
  long crops = 0;
  long photos = 0;
  long min_per_photo = 0;
  double median_per_photo = 0;
  long max_per_photo = 0;
  double effective_photos = 0;
};
struct StimulusSummary {
  TierSummary trainval, test;
  // Pairs of crops of one photograph that overlap in its coordinates (crops_overlap), measured on the
  // selected rectangles; -1 when the set has no scaled_width (files from before issue 17).
  long overlapping_pairs = -1;
  long shared_photos = 0;  // photographs with crops in both tiers
};
StimulusSummary summarize_stimuli(const StimulusSet& set);

inline constexpr int kStimulusFormatVersion = 1;
inline constexpr const char* kGeneratorPhotographs = "photographs";
inline constexpr const char* kGeneratorDeadLeaves = "dead_leaves (procedural fallback, not natural images)";

// Crops from the curated photographs. A missing cache or photo throws IoError telling the user to run
// env/fetch-photos.sh; too few usable crops for the requested counts throws DataError. Prints progress.
StimulusSet build_photo_stimuli(const StimulusOptions& options);

// Procedural dead-leaves images (occluding discs with radii drawn from p(r) ~ r^-3 and uniform grey
// levels), for when no photographs can be had and the user asks for it by name. Not natural images: the
// file's generator attribute says so. Test and train/validation images come from separate random streams.
StimulusSet build_dead_leaves_stimuli(const StimulusOptions& options);

// Writes a stimulus file; an existing file is refused unless force (h5::File::create).
void write_stimuli(const StimulusSet& set, const std::string& path, bool force);
// Reads a stimulus file and checks its format_version and shapes; wrong files throw DataError/IoError.
StimulusSet read_stimuli(const std::string& path);

// Slope of the log radially averaged amplitude spectrum against log spatial frequency of one crop: the
// mean is removed, a separable Hann window applied, |DFT| averaged in radial bins of width 1/max(H, W)
// cycles/px, and a least-squares line fitted over bins centred in [f_lo, f_hi] cycles/px (data-formats §A.3
// uses 2/36 .. 0.45). Natural images give about -1 to -1.5; white noise about 0.
double amplitude_spectrum_slope(const float* pixels, int height, int width, double f_lo = 2.0 / 36.0,
                                double f_hi = 0.45);

}  // namespace v1sysid::sim
