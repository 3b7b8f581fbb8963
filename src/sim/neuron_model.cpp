#include "sim/neuron_model.hpp"

#include "core/error.hpp"
#include "core/kmath.hpp"
#include "core/progress.hpp"
#include "sim/random.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace v1sysid::sim {

namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr int kPoolOrientations = 8;

// Dot product with eight independent partial sums: the compiler vectorises it without reassociating
// floating-point additions, and the result does not depend on the machine.
inline float dot(const float* a, const float* b, int n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int k = 0; k < 8; ++k) acc[k] += a[i + k] * b[i + k];
  }
  float tail = 0;
  for (; i < n; ++i) tail += a[i] * b[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

// Largest-remainder counts of each type, so that the mix matches the proportions to within one neuron.
std::vector<int> type_counts(const std::vector<double>& share, int n) {
  const int types = static_cast<int>(share.size());
  std::vector<int> count(static_cast<size_t>(types));
  std::vector<std::pair<double, int>> remainder;
  int assigned = 0;
  for (int t = 0; t < types; ++t) {
    const double exact = share[static_cast<size_t>(t)] * n;
    count[static_cast<size_t>(t)] = static_cast<int>(std::floor(exact));
    assigned += count[static_cast<size_t>(t)];
    remainder.push_back(
        {-(exact - count[static_cast<size_t>(t)]), t});  // ascending = largest remainder first, ties by type
  }
  std::sort(remainder.begin(), remainder.end());
  for (int k = 0; assigned < n; ++k, ++assigned)
    count[static_cast<size_t>(remainder[static_cast<size_t>(k % types)].second)]++;
  return count;
}

// The types of one animal's cells: counts from the proportions, in a shuffled order.
std::vector<CellType> shuffled_types(const std::vector<std::pair<CellType, double>>& shares, int n,
                                     const SimulationConfig& config, uint64_t animal) {
  std::vector<double> share;
  for (const auto& s : shares) share.push_back(s.second);
  const std::vector<int> counts = type_counts(share, n);
  std::vector<CellType> types;
  for (size_t t = 0; t < shares.size(); ++t) types.insert(types.end(), static_cast<size_t>(counts[t]), shares[t].first);
  Rng shuffle(config.seed, animal, Stream::cell_types, 0);
  for (size_t i = types.size(); i > 1; --i) std::swap(types[i - 1], types[shuffle.below(i)]);
  return types;
}

// Deep library: the base and conjunction mix of one animal, with the shares of conjunctions it lacks moved
// to the one it has (none: no conjunction cells).
std::vector<std::pair<CellType, double>> deep_shares(const CellLibraryConfig& L, uint64_t animal) {
  const bool corner = L.allows(animal, "corner"), curvature = L.allows(animal, "curvature");
  double corner_share = corner ? L.corner : 0, curvature_share = curvature ? L.curvature : 0;
  const double conj = corner_share + curvature_share;
  const double f = conj > 0 ? L.deep_fraction : 0;
  if (conj > 0) {
    corner_share /= conj;
    curvature_share /= conj;
  }
  return {{CellType::simple, (1 - f) * L.simple},
          {CellType::complex, (1 - f) * L.complex},
          {CellType::mixed, (1 - f) * L.mixed},
          {CellType::corner, f * corner_share},
          {CellType::curvature, f * curvature_share}};
}

// Deep library: the cell's base parameters and modulators, from its own stream, every value drawn in the same
// order whatever the cell gets, so that one setting does not reshuffle the others.
void draw_deep_cell(const SimulationConfig& config, uint64_t animal, uint64_t j, NeuronParameters& p) {
  const CellLibraryConfig& L = config.cell_library;
  Rng rng(config.seed, animal, Stream::cell_library, j);
  const double sigma_v = p.sigma / p.aspect_ratio, sigma_u = p.sigma;
  const bool absolute = L.orientation_coupling == "absolute";
  // Absolute coupling: only cells near the image horizontal may have a modulator, with the probability raised
  // so that its overall fraction is unchanged.
  const double distance_to_horizontal = std::min(p.orientation, kPi - p.orientation);
  auto present = [&](double probability, double u) {
    if (!absolute) return u < probability;
    const double f = std::max(0.25, probability);
    return distance_to_horizontal < 0.5 * kPi * f && u < probability / f;
  };

  const double energy_weight = rng.uniform(L.mixed_energy_weight[0], L.mixed_energy_weight[1]);
  const double u_surround = rng.uniform(), u_tuned = rng.uniform();
  const double surround_radius = rng.uniform(L.surround.radius[0], L.surround.radius[1]);
  const double surround_weight = rng.uniform(L.surround.weight[0], L.surround.weight[1]);
  const double u_cross = rng.uniform();
  const double cross_weight = rng.uniform(L.cross_orientation.weight[0], L.cross_orientation.weight[1]);
  const double u_stop = rng.uniform(), u_side = rng.uniform(), u_both = rng.uniform(), u_which = rng.uniform();
  const double stop_offset = rng.uniform(L.stopping.offset[0], L.stopping.offset[1]);
  const double stop_weight = rng.uniform(L.stopping.weight[0], L.stopping.weight[1]);
  const double alpha_deg = L.corner_shape.angles_deg[rng.below(L.corner_shape.angles_deg.size())];
  const double arm_offset = rng.uniform(L.corner_shape.arm_offset[0], L.corner_shape.arm_offset[1]);
  const int arm_sign = rng.uniform() < 0.5 ? 1 : -1;
  const double curvature_radius = rng.uniform(L.curvature_shape.radius[0], L.curvature_shape.radius[1]);
  const double arc_spacing = rng.uniform(L.curvature_shape.spacing[0], L.curvature_shape.spacing[1]);
  const int curvature_sign = rng.uniform() < 0.5 ? 1 : -1;

  p.deep = true;
  p.energy_weight = p.type == CellType::simple ? 0.0 : p.type == CellType::complex ? 1.0 : energy_weight;
  p.modulator_angle = absolute ? 0.0 : p.orientation;
  if (L.allows(animal, "surround") && present(L.surround.probability, u_surround)) {
    p.surround_suppression_weight = surround_weight;
    p.surround_radius = surround_radius * sigma_v;
    p.surround_tuned = u_tuned < L.surround.tuned_fraction;
  }
  if (L.allows(animal, "cross_orientation") && present(L.cross_orientation.probability, u_cross)) {
    p.cross_orientation_weight = cross_weight;
  }
  const bool end = L.allows(animal, "end_stopping"), side = L.allows(animal, "side_stopping");
  if ((end || side) && present(L.stopping.probability, u_stop)) {
    const double side_fraction = !end ? 1.0 : !side ? 0.0 : L.stopping.side_fraction;
    p.stopping = u_side < side_fraction ? Stopping::side : Stopping::end;
    p.stopping_side = u_both < L.stopping.both_ends_fraction ? 0 : u_which < 0.5 ? 1 : -1;
    p.stopping_offset = stop_offset * (p.stopping == Stopping::end ? sigma_v : sigma_u);
    p.stopping_weight = stop_weight;
  }
  if (p.type == CellType::corner) {
    p.corner_angle = alpha_deg * kPi / 180;
    p.arm_offset = arm_offset * sigma_v;
    p.arm_sign = arm_sign;
  }
  if (p.type == CellType::curvature) {
    p.curvature_radius = curvature_radius * sigma_v;
    p.arc_spacing = arc_spacing * sigma_v;
    p.curvature_sign = curvature_sign;
  }
  if (absolute && (p.type == CellType::corner || p.type == CellType::curvature)) p.orientation = 0;
}

// Window of radius r around the rounded centre, clipped to the image.
void set_window(FilterBank& bank, double x, double y, double radius, int height, int width) {
  const int r = static_cast<int>(std::ceil(radius));
  const int cx = static_cast<int>(std::lround(x)), cy = static_cast<int>(std::lround(y));
  const int x1 = std::min(width - 1, cx + r), y1 = std::min(height - 1, cy + r);
  bank.x0 = std::max(0, cx - r);
  bank.y0 = std::max(0, cy - r);
  bank.w = x1 - bank.x0 + 1;
  bank.h = y1 - bank.y0 + 1;
}

void normalise_l2(float* w, int n) {
  double ss = 0;
  for (int i = 0; i < n; ++i) ss += double{w[i]} * w[i];
  const double scale = ss > 0 ? 1.0 / std::sqrt(ss) : 0.0;
  for (int i = 0; i < n; ++i) w[i] = static_cast<float>(w[i] * scale);
}

void fill_gabor(const FilterBank& bank, const NeuronParameters& n, double orientation, double phase, float* out) {
  const double c = std::cos(orientation), s = std::sin(orientation);
  const double g2 = n.aspect_ratio * n.aspect_ratio;
  const int size = bank.w * bank.h;
  std::vector<double> env(static_cast<size_t>(size)), gabor(static_cast<size_t>(size));
  double sum_env = 0, sum_gabor = 0;
  for (int iy = 0; iy < bank.h; ++iy) {
    for (int ix = 0; ix < bank.w; ++ix) {
      const double dx = bank.x0 + ix - n.x, dy = bank.y0 + iy - n.y;
      const double u = -dx * s + dy * c;  // across the bars
      const double v = dx * c + dy * s;   // along the bars
      const double e = std::exp(-(u * u + g2 * v * v) / (2 * n.sigma * n.sigma));
      const size_t k = static_cast<size_t>(iy * bank.w + ix);
      env[k] = e;
      gabor[k] = e * std::cos(2 * kPi * u / n.wavelength + phase);
      sum_env += e;
      sum_gabor += gabor[k];
    }
  }
  const double dc = sum_env > 0 ? sum_gabor / sum_env : 0;
  for (int k = 0; k < size; ++k) out[k] = static_cast<float>(gabor[static_cast<size_t>(k)] - dc * env[static_cast<size_t>(k)]);
  normalise_l2(out, size);
}

void fill_dog(const FilterBank& bank, const NeuronParameters& n, float* out) {
  const int size = bank.w * bank.h;
  std::vector<double> centre(static_cast<size_t>(size)), surround(static_cast<size_t>(size));
  double sc = 0, ss = 0;
  for (int iy = 0; iy < bank.h; ++iy) {
    for (int ix = 0; ix < bank.w; ++ix) {
      const double dx = bank.x0 + ix - n.x, dy = bank.y0 + iy - n.y;
      const double r2 = dx * dx + dy * dy;
      const size_t k = static_cast<size_t>(iy * bank.w + ix);
      centre[k] = std::exp(-r2 / (2 * n.sigma * n.sigma));
      surround[k] = std::exp(-r2 / (2 * n.surround_sigma * n.surround_sigma));
      sc += centre[k];
      ss += surround[k];
    }
  }
  for (int k = 0; k < size; ++k) {
    const size_t i = static_cast<size_t>(k);
    out[k] = static_cast<float>(n.polarity * (centre[i] / sc - n.surround_weight * surround[i] / ss));
  }
  normalise_l2(out, size);
}

double median_of(std::vector<double> v) {
  if (v.empty()) return 0;
  const size_t mid = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid), v.end());
  double m = v[mid];
  if (v.size() % 2 == 0) m = 0.5 * (m + *std::max_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid)));
  return m;
}

