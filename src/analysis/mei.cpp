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
  return compute_meis(std::vector<MeiMember<T>>{{&model, &p}}, std::move(neurons), o, readout);
}

template <class T>
MostExcitingInputs<T> compute_meis(const std::vector<MeiMember<T>>& members, std::vector<int64_t> neurons,
                                   const MeiOptions& o, int readout) {
  check_options(o);
  if (members.empty()) throw ConfigError("no model to find inputs for", "--checkpoint", "pass a checkpoint");
  Model<T>& first = *members.front().model;
  if (readout < 0 || readout >= first.num_readouts())
    throw ConfigError("readout " + std::to_string(readout) + " does not exist", "--data-key",
                      "name one of the checkpoint's data keys");
  const int64_t N = first.readout_spec(readout).n_neurons, H = first.height(), W = first.width(), HW = H * W;
  if (neurons.empty())
    for (int64_t n = 0; n < N; ++n) neurons.push_back(n);
  check_neuron_list(neurons, N);
  for (const auto& m : members) {
    if (m.model->readout_spec(readout).n_neurons != N || m.model->height() != H || m.model->width() != W)
      throw ShapeError("the ensemble's members differ in image size or neuron count", "--checkpoint",
                       "build the ensemble from one architecture on one dataset");
    if (static_cast<int64_t>(m.preprocessing->response_std.size()) != N)
      throw ShapeError("response_std has " + std::to_string(m.preprocessing->response_std.size()) + " entries for " +
                           std::to_string(N) + " neurons",
                       "the checkpoint's preprocessing", "re-export the checkpoint");
  }
  const Preprocessing& p0 = *members.front().preprocessing;
  const auto K = static_cast<double>(members.size());
  const int64_t count = static_cast<int64_t>(neurons.size()), pairs = count * o.starts;
  const int B = static_cast<int>(std::min<int64_t>(o.batch, pairs));
  const double target = o.rms * std::sqrt(static_cast<double>(HW));
  const double lo = (0.0 - p0.image_mean) / p0.image_std, hi = (255.0 - p0.image_mean) / p0.image_std;

  // Per member: its workspace, output gradient (one-hot rows weighted by response_std / K: the gradient of the
  // mean stored-unit prediction) and host mirrors.
  struct Buffers {
    ModelWorkspace<T> ws;
    View1<T> d_prediction, d_images;
    typename View1<T>::HostMirror d_prediction_host, d_images_host, images_host, yhat_host;
  };
  std::vector<Buffers> buffers;
  for (const auto& m : members) {
    Buffers b{m.model->make_workspace(B), View1<T>("v1sysid::mei::d_prediction", static_cast<size_t>(B * N)),
              View1<T>("v1sysid::mei::d_images", static_cast<size_t>(B * HW)), {}, {}, {}, {}};
    b.d_prediction_host = Kokkos::create_mirror_view(b.d_prediction);
    b.d_images_host = Kokkos::create_mirror_view(b.d_images);
    b.images_host = Kokkos::create_mirror_view(b.ws.images);
    b.yhat_host = Kokkos::create_mirror_view(b.ws.prediction);
    buffers.push_back(std::move(b));
  }
  // x (first member's scale) -> member m's input: the same grey levels through its own statistics.
  auto upload = [&](size_t m, const double* x, int b) {
    const Preprocessing& pm = *members[m].preprocessing;
    auto& host = buffers[m].images_host;
    for (int64_t k = 0; k < static_cast<int64_t>(b) * HW; ++k)
      host(static_cast<size_t>(k)) = static_cast<T>((x[k] * p0.image_std + p0.image_mean - pm.image_mean) / pm.image_std);
    Kokkos::deep_copy(buffers[m].ws.images, host);
  };
  auto download_predictions = [&] {
    for (auto& b : buffers) Kokkos::deep_copy(b.yhat_host, b.ws.prediction);
  };
  // Mean stored-unit prediction of row r for neuron n (after download_predictions).
  auto mean_prediction = [&](int r, int64_t n) {
    double sum = 0;
    for (size_t m = 0; m < members.size(); ++m) {
      sum += buffers[m].yhat_host(static_cast<size_t>(r * N + n)) *
             static_cast<double>(members[m].preprocessing->response_std[static_cast<size_t>(n)]);
    }
    return sum / K;
  };

  MostExcitingInputs<T> out;
  out.neurons = neurons;
  out.height = H;
  out.width = W;
  out.images.resize(static_cast<size_t>(count * HW));
  out.activation.assign(static_cast<size_t>(count), -std::numeric_limits<double>::infinity());
  out.activation_by_start.resize(static_cast<size_t>(pairs));
  out.activation_at_gray.resize(static_cast<size_t>(count));

  std::vector<double> x(static_cast<size_t>(B * HW), 0.0), g(static_cast<size_t>(HW)), total(static_cast<size_t>(B * HW));
  // The uniform mean-grey image, for the reference activation.
  for (int64_t i0 = 0; i0 < count; i0 += B) {
    const int b = static_cast<int>(std::min<int64_t>(B, count - i0));
    std::fill(x.begin(), x.end(), 0.0);
    for (size_t m = 0; m < members.size(); ++m) {
      upload(m, x.data(), b);
      members[m].model->forward(buffers[m].ws, b, false, readout);
    }
    download_predictions();
    for (int r = 0; r < b; ++r)
      out.activation_at_gray[static_cast<size_t>(i0 + r)] = mean_prediction(r, neurons[static_cast<size_t>(i0 + r)]);
  }

  Progress progress("mei", static_cast<long>((pairs + B - 1) / B * o.steps));
  long done = 0;
  for (int64_t q0 = 0; q0 < pairs; q0 += B) {  // pair q: neuron index q / starts, start q % starts
    const int b = static_cast<int>(std::min<int64_t>(B, pairs - q0));
    auto neuron_of = [&](int r) { return neurons[static_cast<size_t>((q0 + r) / o.starts)]; };
    for (int r = 0; r < b; ++r) {
      SplitMix64 rng(o.seed, static_cast<uint64_t>(neuron_of(r)) * 1000003u + static_cast<uint64_t>((q0 + r) % o.starts));
      double* xr = x.data() + r * HW;
      for (int64_t k = 0; k < HW; ++k) xr[k] = rng.normal();
      project(xr, HW, target, lo, hi);
    }
    for (size_t m = 0; m < members.size(); ++m) {
      auto& dp = buffers[m].d_prediction_host;
      Kokkos::deep_copy(dp, T(0));
      for (int r = 0; r < b; ++r) {
        const int64_t n = neuron_of(r);
        dp(static_cast<size_t>(r * N + n)) =
            static_cast<T>(static_cast<double>(members[m].preprocessing->response_std[static_cast<size_t>(n)]) / K);
      }
      Kokkos::deep_copy(buffers[m].d_prediction, dp);
    }
    for (int step = 0; step <= o.steps; ++step) {
      for (size_t m = 0; m < members.size(); ++m) {
        upload(m, x.data(), b);
        members[m].model->forward(buffers[m].ws, b, false, readout);
      }
      if (step == o.steps) break;  // the last forward scores the final images
      std::fill(total.begin(), total.end(), 0.0);
      for (size_t m = 0; m < members.size(); ++m) {
        members[m].model->input_gradient(buffers[m].ws, b, buffers[m].d_prediction, buffers[m].d_images, readout);
        Kokkos::deep_copy(buffers[m].d_images_host, buffers[m].d_images);
        const double chain = p0.image_std / members[m].preprocessing->image_std;  // d x_m / d x
        for (int64_t k = 0; k < static_cast<int64_t>(b) * HW; ++k)
          total[static_cast<size_t>(k)] += buffers[m].d_images_host(static_cast<size_t>(k)) * chain;
      }
      const double frac = o.steps > 1 ? static_cast<double>(step) / (o.steps - 1) : 0.0;
      const double sigma = o.blur_start + (o.blur_end - o.blur_start) * frac;
      const double step_size = o.step * (1.0 - 0.9 * frac) * target;
      for (int r = 0; r < b; ++r) {
        std::copy(total.begin() + r * HW, total.begin() + (r + 1) * HW, g.begin());
        gaussian_blur(g, H, W, sigma);
        const double gn = norm_of(g.data(), HW);
        if (!(gn > 0)) continue;  // a neuron blind to its input (dead unit): nothing to climb
        double* xr = x.data() + r * HW;
        for (int64_t k = 0; k < HW; ++k) xr[k] += step_size * g[static_cast<size_t>(k)] / gn;
        project(xr, HW, target, lo, hi);
      }
      progress.update(++done);
    }
    download_predictions();
    for (int r = 0; r < b; ++r) {
      const int64_t q = q0 + r, i = q / o.starts;
      const double a = mean_prediction(r, neuron_of(r));
      out.activation_by_start[static_cast<size_t>(q)] = a;
      if (a > out.activation[static_cast<size_t>(i)]) {
        out.activation[static_cast<size_t>(i)] = a;
        for (int64_t k = 0; k < HW; ++k)
          out.images[static_cast<size_t>(i * HW + k)] =
              static_cast<float>(x[static_cast<size_t>(r * HW + k)] * p0.image_std + p0.image_mean);
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
template MostExcitingInputs<float> compute_meis(const std::vector<MeiMember<float>>&, std::vector<int64_t>,
                                                const MeiOptions&, int);
template MostExcitingInputs<double> compute_meis(const std::vector<MeiMember<double>>&, std::vector<int64_t>,
                                                 const MeiOptions&, int);

}  // namespace v1sysid
