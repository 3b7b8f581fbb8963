#include "bench/bench.hpp"

#include "bench/region_timer.hpp"
#include "core/error.hpp"
#include "core/version.hpp"
#include "model/model.hpp"
#include "train/batcher.hpp"
#include "core/random.hpp"
#include "train/trainer.hpp"

#include <Kokkos_Core.hpp>
#include <nlohmann/json.hpp>

#include <dlfcn.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

namespace v1sysid::bench {

namespace {

using Clock = std::chrono::steady_clock;

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

void require_positive(int value, const char* option) {
  if (value < 1)
    throw ConfigError(std::string(option) + " must be at least 1, got " + std::to_string(value), "v1sysid bench",
                      std::string("pass a positive ") + option);
}

// Random data of the bench shapes in the layout Trainer expects: 2 batches of training rows (so the batcher
// reshuffles like a real run) and one batch of validation rows.
TrainingData random_training_data(const BenchOptions& o) {
  TrainingData d;
  d.n_trials = 3 * static_cast<int64_t>(o.batch);
  d.height = o.height;
  d.width = o.width;
  d.n_neurons = o.neurons;
  SplitMix64 rng(o.seed, 11);
  std::vector<float> images(static_cast<size_t>(d.n_trials * d.height * d.width));
  for (auto& x : images) x = static_cast<float>(rng.normal());
  d.host_responses.resize(static_cast<size_t>(d.n_trials * d.n_neurons));
  for (auto& y : d.host_responses) y = static_cast<float>(rng.uniform());
  auto upload = [](const std::vector<float>& host, const char* label) {
    View1<Real> v(Kokkos::view_alloc(Kokkos::WithoutInitializing, std::string(label)), host.size());
    auto m = Kokkos::create_mirror_view(v);
    for (size_t i = 0; i < host.size(); ++i) m(i) = static_cast<Real>(host[i]);
    Kokkos::deep_copy(v, m);
    return v;
  };
  d.images = upload(images, "v1sysid::bench::images");
  d.responses = upload(d.host_responses, "v1sysid::bench::responses");
  for (int64_t r = 0; r < d.n_trials; ++r) (r < 2 * o.batch ? d.train_rows : d.validation_rows).push_back(r);
  return d;
}

void split_regions(const std::map<std::string, RegionTime>& t, double per, std::map<std::string, double>& seconds,
                   std::map<std::string, double>& gemm) {
  for (const auto& [name, rt] : t) {
    seconds[name] = rt.seconds / per;
    gemm[name] = rt.gemm_seconds / per;
  }
}

}  // namespace

ModelConfig bench_model_config(const BenchOptions& o) {
  require_positive(o.features, "--features");
  require_positive(o.rotations, "--rotations");
  require_positive(o.channels, "--channels");
  // The paper's models as sweeps/models/ spells them (cnn_128, roteq_16), at the chosen width and batch.
  std::string yaml;
  if (o.model == "cnn") {
    const std::string c = std::to_string(o.channels);
    yaml = "architecture: cnn_128\ncore: {channels: [" + c + ", " + c + ", " + c + "]}\n";
  } else if (o.model == "roteq") {
    const std::string f = std::to_string(o.features);
    yaml = "architecture: roteq_16\ncore: {features: [" + f + ", " + f + ", " + f +
           "], rotations: " + std::to_string(o.rotations) + "}\n";
  } else {
    throw ConfigError("unknown --model '" + o.model + "'", "v1sysid bench", "use --model cnn or --model roteq");
  }
  const std::string b = std::to_string(o.batch);
  yaml += "train: {batch_size: " + b + ", eval_batch_size: " + b + ", seed: " + std::to_string(o.seed) + "}\n";
  ModelConfig c = parse_model_config(yaml, "v1sysid bench");
  c.validate("v1sysid bench");
  return c;
}

template <class T>
FlopCount count_flops(const Model<T>& model) {
  FlopCount f;
  for (int l = 0; l < model.num_layers(); ++l) {
    const auto& g = model.geometry(l);
    const double macs = double(g.c_out) * g.c_in * g.k * g.k * g.h_out * g.w_out;
    LayerFlops lf;
    lf.name = "layer" + std::to_string(l);
    lf.forward = 2 * macs;
    lf.backward = (l == 0 ? 1 : 2) * 2 * macs;  // d_weight, and d_input except for the image
    f.layers.push_back(lf);
  }
  const auto& last = model.geometry(model.num_layers() - 1);
  const double hw = double(last.h_out) * last.w_out, n = model.n_neurons(), c = last.c_out;
  LayerFlops ro;
  ro.name = "readout";
  ro.forward = 2 * n * hw * c + 2 * n * c;       // X |M|^T, then the feature contraction
  ro.backward = 2 * (2 * n * hw * c) + 4 * n * c;  // d_X = d_T |M|, d|M| = d_T^T X, d_F and d_T
  f.layers.push_back(ro);
  for (const auto& lf : f.layers) {
    f.forward += lf.forward;
    f.train += lf.forward + lf.backward;
  }
  return f;
}
template FlopCount count_flops<float>(const Model<float>&);
template FlopCount count_flops<double>(const Model<double>&);

bool set_blas_threads(int threads) {
  using SetFn = void (*)(int);
  auto fn = reinterpret_cast<SetFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (fn == nullptr) return false;
  fn(threads);
  return true;
}

int blas_threads() {
  using GetFn = int (*)();
  auto fn = reinterpret_cast<GetFn>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  return fn ? fn() : 0;
}

BenchResult run_bench(const BenchOptions& o) {
  require_positive(o.neurons, "--neurons");
  require_positive(o.batch, "--batch");
  require_positive(o.height, "--height");
  require_positive(o.width, "--width");
  require_positive(o.steps, "--steps");
  if (o.warmup < 0 || o.threads < 0)
    throw ConfigError("--warmup and --threads must not be negative", "v1sysid bench", "pass 0 or more");
  if (o.threads > 0 && !set_blas_threads(o.threads))
    throw ConfigError("--threads " + std::to_string(o.threads) + " needs OpenBLAS, but the BLAS in use is " +
                          blas_library(),
                      "v1sysid bench", "select OpenBLAS (update-alternatives) or leave --threads out");
  BenchResult r;
  r.options = o;
  const ModelConfig cfg = bench_model_config(o);
  Model<Real> model(cfg, o.height, o.width, o.neurons);
  model.set_conv_algorithm(layers::parse_conv_algorithm(o.conv));
  model.initialize(o.seed, std::vector<double>(static_cast<size_t>(o.neurons), 0.5));
  r.flops = count_flops(model);
  const TrainingData data = random_training_data(o);
  Batcher batcher(data.train_rows, 1.0, o.batch, o.seed);
  Trainer trainer(model, data, batcher);
  const double lr = cfg.train.learning_rate;
  ExecSpace space;

  // Training steps.
  for (int i = 0; i < o.warmup; ++i) trainer.step(lr);
  space.fence();
  std::vector<double> step_seconds;
  {
    RegionTimer timer;
    const double cpu0 = cpu_seconds();
    const auto t0 = Clock::now();
    for (int i = 0; i < o.steps; ++i) {
      const auto s0 = Clock::now();
      const double loss = trainer.step(lr);
      r.last_train_loss = loss;
      space.fence();
      step_seconds.push_back(std::chrono::duration<double>(Clock::now() - s0).count());
      if (!std::isfinite(loss))
        throw DivergedError("the training loss is " + std::to_string(loss) + " at benchmark step " +
                                std::to_string(i),
                            "v1sysid bench", "report this with the command line");
    }
    const double total = std::chrono::duration<double>(Clock::now() - t0).count();
    r.train_cpu_seconds_per_step = (cpu_seconds() - cpu0) / o.steps;
    r.train_images_per_s = double(o.batch) * o.steps / total;
    split_regions(timer.take(), o.steps, r.train_seconds, r.train_gemm_seconds);
  }
  r.train_step_seconds_median = median(step_seconds);

  // Inference: evaluation-mode forward passes on one batch (what predict/evaluate run).
  auto ws = model.make_workspace(o.batch);
  Kokkos::deep_copy(ws.images, Kokkos::subview(data.images, std::make_pair<size_t, size_t>(
                                                                0, ws.images.extent(0))));
  for (int i = 0; i < o.warmup; ++i) model.forward(ws, o.batch, false);
  space.fence();
  std::vector<double> pass_seconds;
  {
    RegionTimer timer;
    const double cpu0 = cpu_seconds();
    const auto t0 = Clock::now();
    for (int i = 0; i < o.steps; ++i) {
      const auto s0 = Clock::now();
      model.forward(ws, o.batch, false);
      space.fence();
      pass_seconds.push_back(std::chrono::duration<double>(Clock::now() - s0).count());
    }
    const double total = std::chrono::duration<double>(Clock::now() - t0).count();
    r.infer_cpu_seconds_per_pass = (cpu_seconds() - cpu0) / o.steps;
    r.infer_images_per_s = double(o.batch) * o.steps / total;
    split_regions(timer.take(), o.steps, r.infer_seconds, r.infer_gemm_seconds);
  }
  r.infer_pass_seconds_median = median(pass_seconds);

  r.peak_rss_mib = peak_rss_mib();
  r.blas_threads = blas_threads();
  r.kokkos_concurrency = ExecSpace::concurrency();
  r.blas = blas_config();
  r.kokkos = kokkos_version() + " " + ExecSpace::name();
  return r;
}

std::string to_json(const BenchResult& r) {
  const auto& o = r.options;
  // Rounded to `digits` decimals (dividing by a power of ten gives the double nearest the decimal).
  auto round_to = [](double v, int digits) {
    const double p = std::pow(10.0, digits);
    return std::round(v * p) / p;
  };
  nlohmann::ordered_json j;
  j["peer"] = std::string("v1sysid-") + version_string();
  j["model"] = o.model;
  j["neurons"] = o.neurons;
  j["batch"] = o.batch;
  j["height"] = o.height;
  j["width"] = o.width;
  j["threads"] = o.threads > 0 ? o.threads : r.blas_threads;
  j["train_images_per_s"] = round_to(r.train_images_per_s, 2);
  j["infer_images_per_s"] = round_to(r.infer_images_per_s, 2);
  if (o.model == "roteq") {
    j["features"] = o.features;
    j["rotations"] = o.rotations;
  } else {
    j["channels"] = o.channels;
  }
  j["steps"] = o.steps;
  j["conv"] = o.conv;
  j["train_gflop_per_image"] = round_to(r.flops.train / 1e9, 3);
  j["infer_gflop_per_image"] = round_to(r.flops.forward / 1e9, 3);
  j["train_gflop_per_s"] = round_to(r.flops.train * r.train_images_per_s / 1e9, 1);
  j["infer_gflop_per_s"] = round_to(r.flops.forward * r.infer_images_per_s / 1e9, 1);
  j["train_step_ms_median"] = round_to(1e3 * r.train_step_seconds_median, 1);
  j["infer_pass_ms_median"] = round_to(1e3 * r.infer_pass_seconds_median, 1);
  j["train_cpu_s_per_step"] = round_to(r.train_cpu_seconds_per_step, 3);
  j["infer_cpu_s_per_pass"] = round_to(r.infer_cpu_seconds_per_pass, 3);
  j["peak_rss_mib"] = round_to(r.peak_rss_mib, 1);
  j["last_train_loss"] = r.last_train_loss;
  nlohmann::ordered_json flops;
  for (const auto& lf : r.flops.layers)
    flops[lf.name] = {{"forward", round_to(lf.forward / 1e9, 4)}, {"backward", round_to(lf.backward / 1e9, 4)}};
  j["gflop_per_image_by_layer"] = flops;
  auto regions = [&](const std::map<std::string, double>& s, const std::map<std::string, double>& g) {
    nlohmann::ordered_json out;
    for (const auto& [name, sec] : s) out[name] = {{"ms", round_to(1e3 * sec, 2)}, {"gemm_ms", round_to(1e3 * g.at(name), 2)}};
    return out;
  };
  j["train_ms_per_step_by_region"] = regions(r.train_seconds, r.train_gemm_seconds);
  j["infer_ms_per_pass_by_region"] = regions(r.infer_seconds, r.infer_gemm_seconds);
  j["blas"] = r.blas;
  j["kokkos"] = r.kokkos;
  j["kokkos_concurrency"] = r.kokkos_concurrency;
  return j.dump();
}

}  // namespace v1sysid::bench
