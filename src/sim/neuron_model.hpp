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
//
// Deep library (cell_library.kind: deep in the config; the default, kind: gabor, is the population above).
// One linear stage and a pointwise nonlinearity leave a fixed Gabor-energy bank nothing to miss, so these
// cells combine several energy probes at positions and orientations defined in the cell's own frame:
// a base computation plus modulators drawn independently of each other, the combinatorial code that a
// rotation-equivariant digital twin found in mouse V1 (Ustyuzhaninov et al. 2022).
//   Frame: centre c = (x, y); theta drawn continuously in [0, pi); e_v = (cos theta, sin theta) along the
//   bars, e_u = (-sin theta, cos theta) across them; sigma_v = sigma / gamma (envelope SD along the bars),
//   sigma_u = sigma. Modulators use the angle psi = theta (orientation_coupling: relative: every offset and
//   angle turns with the cell, so each type is rotation-equivariant) or psi = 0, the image horizontal
//   (absolute: the null for rotation equivariance; see draw_population).
//   Probe P(q, phi): the Gabor quadrature pair (phase 0, pi/2; the cell's lambda, sigma, gamma) centred at q
//   with orientation phi, built on its full window (radius 3 sigma_v) and then cut to the image, so pixels
//   outside the image count as mean grey (0) instead of the part inside being renormalised; outputs (a, b),
//   energy E(q, phi) = sqrt(a^2 + b^2).
//   Base B:
//     simple, complex, mixed  (a, b) = P(c, theta);  B = (1 - m) [cos(phase) a + sin(phase) b]_+ + m E(c, theta)
//                             with m = 0 (simple), 1 (complex), drawn from mixed_energy_weight (mixed);
//                             cos(phase) a + sin(phase) b is the Gabor of that phase (up to the pair's norms)
//     corner      B = sqrt(E(c + r d_1, theta) E(c + r d_2, theta + alpha)): two arms leaving the vertex c in
//                 directions d_1 = s (cos theta, sin theta), d_2 = s (cos(theta + alpha), sin(theta + alpha)),
//                 alpha from corner.angles_deg, r = arm_offset sigma_v, s = +-1 (arm_sign)
//     curvature   B = (E_-1 E_0 E_1)^(1/3): segments on an arc of radius R = radius sigma_v tangent to e_v at c,
//                 centre of curvature at c + s R e_u (s = +-1, curvature_sign); beta_k = k L / R with
//                 L = spacing sigma_v, E_k = E(c + R sin(beta_k) e_v + s R (1 - cos beta_k) e_u, theta + s beta_k)
//     Conjunction cells (corner, curvature; a fraction deep_fraction) have no simple/complex base.
//   Divisive pool, every cell:
//     N = (1/8) sum_k E(c, theta + k pi / 8)                     contrast normalisation (as normalized_complex)
//     S = mean over the ring points q_k = c + rho (cos(psi + k pi / 4), sin(psi + k pi / 4)), k = 0..7,
//         rho = radius sigma_v, of E(q_k, psi) (iso-tuned) or of sum_l E(q_k, psi + l pi / 4), l = 0..3
//         (untuned: any orientation suppresses)                  surround suppression (Self et al. 2014)
//     X = E(c, psi + pi / 2)                                     cross-orientation suppression
//     Z = mean over the zones z of E(c + z, psi): end-stopping z = +-o sigma_v (cos psi, sin psi),
//         side-stopping z = +-o sigma_u (-sin psi, cos psi); one zone (the side drawn) or both  (Samonds 2017)
//     g = B / (sigma_n + N + w_s S + w_x X + w_z Z),  sigma_n = c * median over the training images of N
//   with w = 0 for each modulator the cell lacks. The rate stage is the one above (z-scored g, softplus, gain).
//   Draws (per animal): the cell counts of simple, complex, mixed (shares (1 - deep_fraction) x bases) and
//   corner, curvature (deep_fraction x conjunctions) by largest remainder, shuffled; each modulator present
//   with its probability, independently of the others. In absolute coupling a modulator is only given to
//   cells whose drawn theta lies within (pi / 2) f of 0 (mod pi), f = max(1/4, p), with probability p / f,
//   so the overall fraction stays p; conjunction cells get theta = 0 (arms and arcs at fixed image angles).
//   animal_modes removes modes from an animal (sim_config.hpp).
#pragma once

