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
std::vector<int> type_counts(const CellTypeProportions& p, int n) {
  const double share[kNumCellTypes] = {p.simple, p.complex, p.normalized_complex, p.center_surround};
  std::vector<int> count(kNumCellTypes);
  std::vector<std::pair<double, int>> remainder;
  int assigned = 0;
  for (int t = 0; t < kNumCellTypes; ++t) {
    const double exact = share[t] * n;
    count[t] = static_cast<int>(std::floor(exact));
    assigned += count[t];
    remainder.push_back({-(exact - count[t]), t});  // ascending sort = largest remainder first, ties by type
  }
  std::sort(remainder.begin(), remainder.end());
  for (int k = 0; assigned < n; ++k, ++assigned) count[remainder[static_cast<size_t>(k % kNumCellTypes)].second]++;
  return count;
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

}  // namespace

const char* cell_type_name(CellType t) {
  switch (t) {
    case CellType::simple: return "simple";
    case CellType::complex: return "complex";
    case CellType::normalized_complex: return "normalized_complex";
    case CellType::center_surround: return "center_surround";
  }
  return "?";
}

std::vector<NeuronParameters> draw_population(const SimulationConfig& config, uint64_t animal) {
  const int n = config.n_neurons;
  const std::vector<int> counts = type_counts(config.cell_types, n);
  std::vector<CellType> types;
  for (int t = 0; t < kNumCellTypes; ++t) types.insert(types.end(), static_cast<size_t>(counts[static_cast<size_t>(t)]), static_cast<CellType>(t));
  Rng shuffle(config.seed, animal, Stream::cell_types, 0);
  for (size_t i = types.size(); i > 1; --i) std::swap(types[i - 1], types[shuffle.below(i)]);

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
    if (p.type == CellType::center_surround) {
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
      }
      drives[static_cast<size_t>(i * n + j)] = static_cast<float>(g);
    }
    if (neuron.type == CellType::normalized_complex) {
      std::vector<double> calibration_pool;
      calibration_pool.reserve(calibration_rows.size());
      for (int64_t r : calibration_rows) calibration_pool.push_back(pool[static_cast<size_t>(r)]);
      neuron.semi_saturation = neuron.normalization_constant * median_of(calibration_pool);
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