// Deep library: `n_orientations` quadrature pairs (orientation phi_0 + k step at rows 2k, 2k + 1) of the cell's
// Gabor centred at (x, y), built on the full window and then cut to the image (pixels outside it count as
// mean grey). A probe wholly outside the image keeps its filter count with an empty window (outputs 0).
FilterBank make_probe(const NeuronParameters& cell, double x, double y, double phi_0, int n_orientations, double step,
                      int height, int width) {
  NeuronParameters shape = cell;
  shape.x = x;
  shape.y = y;
  FilterBank full;
  const int r = static_cast<int>(std::ceil(3 * cell.sigma / cell.aspect_ratio));
  full.x0 = static_cast<int>(std::lround(x)) - r;
  full.y0 = static_cast<int>(std::lround(y)) - r;
  full.w = full.h = 2 * r + 1;
  const int full_size = full.w * full.h;
  std::vector<float> weights(static_cast<size_t>(2 * n_orientations * full_size));
  for (int k = 0; k < n_orientations; ++k) {
    fill_gabor(full, shape, phi_0 + k * step, 0.0, weights.data() + static_cast<size_t>(2 * k * full_size));
    fill_gabor(full, shape, phi_0 + k * step, 0.5 * kPi, weights.data() + static_cast<size_t>((2 * k + 1) * full_size));
  }
  FilterBank bank;
  bank.count = 2 * n_orientations;
  bank.x0 = std::max(0, full.x0);
  bank.y0 = std::max(0, full.y0);
  const int x1 = std::min(width - 1, full.x0 + full.w - 1), y1 = std::min(height - 1, full.y0 + full.h - 1);
  if (x1 < bank.x0 || y1 < bank.y0) return bank;  // w = h = 0
  bank.w = x1 - bank.x0 + 1;
  bank.h = y1 - bank.y0 + 1;
  bank.weights.resize(static_cast<size_t>(bank.count * bank.w * bank.h));
  for (int f = 0; f < bank.count; ++f) {
    for (int iy = 0; iy < bank.h; ++iy) {
      const float* src =
          weights.data() + static_cast<size_t>(f * full_size + (bank.y0 - full.y0 + iy) * full.w + (bank.x0 - full.x0));
      std::copy(src, src + bank.w, bank.weights.begin() + static_cast<std::ptrdiff_t>((f * bank.h + iy) * bank.w));
    }
  }
  return bank;
}