#include "sim/sim_config.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace v1sysid::sim {

// The first four are the gabor library's types; mixed, corner and curvature exist only in the deep library,
// where simple and complex name the base of a deep cell.
enum class CellType : uint8_t {
  simple = 0, complex = 1, normalized_complex = 2, center_surround = 3, mixed = 4, corner = 5, curvature = 6
};
constexpr int kNumCellTypes = 4;  // of the gabor library
const char* cell_type_name(CellType t);  // "simple", "complex", "normalized_complex", "center_surround", ...

enum class Stopping : uint8_t { none = 0, end = 1, side = 2 };
const char* stopping_name(Stopping s);  // "none", "end", "side"

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
  // Deep library (deep == true); a weight of 0 means the cell lacks that modulator. Lengths in px.
  bool deep = false;
  double energy_weight = 0;                // m of the base: 0 simple, 1 complex, in (0, 1) mixed
  double modulator_angle = 0;              // psi: orientation (relative coupling) or 0 (absolute)
  double surround_suppression_weight = 0;  // w_s
  double surround_radius = 0;              // rho
  bool surround_tuned = false;             // iso-tuned ring (true) or untuned
  double cross_orientation_weight = 0;     // w_x
  Stopping stopping = Stopping::none;
  int stopping_side = 0;                   // +1 or -1: one zone on that side; 0: both
  double stopping_offset = 0;              // o sigma_v (end) or o sigma_u (side)
  double stopping_weight = 0;              // w_z
  double corner_angle = 0;                 // alpha (radians)
  double arm_offset = 0;                   // r
  int arm_sign = 1;                        // s of a corner
  double curvature_radius = 0;             // R
  double arc_spacing = 0;                  // L
  int curvature_sign = 1;                  // s of a curvature cell
  // Set by compute_raw_drives / calibrate_rates:
  double semi_saturation = 0;        // sigma_n (normalised complex cells and deep cells)
  double raw_drive_mean = 0;
  double raw_drive_sd = 1;
  double gain = 1;
};

// Draws the neurons of one animal: cell types in the configured proportions (largest-remainder counts,
// shuffled), every parameter from its configured range. Neuron j's parameters depend only on
// (seed, animal, j) and its type (and, in the deep library, on the animal's allowed modes).
std::vector<NeuronParameters> draw_population(const SimulationConfig& config, uint64_t animal);

// Filters of one neuron on its window [x0, x0 + w) x [y0, y0 + h) of an H x W image.
struct FilterBank {
  int x0 = 0, y0 = 0, w = 0, h = 0;
  int count = 0;
  std::vector<float> weights;  // (count, h, w)
};
// simple: 1 filter; complex: the quadrature pair (phase 0, pi/2); normalized_complex: 8 orientations x the
// pair (orientation theta + k pi / 8 at rows 2k, 2k + 1); center_surround: 1 DoG.
// Gabor-library cells only: a deep cell's filters are its probes, built inside compute_raw_drives.
FilterBank make_filters(const NeuronParameters& neuron, int height, int width);

// The names of a deep cell's modulators joined by '+' ("surround_tuned+end_stopping"), or "none".
std::string modulator_names(const NeuronParameters& neuron);

// Raw drives g of every neuron on every image; sets semi_saturation of normalised complex and deep cells from the
// calibration rows (the training images), or, with no calibration rows, keeps the one the neurons have (they
// were calibrated before: the true rates of other images). Shows progress when `progress_label` is not empty.
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
