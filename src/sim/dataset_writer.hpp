// Writes a simulated animal in the neuralpredictors StaticImageSet HDF5 layout (data-formats.md §B.1), plus gt/.
//
//   images                       (N, 1, H, W) float32, 0..255
//   responses                    (N, n) float32
//   behavior                     (N, k) float32, only with noise.gain_factors (k > 0): trial t's latents z_t of the
//                                shared gain (noise.hpp), attribute `description`
//   tiers                        (N) fixed-length bytes: b'train', b'validation', b'test'
//   types                        (N) b'stimulus.Frame'
//   trial_idx, item_info/trial_idx   (N) uint32, presentation order
//   item_info/frame_image_id     (N) int64, equal for repeats of one image (row of the stimulus file)
//   item_info/source_photo       (N) int64, the image's photo_index in the stimulus file (row of its photos/*;
//                                -1 for procedural images)
//   neurons/unit_ids             (n) uint16 (uint32 above 65535 neurons), 1..n
//   neurons/animal_ids           (n) uint16, the animal (1..)
//   neurons/area, neurons/layer  (n) b'V1', b'L2/3'
//   neurons/cell_motor_coordinates (n, 3) float32, um (retinotopy)
//   statistics/images/all/{mean,std,min,max,median}      0-d float32 over all pixels of the train tier
//   statistics/responses/all/{mean,std,min,max,median}   (n) float32 over the train tier, std with ddof 0 (the
//                                                        divisor of the responses in data/dataset.cpp)
//   gt/cell_type (n) bytes; gt/orientation (n) radians in [0, pi), NaN for centre-surround cells;
//   gt/position (n, 2) (x, y) pixels; gt/test_image_ids (m) int64 ascending; gt/test_rates (m, n) float32;
//   gt/ceiling_correlation, gt/fev, gt/signal_variance, gt/noise_variance (n) float32;
//   gt/phase (n) (simple and mixed cells; NaN otherwise), gt/wavelength_px, gt/spatial_frequency (cycles/px; NaN for
//   centre-surround), gt/sigma_px (Gabor envelope across the bars, or DoG centre), gt/aspect_ratio (NaN for
//   centre-surround), gt/surround_sigma_px, gt/surround_weight, gt/polarity (centre-surround; NaN / 0
//   otherwise), gt/normalization_constant, gt/semi_saturation (normalised complex and deep; NaN otherwise),
//   gt/selectivity, gt/threshold, gt/gain, gt/baseline, gt/mean_rate (target mean rate on the train tier),
//   gt/raw_drive_mean, gt/raw_drive_sd (n) float64 — with neuron_model.hpp these reproduce every rate.
//   Deep library only (docs/formats.md): gt/modulators, gt/stopping (n) bytes; gt/energy_weight,
//   gt/modulator_angle, gt/surround_suppression_weight, gt/surround_radius_px, gt/surround_tuned,
//   gt/cross_orientation_weight, gt/stopping_weight, gt/stopping_offset_px, gt/stopping_side, gt/corner_angle,
//   gt/arm_offset_px, gt/arm_sign, gt/curvature_radius_px, gt/arc_spacing_px, gt/curvature_sign (n) float64;
//   gt attributes cell_library = "deep", orientation_coupling.
//   Per-neuron noise only (gain_factors or private_gain): gt/gain_loadings (n, k) float64 (with gain factors),
//   gt/private_gain_variance, gt/gain_second_moment (n) float64 (M_j of noise.hpp); gt attributes gain_factors,
//   gain_log_sd, private_gain (0/1).
//   gt attributes: noise_model, nb_r, zig_zero_probability, zig_shape, shared_gain_sd, test_repeats,
//   image_mean, image_std (pixel z-scoring before the filters).
//   Root attributes: format_version = 1, generator, config (resolved YAML), stimuli (file name),
//   stimuli_generator, animal (1..), data_key (file stem).
#pragma once

#include "sim/simulate.hpp"

#include <string>
#include <vector>

namespace v1sysid::sim {

struct ImageStatistics {
  float mean = 0, std = 0, min = 0, max = 0, median = 0;
};
struct ResponseStatistics {
  std::vector<float> mean, std, min, max, median;  // (n) each
};
// Statistics over the rows of one tier (the simulator uses the train tier, as neuro_data's norm tier).
ImageStatistics image_statistics(const Dataset& d, Tier tier);
ResponseStatistics response_statistics(const Dataset& d, Tier tier);

// Writes one animal's file; refuses an existing file unless force (IoError). The file appears under its
// final name only when complete.
void write_static_image_set(const SimulatedDataset& sim, const std::string& path, bool force);
// The same content in the FileTree layout (data-formats.md §B.2): data/images/<i>.npy (1, H, W),
// data/responses/<i>.npy (n), data/behavior/<i>.npy (k) with gain factors,
// meta/trials/{tiers,types,trial_idx,frame_image_id,source_photo}.npy, meta/neurons/*.npy,
// meta/statistics/<images|responses>/all/*.npy, gt/*.npy, meta/attributes.json (the attributes above) and
// config.json ({"links": {}}). Refuses an existing folder unless force; appears under its name only complete.
void write_file_tree(const SimulatedDataset& sim, const std::string& folder, bool force);

}  // namespace v1sysid::sim