// Every filter of a bank on one image (z-scored, H x W row-major); `patch` is scratch space.
void apply_bank(const FilterBank& bank, const float* image, int width, std::vector<float>& patch, float* out) {
  const int size = bank.w * bank.h;
  patch.resize(static_cast<size_t>(size));
  for (int iy = 0; iy < bank.h; ++iy) {
    const float* row = image + static_cast<size_t>(bank.y0 + iy) * static_cast<size_t>(width) + bank.x0;
    std::copy(row, row + bank.w, patch.begin() + iy * bank.w);
  }
  for (int f = 0; f < bank.count; ++f)
    out[f] = dot(bank.weights.data() + static_cast<size_t>(f * size), patch.data(), size);
}

double pair_energy(const float* out) { return std::sqrt(double{out[0]} * out[0] + double{out[1]} * out[1]); }

// Mean energy of the pairs of a bank on one image.
double mean_energy(const FilterBank& bank, const float* image, int width, std::vector<float>& patch,
                   std::vector<float>& out) {
  out.resize(static_cast<size_t>(bank.count));
  apply_bank(bank, image, width, patch, out.data());
  double sum = 0;
  for (int k = 0; k < bank.count / 2; ++k) sum += pair_energy(out.data() + 2 * k);
  return sum / (bank.count / 2);
}

