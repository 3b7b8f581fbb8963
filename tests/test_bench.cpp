// `v1sysid bench`: analytic FLOP counts, the region timer behind the per-layer breakdown, and the command's
// JSON line on tiny shapes (quick; the paper shapes are measured by analysis/bench_compare.sh).
#include "bench/bench.hpp"
#include "bench/region_timer.hpp"
#include "core/error.hpp"
#include "core/profiling.hpp"
#include "model/model.hpp"
#include "test_support.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <thread>

namespace v1sysid::bench {
namespace {

BenchOptions tiny() {
  BenchOptions o;
  o.channels = 4;
  o.neurons = 7;
  o.batch = 3;
  o.height = 9;
  o.width = 11;
  o.steps = 2;
  o.warmup = 1;
  return o;
}

// Multiply-adds of one SAME-padded convolution, counted by visiting every output element and kernel tap (as
// the GEMM does: padded taps are multiplied by zero but still computed).
double brute_force_conv_macs(int c_in, int c_out, int k, int h, int w) {
  double macs = 0;
  for (int o = 0; o < c_out; ++o)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        for (int i = 0; i < c_in; ++i)
          for (int t = 0; t < k * k; ++t) macs += 1;
  return macs;
}

TEST(Bench, FlopCountsFollowTheLayerShapes) {
  const auto o = tiny();
  Model<float> model(bench_model_config(o), o.height, o.width, o.neurons);
  const FlopCount f = count_flops(model);
  ASSERT_EQ(f.layers.size(), 4u);
  const int ks[3] = {13, 5, 5};
  for (int l = 0; l < 3; ++l) {
    const double macs = brute_force_conv_macs(l == 0 ? 1 : o.channels, o.channels, ks[l], o.height, o.width);
    EXPECT_DOUBLE_EQ(f.layers[size_t(l)].forward, 2 * macs) << "layer " << l;
    // The image needs no gradient: the first layer's backward is the weight gradient only.
    EXPECT_DOUBLE_EQ(f.layers[size_t(l)].backward, (l == 0 ? 2 : 4) * macs) << "layer " << l;
  }
  const double readout_macs = double(o.neurons) * o.height * o.width * o.channels;
  // X |M|^T, then the contraction with the features.
  EXPECT_DOUBLE_EQ(f.layers[3].forward, 2 * readout_macs + 2.0 * o.neurons * o.channels);
  EXPECT_DOUBLE_EQ(f.train, f.forward + f.layers[0].backward + f.layers[1].backward + f.layers[2].backward +
                                f.layers[3].backward);
}

TEST(Bench, RegionTimerAttributesNestedGemmTime) {
  RegionTimer timer;
  {
    ScopedRegion outer("forward/layer0/conv");
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    ScopedRegion gemm("KokkosBlas::gemm[TPL_BLAS,float]");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  { ScopedRegion other([] { return layer_region("backward", 2, "batchnorm_act"); }); }
  const auto t = timer.take();
  ASSERT_EQ(t.count("forward/layer0/conv"), 1u);
  ASSERT_EQ(t.count("backward/layer2/batchnorm_act"), 1u);
  EXPECT_EQ(t.count("KokkosBlas::gemm[TPL_BLAS,float]"), 0u) << "GEMM time is folded into its region";
  const auto& conv = t.at("forward/layer0/conv");
  EXPECT_EQ(conv.calls, 1);
  EXPECT_GE(conv.gemm_seconds, 0.004);
  EXPECT_GE(conv.seconds, conv.gemm_seconds + 0.001);
  EXPECT_TRUE(timer.take().empty()) << "take() resets";
  EXPECT_THROW(RegionTimer second, std::logic_error);
}

TEST(Bench, RunsTheRealStepAndReportsEveryLayer) {
  const BenchResult r = run_bench(tiny());
  EXPECT_GT(r.train_images_per_s, 0);
  EXPECT_GT(r.infer_images_per_s, 0);
  EXPECT_TRUE(std::isfinite(r.last_train_loss));
  EXPECT_GT(r.peak_rss_mib, 1);
  for (const char* region : {"step/forward", "step/backward", "step/adam", "forward/layer0/conv",
                             "forward/layer2/batchnorm_act", "forward/readout", "backward/layer1/conv",
                             "backward/readout", "backward/regularizers", "backward/loss"})
    EXPECT_EQ(r.train_seconds.count(region), 1u) << region;
  EXPECT_EQ(r.infer_seconds.count("forward/readout"), 1u);
  EXPECT_EQ(r.infer_seconds.count("step/backward"), 0u) << "inference runs no backward";
  EXPECT_GT(r.train_gemm_seconds.at("forward/layer1/conv"), 0);
  EXPECT_LE(r.train_gemm_seconds.at("forward/layer1/conv"), r.train_seconds.at("forward/layer1/conv"));
}

TEST(Bench, RoteqCoreCountsRotationsAsChannels) {
  auto o = tiny();
  o.model = "roteq";
  o.features = 2;
  o.rotations = 4;
  const ModelConfig c = bench_model_config(o);
  Model<float> model(c, o.height, o.width, o.neurons);
  EXPECT_EQ(model.geometry(1).c_in, 8);
  EXPECT_DOUBLE_EQ(count_flops(model).layers[1].forward, 2 * brute_force_conv_macs(8, 8, 5, o.height, o.width));
  const BenchResult r = run_bench(o);
  EXPECT_GT(r.train_images_per_s, 0);
  EXPECT_EQ(r.train_seconds.count("forward/hermite_synthesis"), 1u);
  EXPECT_EQ(r.train_seconds.count("backward/hermite_synthesis"), 1u);
}

TEST(Bench, CommandPrintsTheKeysOfThePyTorchPeer) {
  const auto res = testing::run_v1sysid(
      "bench --model cnn --channels 4 --neurons 7 --batch 3 --height 9 --width 11 --steps 1 --warmup 0 2>&1");
  ASSERT_EQ(res.exit_code, 0) << res.output;
  const auto j = nlohmann::json::parse(res.output.substr(res.output.find('{')));
  for (const char* key : {"peer", "model", "neurons", "batch", "height", "width", "threads", "train_images_per_s",
                          "infer_images_per_s", "train_gflop_per_s", "infer_gflop_per_s", "peak_rss_mib",
                          "train_ms_per_step_by_region", "infer_ms_per_pass_by_region"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["neurons"], 7);
  EXPECT_EQ(j["batch"], 3);
}

TEST(Bench, BadOptionsAreTypedErrors) {
  auto o = tiny();
  o.batch = 0;
  EXPECT_THROW(run_bench(o), ConfigError);
  o = tiny();
  o.model = "resnet";
  EXPECT_THROW(bench_model_config(o), ConfigError);
  const auto res = testing::run_v1sysid("bench --batch 0 2>&1");
  EXPECT_NE(res.exit_code, 0);
  EXPECT_NE(res.output.find("--batch"), std::string::npos) << res.output;
}

}  // namespace
}  // namespace v1sysid::bench
