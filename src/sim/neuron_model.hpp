// Neurons of the digital V1: linear-nonlinear and energy models on natural images, with known parameters.
//
// Coordinates: x is the image column, y the image row (pixel centres at integers, (0, 0) the top-left pixel),
// in pixels of the stored (cropped) image. Orientations are those of the bars of the preferred grating,
// in radians in [0, pi), measured from the +x axis towards +y (rows grow downwards, so this turns clockwise
// on the screen).
//
// Image normalisation: each animal's pixels are z-scored with the mean and SD (ddof 0) of all pixels of its
// training images, x~ = (x - mean) / sd, before any filter is applied.
//
// Filters (evaluated at the pixel centres p of a window of radius 3 envelope SDs around the RF centre c,
// clipped to the image; d = p - c, u = -d_x sin(theta) + d_y cos(theta) across the bars,
// v = d_x cos(theta) + d_y sin(theta) along them):
//   Gabor  G_{theta,phi}(p) = exp(-(u^2 + gamma^2 v^2) / (2 sigma^2)) cos(2 pi u / lambda + phi),
//          then its DC removed within the envelope (G -= env * sum(G) / sum(env)) and scaled to unit L2 norm.
//   DoG    D(p) = polarity * (N_c(p) - w N_s(p)), N_c, N_s Gaussians of SD sigma_c, sigma_s each summing to 1
//          on the window, scaled to unit L2 norm.
// Raw drive g of one image x~ (<.,.> is the dot product over the window):
//   simple                  g = [<G_{theta,phi}, x~>]_+                              (half-wave rectified)
//   complex                 g = sqrt(<G_{theta,0}, x~>^2 + <G_{theta,pi/2}, x~>^2)     (energy model)
//   normalized_complex      E_k = energy at orientation theta + k pi / 8, k = 0..7, same position and size;
//                           g = E_0 / (sigma_n + mean_k E_k),  sigma_n = c * median over the training images
//                           of mean_k E_k  (c = normalization_constant), so g is dimensionless and ~ O(1)
//   center_surround         g = [<D, x~>]_+                                         (ON or OFF, non-oriented)
// Rate (noise-free, expected response), calibrated per neuron on the training images:
//   drive = selectivity * (g - mean_train g) / sd_train g          (sd over the training images, ddof 0)
//   rate  = gain * softplus(drive - threshold) + baseline,
//   gain  = (target_mean_rate - baseline) / mean_train softplus(drive - threshold),
// so every neuron's mean rate over the training images is exactly its target_mean_rate, and selectivity and
// threshold set how sparse and how image-dependent its responses are.
#pragma once

#include "sim/sim_config.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace v1sysid::sim {

enum class CellType : uint8_t { simple = 0, complex = 1, normalized_complex = 2, center_surround = 3 };
constexpr int kNumCellTypes = 4;
const char* cell_type_name(CellType t);  // "simple", "complex", "normalized_complex", "center_surround"

struct NeuronParameters {
  CellType type = CellType::simple;
  double x = 0, y = 0;               // RF centre (pixels)
  double orientation = 0;            // Gabor types: bar orientation, [0, pi)
  double phase = 0;                  // simple cells: carrier phase phi, [0, 2 pi)
  double wavelength = 10;            // Gabor carrier wavelength lambda (px); spatial frequency 1 / lambda
  double sigma = 3;                  // Gabor envelope SD across the bars; centre-surround: centre SD (px)
  double aspect_ratio = 1;           // gamma: SD across / SD along the bars
  double surround_sigma = 0;         // centre-surround: surround SD (px)
  double surround_weight = 0;        // centre-surround: w
  int polarity = 1;                  // centre-surround: +1 ON centre, -1 OFF centre
  double normalization_constant = 0; // normalised complex cells: c
  double selectivity = 1;
  double threshold = 0;
  double baseline = 0;
  double target_mean_rate = 0.5;
  // Set by compute_raw_drives / calibrate_rates:
  double semi_saturation = 0;        // sigma_n (normalised complex cells)
  double raw_drive_mean = 0;
  double raw_drive_sd = 1;
  double gain = 1;
};

// Draws the neurons of one animal: cell types in the configured proportions (largest-remainder counts,
// shuffled), every parameter from its configured range. Neuron j's parameters depend only on
// (seed, animal, j) and its type.
std::vector<NeuronParameters> draw_population(const SimulationConfig& config, uint64_t animal);

// Filters of one neuron on its window [x0, x0 + w) x [y0, y0 + h) of an H x W image.
struct FilterBank {
  int x0 = 0, y0 = 0, w = 0, h = 0;
  int count = 0;
  std::vector<float> weights;  // (count, h, w)
};
// simple: 1 filter; complex: the quadrature pair (phase 0, pi/2); normalized_complex: 8 orientations x the
// pair (orientation theta + k pi / 8 at rows 2k, 2k + 1); center_surround: 1 DoG.
FilterBank make_filters(const NeuronParameters& neuron, int height, int width);

// Raw drives g of every neuron on every image; sets semi_saturation of normalised complex cells from the
// calibration rows (the training images). Shows progress when `progress_label` is not empty.
//   images: (n_images, height, width) z-scored;  returns (n_images, n_neurons)
std::vector<float> compute_raw_drives(std::vector<NeuronParameters>& neurons, const std::vector<float>& images,
                                      int64_t n_images, int height, int width,
                                      const std::vector<int64_t>& calibration_rows,
                                      const std::string& progress_label = "");

// Calibrates raw_drive_mean, raw_drive_sd and gain on the calibration rows and returns the rates.
//   raw_drives: (n_images, n_neurons);  returns (n_images, n_neurons)
std::vector<float> calibrate_rates(std::vector<NeuronParameters>& neurons, const std::vector<float>& raw_drives,
                                   int64_t n_images, const std::vector<int64_t>& calibration_rows);
// The rate of a calibrated neuron for one raw drive.
double rate_of_raw_drive(const NeuronParameters& neuron, double raw_drive);

}  // namespace v1sysid::sim