// The probes of one deep cell (neuron_model.hpp, "Deep library").
struct DeepProbes {
  FilterBank centre;              // pairs at theta + k pi / 8, k = 0..7: the base (k = 0) and N
  std::vector<FilterBank> base;   // corner arms or curvature segments, one pair each
  std::vector<FilterBank> ring;   // surround: one pair (iso-tuned) or four (untuned) at each of 8 points
  std::vector<FilterBank> cross;  // X: one pair, or none
  std::vector<FilterBank> zones;  // stopping zones, one pair each
};

DeepProbes make_deep_probes(const NeuronParameters& p, int height, int width) {
  DeepProbes probes;
  const double theta = p.orientation, psi = p.modulator_angle;
  auto probe = [&](double dx, double dy, double phi, int n_orientations = 1, double step = 0) {
    return make_probe(p, p.x + dx, p.y + dy, phi, n_orientations, step, height, width);
  };
  probes.centre = probe(0, 0, theta, kPoolOrientations, kPi / kPoolOrientations);
  const double ev_x = std::cos(theta), ev_y = std::sin(theta);  // along the bars
  const double eu_x = -ev_y, eu_y = ev_x;                       // across
  if (p.type == CellType::corner) {
    for (double phi : {theta, theta + p.corner_angle}) {
      const double d = p.arm_sign * p.arm_offset;
      probes.base.push_back(probe(d * std::cos(phi), d * std::sin(phi), phi));
    }
  } else if (p.type == CellType::curvature) {
    const double R = p.curvature_radius, s = p.curvature_sign;
    for (int k = -1; k <= 1; ++k) {
      const double beta = k * p.arc_spacing / R;
      const double v = R * std::sin(beta), u = s * R * (1 - std::cos(beta));
      probes.base.push_back(probe(v * ev_x + u * eu_x, v * ev_y + u * eu_y, theta + s * beta));
    }
  }
  if (p.surround_suppression_weight > 0) {
    for (int k = 0; k < 8; ++k) {
      const double a = psi + k * kPi / 4;
      const double dx = p.surround_radius * std::cos(a), dy = p.surround_radius * std::sin(a);
      probes.ring.push_back(p.surround_tuned ? probe(dx, dy, psi) : probe(dx, dy, psi, 4, kPi / 4));
    }
  }
  if (p.cross_orientation_weight > 0) probes.cross.push_back(probe(0, 0, psi + 0.5 * kPi));
  if (p.stopping != Stopping::none) {
    // End zones lie along the bars (psi), side zones across them (psi + pi / 2).
    const double a = p.stopping == Stopping::end ? psi : psi + 0.5 * kPi;
    for (int side : {1, -1}) {
      if (p.stopping_side != 0 && side != p.stopping_side) continue;
      const double o = side * p.stopping_offset;
      probes.zones.push_back(probe(o * std::cos(a), o * std::sin(a), psi));
    }
  }
  return probes;
}

