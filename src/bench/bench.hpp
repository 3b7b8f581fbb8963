// `v1sysid bench`: throughput of the real training step (Trainer::step: gather, forward, Poisson loss,
// backward, regularisers, Adam) and of the evaluation-mode forward pass on random data of given shapes,
// with analytic FLOP counts, a per-layer / per-pass time breakdown and the peak resident memory.
// The options and the JSON keys match ../shared/bench/torch_peer.py, so the two compare line by line.
#pragma once

#include "model/model_config.hpp"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace v1sysid {
template <class T>
class Model;
}

namespace v1sysid::bench {

struct BenchOptions {
  std::string model = "cnn";  // cnn | roteq
  int features = 16;          // roteq: filter sets per layer (x rotations channels)
  int rotations = 8;          // roteq
  int channels = 128;         // cnn: feature maps per layer
  int neurons = 6005;
  int batch = 64;
  int height = 36;
  int width = 64;
  int threads = 0;   // BLAS threads; 0 keeps the library's default
  int steps = 3;     // timed training steps and timed inference passes
  int warmup = 1;    // untimed steps (and passes) before
  std::string conv = "automatic";  // algorithm of the dense convolutions: automatic | im2col | winograd | winograd2
  uint64_t seed = 0;
};

// The model configuration `bench` builds: Ecker et al. 2019 shapes (13, 5, 5 filters, softplus, batch norm
// with scale on all but the last layer, the paper's regulariser weights, joint L1 readout).
// roteq: 16 features x 8 rotations per layer by default (Hermite filters synthesised once per step).
ModelConfig bench_model_config(const BenchOptions& o);

// Multiply-add FLOPs (2 per MAC) of the GEMM-shaped work per image, counted analytically from the layer
// shapes; elementwise work (batch norm, activations, loss, Adam) is not counted, as in the usual convention.
struct LayerFlops {
  std::string name;     // "layer0", ..., "readout"
  double forward = 0;   // per image
  double backward = 0;  // per image (weight gradient + input gradient where one is needed)
};
struct FlopCount {
  std::vector<LayerFlops> layers;
  double forward = 0;  // per image, sum over layers
  double train = 0;    // per image, forward + backward
};
template <class T>
FlopCount count_flops(const Model<T>& model);

struct BenchResult {
  BenchOptions options;
  double train_images_per_s = 0, infer_images_per_s = 0;
  double train_step_seconds_median = 0, infer_pass_seconds_median = 0;
  double train_cpu_seconds_per_step = 0;  // user + system CPU time of the process per training step
  double infer_cpu_seconds_per_pass = 0;
  FlopCount flops;
  double peak_rss_mib = 0;
  double last_train_loss = 0;  // of the last timed step (compare BLAS kernels: same seed, same loss to ~1e-5)
  int blas_threads = 0;        // as OpenBLAS reports it (0: unknown)
  int kokkos_concurrency = 0;  // threads of Kokkos' default execution space
  std::string blas, kokkos;
  std::map<std::string, double> train_seconds, train_gemm_seconds;  // per step, by region
  std::map<std::string, double> infer_seconds, infer_gemm_seconds;  // per pass, by region
};

// Builds the model, runs warmup + steps training steps and warmup + steps inference passes.
BenchResult run_bench(const BenchOptions& o);

// One line of JSON with torch_peer.py's keys first.
std::string to_json(const BenchResult& r);

// Sets OpenBLAS' thread count at run time (found with dlsym; false when the BLAS is not OpenBLAS).
bool set_blas_threads(int threads);
int blas_threads();

}  // namespace v1sysid::bench
