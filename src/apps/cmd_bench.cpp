// v1sysid bench [--model cnn|roteq ...]: one JSON line with training and inference images per second of
// the real training step on random data, GFLOP/s, time per layer and pass, and peak memory. The options and
// keys match ../shared/bench/torch_peer.py (analysis/bench_compare.sh runs both side by side).
#include "apps/commands.hpp"
#include "bench/bench.hpp"

#include <iostream>
#include <memory>

namespace v1sysid::apps {

void add_bench_command(CLI::App& app) {
  auto o = std::make_shared<bench::BenchOptions>();
  auto* cmd = app.add_subcommand("bench", "Time the training step and inference on random data (JSON line)");
  cmd->add_option("--model", o->model, "Core: cnn or roteq")->check(CLI::IsMember({"cnn", "roteq"}))
      ->capture_default_str();
  cmd->add_option("--features", o->features, "roteq: filter sets per layer")->capture_default_str();
  cmd->add_option("--rotations", o->rotations, "roteq: rotations per filter set")->capture_default_str();
  cmd->add_option("--channels", o->channels, "cnn: feature maps per layer")->capture_default_str();
  cmd->add_option("--neurons", o->neurons, "Neurons of the readout")->capture_default_str();
  cmd->add_option("--batch", o->batch, "Images per training step and inference pass")->capture_default_str();
  cmd->add_option("--height", o->height, "Image height")->capture_default_str();
  cmd->add_option("--width", o->width, "Image width")->capture_default_str();
  cmd->add_option("--threads", o->threads, "BLAS threads (0: the library's default)")->capture_default_str();
  cmd->add_option("--steps", o->steps, "Timed training steps and inference passes")->capture_default_str();
  cmd->add_option("--warmup", o->warmup, "Untimed steps and passes before timing")->capture_default_str();
  cmd->add_option("--conv", o->conv, "Dense convolutions: automatic, im2col, winograd (F(4x4,5x5)) or winograd2")
      ->check(CLI::IsMember({"automatic", "im2col", "winograd", "winograd2"}))
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "Seed of the random model and data")->capture_default_str();
  cmd->callback([o] { std::cout << bench::to_json(bench::run_bench(*o)) << std::endl; });
}

}  // namespace v1sysid::apps