// Raw drive parts of a deep cell on one image: base B, contrast pool N and the modulator terms
// w_s S + w_x X + w_z Z.
struct DeepParts {
  double base = 0, pool = 0, modulators = 0;
};

DeepParts deep_parts(const NeuronParameters& p, const DeepProbes& probes, const float* image, int width,
                     std::vector<float>& patch, std::vector<float>& out) {
  DeepParts parts;
  out.resize(2 * kPoolOrientations);
  apply_bank(probes.centre, image, width, patch, out.data());
  double sum = 0;
  for (int k = 0; k < kPoolOrientations; ++k) sum += pair_energy(out.data() + 2 * k);
  parts.pool = sum / kPoolOrientations;
  if (p.type == CellType::corner || p.type == CellType::curvature) {
    double product = 1;
    for (const FilterBank& b : probes.base) product *= mean_energy(b, image, width, patch, out);
    parts.base = p.type == CellType::corner ? std::sqrt(product) : std::cbrt(product);
  } else {
    const double linear = std::cos(p.phase) * out[0] + std::sin(p.phase) * out[1];
    parts.base = (1 - p.energy_weight) * std::max(0.0, linear) + p.energy_weight * pair_energy(out.data());
  }
  auto mean_over = [&](const std::vector<FilterBank>& banks) {
    double total = 0;
    for (const FilterBank& b : banks) total += mean_energy(b, image, width, patch, out);
    return total / static_cast<double>(banks.size());
  };
  // An untuned ring point sums its four orientations, so that an iso-oriented surround suppresses about as
  // much as through a tuned ring of the same weight, and any other orientation does too.
  const double ring_pairs = p.surround_tuned ? 1.0 : 4.0;
  if (!probes.ring.empty()) parts.modulators += p.surround_suppression_weight * ring_pairs * mean_over(probes.ring);
  if (!probes.cross.empty()) parts.modulators += p.cross_orientation_weight * mean_over(probes.cross);
  if (!probes.zones.empty()) parts.modulators += p.stopping_weight * mean_over(probes.zones);
  return parts;
}

