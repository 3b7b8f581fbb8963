#include "analysis/mei.hpp"

#include "analysis/receptive_field.hpp"
#include "core/error.hpp"
#include "core/progress.hpp"
#include "core/random.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

namespace v1sysid {

void gaussian_blur(std::vector<double>& image, int64_t height, int64_t width, double sigma) {
  if (!(sigma > 0)) return;
  const int64_t radius = static_cast<int64_t>(std::ceil(3 * sigma));
  std::vector<double> kernel(static_cast<size_t>(2 * radius + 1));
  for (int64_t k = -radius; k <= radius; ++k)
    kernel[static_cast<size_t>(k + radius)] = std::exp(-0.5 * static_cast<double>(k * k) / (sigma * sigma));
  std::vector<double> tmp(image.size());
  // Rows, then columns; the weights that fall outside the image are left out and the rest renormalised.
  auto pass = [&](const std::vector<double>& in, std::vector<double>& out, bool along_rows) {
    const int64_t lines = along_rows ? height : width, length = along_rows ? width : height;
    for (int64_t l = 0; l < lines; ++l) {
      for (int64_t i = 0; i < length; ++i) {
        double sum = 0, weight = 0;
        for (int64_t k = std::max<int64_t>(-radius, -i); k <= std::min<int64_t>(radius, length - 1 - i); ++k) {
          const int64_t j = i + k;
          const size_t at = static_cast<size_t>(along_rows ? l * width + j : j * width + l);
          sum += kernel[static_cast<size_t>(k + radius)] * in[at];
          weight += kernel[static_cast<size_t>(k + radius)];
        }
        out[static_cast<size_t>(along_rows ? l * width + i : i * width + l)] = sum / weight;
      }
    }
  };
  pass(image, tmp, true);
  pass(tmp, image, false);
}

namespace {

void check_options(const MeiOptions& o) {
  auto bad = [](const std::string& option, const std::string& what) {
    throw ConfigError(what, option, "see v1sysid mei --help");
  };
  if (o.steps < 1) bad("--steps", "the number of steps must be positive");
  if (o.starts < 1) bad("--starts", "the number of random starts must be positive");
  if (!(o.rms > 0) || !std::isfinite(o.rms)) bad("--rms", "the RMS contrast must be a positive number");
  if (!(o.step > 0) || !std::isfinite(o.step)) bad("--step", "the step must be a positive number");
  if (!(o.blur_start >= 0) || !(o.blur_end >= 0)) bad("--blur", "blur sigmas must be >= 0");
  if (o.batch < 1) bad("--batch", "the batch must be positive");
}

double norm_of(const double* x, int64_t size) {
  double ss = 0;
  for (int64_t k = 0; k < size; ++k) ss += x[k] * x[k];
  return std::sqrt(ss);
}

// Scales x to the target norm (a zero x stays zero), then clips every pixel to [lo, hi].
void project(double* x, int64_t size, double target, double lo, double hi) {
  const double n = norm_of(x, size);
  const double scale = n > 0 ? target / n : 0.0;
  for (int64_t k = 0; k < size; ++k) x[k] = std::clamp(x[k] * scale, lo, hi);
}

}  // namespace

template <class T>
MostExcitingInputs<T> compute_meis(Model<T>& model, const Preprocessing& p, std::vector<int64_t> neurons,
                                   const MeiOptions& o, int readout) {
  check_options(o);
  if (readout < 0 || readout >= model.num_readouts())
    throw ConfigError("readout " + std::to_string(readout) + " does not exist", "--data-key",
                      "name one of the checkpoint's data keys");
  const int64_t N = model.readout_spec(readout).n_neurons, H = model.height(), W = model.width(), HW = H * W;
  if (neurons.empty())
    for (int64_t n = 0; n < N; ++n) neurons.push_back(n);
  check_neuron_list(neurons, N);
  if (static_cast<int64_t>(p.response_std.size()) != N)
    throw ShapeError("response_std has " + std::to_string(p.response_std.size()) + " entries for " +
                         std::to_string(N) + " neurons",
                     "the checkpoint's preprocessing", "re-export the checkpoint");
  const int64_t count = static_cast<int64_t>(neurons.size()), pairs = count * o.starts;
  const int B = static_cast<int>(std::min<int64_t>(o.batch, pairs));
  const double target = o.rms * std::sqrt(static_cast<double>(HW));
  const double lo = (0.0 - p.image_mean) / p.image_std, hi = (255.0 - p.image_mean) / p.image_std;

  auto ws = model.make_workspace(B);
  View1<T> d_prediction("v1sysid::mei::d_prediction", static_cast<size_t>(B * N));
  View1<T> d_images("v1sysid::mei::d_images", static_cast<size_t>(B * HW));
  auto d_prediction_host = Kokkos::create_mirror_view(d_prediction);
  auto d_images_host = Kokkos::create_mirror_view(d_images);
  auto images_host = Kokkos::create_mirror_view(ws.images);
  auto yhat_host = Kokkos::create_mirror_view(ws.prediction);

  MostExcitingInputs<T> out;
  out.neurons = neurons;
  out.height = H;
  out.width = W;
  out.images.resize(static_cast<size_t>(count * HW));
  out.activation.assign(static_cast<size_t>(count), -std::numeric_limits<double>::infinity());
  out.activation_by_start.resize(static_cast<size_t>(pairs));
  out.activation_at_gray.resize(static_cast<size_t>(count));
  auto stored = [&](int64_t n, double prediction) {
    return prediction * static_cast<double>(p.response_std[static_cast<size_t>(n)]);
  };

  // The gray image (0 after preprocessing) once, for the reference activation.
  for (int64_t i0 = 0; i0 < count; i0 += B) {
    const int b = static_cast<int>(std::min<int64_t>(B, count - i0));
    Kokkos::deep_copy(ws.images, T(0));
    model.forward(ws, b, false, readout);
    Kokkos::deep_copy(yhat_host, ws.prediction);
    for (int r = 0; r < b; ++r) {
      const int64_t n = neurons[static_cast<size_t>(i0 + r)];
      out.activation_at_gray[static_cast<size_t>(i0 + r)] = stored(n, yhat_host(static_cast<size_t>(r * N + n)));
    }
  }

  Progress progress("mei", static_cast<long>((pairs + B - 1) / B * o.steps));
  long done = 0;
  std::vector<double> x(static_cast<size_t>(B * HW)), g(static_cast<size_t>(HW));
  for (int64_t q0 = 0; q0 < pairs; q0 += B) {  // pair q: neuron index q / starts, start q % starts
    const int b = static_cast<int>(std::min<int64_t>(B, pairs - q0));
    auto neuron_of = [&](int r) { return neurons[static_cast<size_t>((q0 + r) / o.starts)]; };
    for (int r = 0; r < b; ++r) {
      SplitMix64 rng(o.seed, static_cast<uint64_t>(neuron_of(r)) * 1000003u + static_cast<uint64_t>((q0 + r) % o.starts));
      double* xr = x.data() + r * HW;
      for (int64_t k = 0; k < HW; ++k) xr[k] = rng.normal();
      project(xr, HW, target, lo, hi);
    }
    Kokkos::deep_copy(d_prediction_host, T(0));
    for (int r = 0; r < b; ++r) d_prediction_host(static_cast<size_t>(r * N + neuron_of(r))) = T(1);
    Kokkos::deep_copy(d_prediction, d_prediction_host);
    for (int step = 0; step <= o.steps; ++step) {
      for (int64_t k = 0; k < static_cast<int64_t>(b) * HW; ++k) images_host(static_cast<size_t>(k)) = static_cast<T>(x[static_cast<size_t>(k)]);
      Kokkos::deep_copy(ws.images, images_host);
      model.forward(ws, b, false, readout);
      if (step == o.steps) break;  // the last forward scores the final images
      model.input_gradient(ws, b, d_prediction, d_images, readout);
      Kokkos::deep_copy(d_images_host, d_images);
      const double frac = o.steps > 1 ? static_cast<double>(step) / (o.steps - 1) : 0.0;
      const double sigma = o.blur_start + (o.blur_end - o.blur_start) * frac;
      const double step_size = o.step * (1.0 - 0.9 * frac) * target;
      for (int r = 0; r < b; ++r) {
        for (int64_t k = 0; k < HW; ++k) g[static_cast<size_t>(k)] = d_images_host(static_cast<size_t>(r * HW + k));
        gaussian_blur(g, H, W, sigma);
        const double gn = norm_of(g.data(), HW);
        if (!(gn > 0)) continue;  // a neuron blind to its input (dead unit): nothing to climb
        double* xr = x.data() + r * HW;
        for (int64_t k = 0; k < HW; ++k) xr[k] += step_size * g[static_cast<size_t>(k)] / gn;
        project(xr, HW, target, lo, hi);
      }
      progress.update(++done);
    }
    Kokkos::deep_copy(yhat_host, ws.prediction);
    for (int r = 0; r < b; ++r) {
      const int64_t q = q0 + r, i = q / o.starts, n = neuron_of(r);
      const double a = stored(n, yhat_host(static_cast<size_t>(r * N + n)));
      out.activation_by_start[static_cast<size_t>(q)] = a;
      if (a > out.activation[static_cast<size_t>(i)]) {
        out.activation[static_cast<size_t>(i)] = a;
        for (int64_t k = 0; k < HW; ++k)
          out.images[static_cast<size_t>(i * HW + k)] =
              static_cast<float>(x[static_cast<size_t>(r * HW + k)] * p.image_std + p.image_mean);
      }
    }
  }
  progress.finish();
  return out;
}

template MostExcitingInputs<float> compute_meis(Model<float>&, const Preprocessing&, std::vector<int64_t>,
                                                const MeiOptions&, int);
template MostExcitingInputs<double> compute_meis(Model<double>&, const Preprocessing&, std::vector<int64_t>,
                                                 const MeiOptions&, int);

}  // namespace v1sysid