// Raw drives of one deep cell on every image (column j of `drives`), and its semi-saturation.
void deep_drives(NeuronParameters& p, const std::vector<float>& images, int64_t n_images, int height, int width,
                 const std::vector<int64_t>& calibration_rows, int64_t j, int64_t n, std::vector<float>& drives) {
  const DeepProbes probes = make_deep_probes(p, height, width);
  const size_t image_size = static_cast<size_t>(height) * static_cast<size_t>(width);
  std::vector<float> patch, out;
  std::vector<DeepParts> parts(static_cast<size_t>(n_images));
  for (int64_t i = 0; i < n_images; ++i) {
    parts[static_cast<size_t>(i)] =
        deep_parts(p, probes, images.data() + static_cast<size_t>(i) * image_size, width, patch, out);
  }
  if (!calibration_rows.empty()) {
    std::vector<double> calibration_pool;
    calibration_pool.reserve(calibration_rows.size());
    for (int64_t r : calibration_rows) calibration_pool.push_back(parts[static_cast<size_t>(r)].pool);
    p.semi_saturation = p.normalization_constant * median_of(calibration_pool);
  }
  for (int64_t i = 0; i < n_images; ++i) {
    const DeepParts& q = parts[static_cast<size_t>(i)];
    const double denominator = p.semi_saturation + q.pool + q.modulators;
    drives[static_cast<size_t>(i * n + j)] = static_cast<float>(denominator > 0 ? q.base / denominator : 0.0);
  }
}

}  // namespace

const char* cell_type_name(CellType t) {
  switch (t) {
    case CellType::simple: return "simple";
    case CellType::complex: return "complex";
    case CellType::normalized_complex: return "normalized_complex";
    case CellType::center_surround: return "center_surround";
    case CellType::mixed:
      return "mixed";
    case CellType::corner:
      return "corner";
    case CellType::curvature:
      return "curvature";
  }
  return "?";
}

const char* stopping_name(Stopping s) {
  switch (s) {
    case Stopping::none:
      return "none";
    case Stopping::end:
      return "end";
    case Stopping::side:
      return "side";
  }
  return "?";
}

std::string modulator_names(const NeuronParameters& p) {
  std::string names;
  auto add = [&](const char* name) { names += (names.empty() ? "" : "+") + std::string(name); };
  if (p.surround_suppression_weight > 0) add(p.surround_tuned ? "surround_tuned" : "surround_untuned");
  if (p.cross_orientation_weight > 0) add("cross_orientation");
  if (p.stopping == Stopping::end) add("end_stopping");
  if (p.stopping == Stopping::side) add("side_stopping");
  return names.empty() ? "none" : names;
}

std::vector<NeuronParameters> draw_population(const SimulationConfig& config, uint64_t animal) {
  const int n = config.neurons_of(static_cast<int>(animal));
  const bool deep = config.cell_library.deep();
  const auto& mix = config.cell_types;
  const std::vector<CellType> types = deep ? shuffled_types(deep_shares(config.cell_library, animal), n, config, animal)
                                           : shuffled_types({{CellType::simple, mix.simple},
                                                             {CellType::complex, mix.complex},
                                                             {CellType::normalized_complex, mix.normalized_complex},
                                                             {CellType::center_surround, mix.center_surround}},
                                                            n, config, animal);

  const auto& rf = config.receptive_fields;
  const auto& resp = config.responses;
  const double margin = rf.position_margin_px;
  std::vector<NeuronParameters> neurons(static_cast<size_t>(n));
  for (int j = 0; j < n; ++j) {
    // Every neuron draws all parameters in the same order, whatever its type, so changing one range or
    // one proportion does not reshuffle the other parameters' streams.
    Rng rng(config.seed, animal, Stream::neuron, static_cast<uint64_t>(j));
    NeuronParameters& p = neurons[static_cast<size_t>(j)];
    p.type = types[static_cast<size_t>(j)];
    p.x = rng.uniform(margin, config.width - 1 - margin);
    p.y = rng.uniform(margin, config.height - 1 - margin);
    p.orientation = rng.uniform(0, kPi);
    p.phase = rng.uniform(0, 2 * kPi);
    p.wavelength = rng.log_uniform(rf.wavelength_px[0], rf.wavelength_px[1]);
    const double gabor_sigma = rng.uniform(rf.sigma_px[0], rf.sigma_px[1]);
    p.aspect_ratio = rng.uniform(rf.aspect_ratio[0], rf.aspect_ratio[1]);
    const double centre_sigma = rng.uniform(rf.center_sigma_px[0], rf.center_sigma_px[1]);
    const double surround_ratio = rng.uniform(rf.surround_ratio[0], rf.surround_ratio[1]);
    const double surround_weight = rng.uniform(rf.surround_weight[0], rf.surround_weight[1]);
    const bool on = rng.uniform() < rf.on_fraction;
    const double normalization = rng.log_uniform(rf.normalization_constant[0], rf.normalization_constant[1]);
    p.selectivity = rng.uniform(resp.selectivity[0], resp.selectivity[1]);
    p.threshold = rng.uniform(resp.threshold[0], resp.threshold[1]);
    p.baseline = rng.uniform(resp.baseline[0], resp.baseline[1]);
    p.target_mean_rate = rng.log_uniform(resp.mean_rate[0], resp.mean_rate[1]);
    if (deep) {
      p.sigma = gabor_sigma;
      p.normalization_constant = normalization;
      draw_deep_cell(config, animal, static_cast<uint64_t>(j), p);
    } else if (p.type == CellType::center_surround) {
      p.sigma = centre_sigma;
      p.surround_sigma = centre_sigma * surround_ratio;
      p.surround_weight = surround_weight;
      p.polarity = on ? 1 : -1;
    } else {
      p.sigma = gabor_sigma;
    }
    if (p.type == CellType::normalized_complex) p.normalization_constant = normalization;
  }
  return neurons;
}

FilterBank make_filters(const NeuronParameters& n, int height, int width) {
  FilterBank bank;
  if (n.type == CellType::center_surround) {
    set_window(bank, n.x, n.y, 3 * n.surround_sigma, height, width);
    bank.count = 1;
    bank.weights.resize(static_cast<size_t>(bank.w * bank.h));
    fill_dog(bank, n, bank.weights.data());
    return bank;
  }
  set_window(bank, n.x, n.y, 3 * n.sigma / n.aspect_ratio, height, width);
  const int size = bank.w * bank.h;
  bank.count = n.type == CellType::simple ? 1 : n.type == CellType::complex ? 2 : 2 * kPoolOrientations;
  bank.weights.resize(static_cast<size_t>(bank.count * size));
  if (n.type == CellType::simple) {
    fill_gabor(bank, n, n.orientation, n.phase, bank.weights.data());
  } else {
    for (int k = 0; k < bank.count / 2; ++k) {
      const double theta = n.orientation + k * kPi / kPoolOrientations;
      fill_gabor(bank, n, theta, 0.0, bank.weights.data() + static_cast<size_t>(2 * k * size));
      fill_gabor(bank, n, theta, 0.5 * kPi, bank.weights.data() + static_cast<size_t>((2 * k + 1) * size));
    }
  }
  return bank;
}

std::vector<float> compute_raw_drives(std::vector<NeuronParameters>& neurons, const std::vector<float>& images,
                                      int64_t n_images, int height, int width,
                                      const std::vector<int64_t>& calibration_rows,
                                      const std::string& progress_label) {
  const int64_t n = static_cast<int64_t>(neurons.size());
  std::vector<float> drives(static_cast<size_t>(n_images * n));
  std::vector<float> patch;
  std::vector<double> energy(static_cast<size_t>(n_images)), pool(static_cast<size_t>(n_images));
  const size_t image_size = static_cast<size_t>(height) * static_cast<size_t>(width);
  Progress progress(progress_label, static_cast<long>(n));
  for (int64_t j = 0; j < n; ++j) {
    NeuronParameters& neuron = neurons[static_cast<size_t>(j)];
    if (neuron.deep) {
      deep_drives(neuron, images, n_images, height, width, calibration_rows, j, n, drives);
      if (!progress_label.empty()) progress.update(static_cast<long>(j + 1));
      continue;
    }
    const FilterBank bank = make_filters(neuron, height, width);
    const int size = bank.w * bank.h;
    patch.resize(static_cast<size_t>(size));
    float out[2 * kPoolOrientations];
    for (int64_t i = 0; i < n_images; ++i) {
      // Gather the window into a contiguous patch so every filter is one dot product.
      const float* img = images.data() + static_cast<size_t>(i) * image_size;
      for (int iy = 0; iy < bank.h; ++iy) {
        const float* row = img + static_cast<size_t>(bank.y0 + iy) * static_cast<size_t>(width) + bank.x0;
        std::copy(row, row + bank.w, patch.begin() + iy * bank.w);
      }
      for (int f = 0; f < bank.count; ++f) {
        out[f] = dot(bank.weights.data() + static_cast<size_t>(f * size), patch.data(), size);
      }
      double g = 0;
      switch (neuron.type) {
        case CellType::simple:
        case CellType::center_surround:
          g = std::max(0.0f, out[0]);
          break;
        case CellType::complex:
          g = std::sqrt(double{out[0]} * out[0] + double{out[1]} * out[1]);
          break;
        case CellType::normalized_complex: {
          double sum = 0;
          for (int k = 0; k < kPoolOrientations; ++k) {
            const double e = std::sqrt(double{out[2 * k]} * out[2 * k] + double{out[2 * k + 1]} * out[2 * k + 1]);
            if (k == 0) energy[static_cast<size_t>(i)] = e;
            sum += e;
          }
          pool[static_cast<size_t>(i)] = sum / kPoolOrientations;
          break;
        }
        case CellType::mixed:  // deep-library cells are computed by deep_drives
        case CellType::corner:
        case CellType::curvature:
          break;
      }
      drives[static_cast<size_t>(i * n + j)] = static_cast<float>(g);
    }
    if (neuron.type == CellType::normalized_complex) {
      if (!calibration_rows.empty()) {
        std::vector<double> calibration_pool;
        calibration_pool.reserve(calibration_rows.size());
        for (int64_t r : calibration_rows) calibration_pool.push_back(pool[static_cast<size_t>(r)]);
        neuron.semi_saturation = neuron.normalization_constant * median_of(calibration_pool);
      }
      for (int64_t i = 0; i < n_images; ++i) {
        const double denominator = neuron.semi_saturation + pool[static_cast<size_t>(i)];
        drives[static_cast<size_t>(i * n + j)] =
            static_cast<float>(denominator > 0 ? energy[static_cast<size_t>(i)] / denominator : 0.0);
      }
    }
    if (!progress_label.empty()) progress.update(static_cast<long>(j + 1));
  }
  if (!progress_label.empty()) progress.finish();
  return drives;
}

double rate_of_raw_drive(const NeuronParameters& p, double raw_drive) {
  const double drive = p.selectivity * (raw_drive - p.raw_drive_mean) / p.raw_drive_sd;
  return p.gain * kmath::softplus(drive - p.threshold) + p.baseline;
}

std::vector<float> calibrate_rates(std::vector<NeuronParameters>& neurons, const std::vector<float>& raw_drives,
                                   int64_t n_images, const std::vector<int64_t>& calibration_rows) {
  const int64_t n = static_cast<int64_t>(neurons.size());
  if (calibration_rows.empty()) throw DataError("no training images to calibrate the neurons on", "simulate", "");
  std::vector<float> rates(static_cast<size_t>(n_images * n));
  const double m = static_cast<double>(calibration_rows.size());
  for (int64_t j = 0; j < n; ++j) {
    NeuronParameters& p = neurons[static_cast<size_t>(j)];
    auto g = [&](int64_t i) { return double{raw_drives[static_cast<size_t>(i * n + j)]}; };
    double mean = 0, var = 0;
    for (int64_t r : calibration_rows) mean += g(r);
    mean /= m;
    for (int64_t r : calibration_rows) var += (g(r) - mean) * (g(r) - mean);
    var /= m;
    p.raw_drive_mean = mean;
    // A neuron whose filter sees a constant input everywhere has no image dependence; keep it finite.
    p.raw_drive_sd = var > 0 ? std::sqrt(var) : 1.0;
    p.gain = 1;
    const double saved_baseline = p.baseline;
    p.baseline = 0;
    double mean_softplus = 0;
    for (int64_t r : calibration_rows) mean_softplus += rate_of_raw_drive(p, g(r));
    mean_softplus /= m;
    p.baseline = saved_baseline;
    p.gain = (p.target_mean_rate - p.baseline) / mean_softplus;
    for (int64_t i = 0; i < n_images; ++i) rates[static_cast<size_t>(i * n + j)] = static_cast<float>(rate_of_raw_drive(p, g(i)));
  }
  return rates;
}

}  // namespace v1sysid::sim
