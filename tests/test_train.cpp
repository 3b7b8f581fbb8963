// Training: batcher (fixed permutation, data_fraction, epochs), the early-stopping / lr-decay policy on
// scripted validation curves, model configuration round trip, and end-to-end training on a tiny dataset.
#include "model/model_config.hpp"
#include "train/batcher.hpp"
#include "train/early_stopping.hpp"

#include "core/error.hpp"
#include "test_support.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>
#include <vector>

namespace {

using namespace v1sysid;

// The repository root. ctest's ENVIRONMENT for discovered tests currently keeps only the first variable
// (gtest_discover_tests splits the list), so this does not rely on V1SYSID_SOURCE_DIR.
std::string repo_dir() {
  const char* env = std::getenv("V1SYSID_SOURCE_DIR");
  if (env) return env;
  return std::filesystem::path(__FILE__).parent_path().parent_path().string();
}

std::vector<int64_t> iota_rows(int64_t n, int64_t start = 0) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), start);
  return v;
}

// ---- Batcher -------------------------------------------------------------------------------------------

TEST(Batcher, EpochsCoverEveryKeptRowOnceAndSkipTheRemainder) {
  const auto rows = iota_rows(103, 1000);
  Batcher b(rows, 1.0, 10, 7);
  ASSERT_EQ(b.rows().size(), 103u);
  ASSERT_EQ(b.batch_size(), 10);
  std::multiset<int64_t> seen;
  for (int i = 0; i < 10; ++i) {
    for (int64_t r : b.next()) seen.insert(r);
  }
  EXPECT_EQ(b.epochs_started(), 1);
  EXPECT_EQ(seen.size(), 100u);
  for (int64_t r : seen) {
    EXPECT_EQ(seen.count(r), 1u);
    EXPECT_GE(r, 1000);
    EXPECT_LT(r, 1103);
  }
  b.next();  // only 3 left: a new epoch begins
  EXPECT_EQ(b.epochs_started(), 2);
}

TEST(Batcher, DataFractionKeepsNestedPrefixesOfOneFixedPermutation) {
  const auto rows = iota_rows(200);
  Batcher all(rows, 1.0, 16, 3), half(rows, 0.5, 16, 3), quarter(rows, 0.25, 16, 3), other(rows, 0.5, 16, 4);
  ASSERT_EQ(half.rows().size(), 100u);
  ASSERT_EQ(quarter.rows().size(), 50u);
  EXPECT_TRUE(std::equal(half.rows().begin(), half.rows().end(), all.rows().begin()));
  EXPECT_TRUE(std::equal(quarter.rows().begin(), quarter.rows().end(), half.rows().begin()));
  EXPECT_NE(half.rows(), other.rows());  // another seed, another subset
  std::set<int64_t> kept(half.rows().begin(), half.rows().end());
  for (int i = 0; i < 20; ++i)
    for (int64_t r : half.next()) EXPECT_TRUE(kept.count(r)) << "row " << r << " is outside the kept fraction";
}

TEST(Batcher, SameSeedSameBatchesAndTinyFractionsClampTheBatch) {
  const auto rows = iota_rows(50);
  Batcher a(rows, 1.0, 8, 11), b(rows, 1.0, 8, 11), c(rows, 1.0, 8, 12);
  bool differs = false;
  for (int i = 0; i < 12; ++i) {
    auto x = a.next();
    EXPECT_EQ(x, b.next());
    differs |= x != c.next();
  }
  EXPECT_TRUE(differs);
  Batcher tiny(rows, 0.05, 8, 1);  // round(2.5) = 3 rows < batch size 8
  EXPECT_EQ(tiny.rows().size(), 3u);
  EXPECT_EQ(tiny.batch_size(), 3);
  EXPECT_THROW(Batcher({}, 1.0, 8, 1), DataError);
}

// ---- Early stopping on scripted validation curves -------------------------------------------------------

struct ScriptedRun {
  std::vector<int64_t> validated_at;
  std::vector<EarlyStopping::Decision> decisions;
  std::vector<double> lrs;
  EarlyStopping policy;
};

// Drives the policy with a validation loss given as a function of the number of checks done.
template <class Curve>
ScriptedRun drive(const EarlyStoppingOptions& o, Curve curve) {
  ScriptedRun run{{}, {}, {}, EarlyStopping(o)};
  int checks = 0;
  while (run.policy.running()) {
    run.lrs.push_back(run.policy.learning_rate());
    if (run.policy.step_done()) {
      run.validated_at.push_back(run.policy.iteration());
      run.decisions.push_back(run.policy.report_validation(curve(checks++)));
    }
  }
  return run;
}

TEST(EarlyStopping, PatienceRestoresRewindsDecaysAndStopsAfterTheRounds) {
  EarlyStoppingOptions o;  // reference defaults: lr 0.002, val 50, patience 5, 2 rounds, /10, 10000 max
  // Improves for 4 checks (iterations 50..200), then flat forever.
  auto curve = [](int check) { return check < 4 ? 10.0 - check : 100.0; };
  ScriptedRun r = drive(o, curve);
  using D = EarlyStopping::Decision;
  ASSERT_EQ(r.decisions.size(), 4u + 5u + 5u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(r.decisions[i], D::improved);
  EXPECT_EQ(r.decisions[8], D::restore_continue);
  EXPECT_EQ(r.decisions[13], D::restore_stop);
  // First patience stop at iteration 450 rewinds to 200 (the best snapshot), the next checks are 250..450.
  EXPECT_EQ(r.validated_at[8], 450);
  EXPECT_EQ(r.validated_at[9], 250);
  EXPECT_EQ(r.validated_at[13], 450);
  EXPECT_EQ(r.policy.iteration(), 200);
  EXPECT_EQ(r.policy.steps(), 700);  // 450 + 250 optimiser steps actually taken
  EXPECT_TRUE(r.policy.stopped_by_patience());
  EXPECT_FALSE(r.policy.restore_at_end());
  EXPECT_DOUBLE_EQ(r.policy.best_loss(), 7.0);
  EXPECT_EQ(r.policy.best_iteration(), 200);
  EXPECT_EQ(r.policy.round(), 2);
  // lr 0.002 for the first 450 steps, 0.0002 for the next 250.
  EXPECT_DOUBLE_EQ(r.lrs.front(), 0.002);
  EXPECT_DOUBLE_EQ(r.lrs[449], 0.002);
  EXPECT_DOUBLE_EQ(r.lrs[450], 0.0002);
  EXPECT_DOUBLE_EQ(r.lrs.back(), 0.0002);
}

TEST(EarlyStopping, BestLossIsNotResetBetweenRoundsAndImprovementResetsPatience) {
  EarlyStoppingOptions o;
  o.val_every = 10;
  o.patience = 2;
  o.lr_decay_steps = 3;
  o.lr_decay_factor = 3;
  o.learning_rate = 0.9;
  // checks: 5, 6(bad), 4(improved, patience reset), 7, 7 -> stop 1; in round 2 a loss of 4.5 is worse than
  // the best 4 and counts as bad.
  std::vector<double> script{5, 6, 4, 7, 7, 4.5, 4.5, 3, 9, 9};
  ScriptedRun r = drive(o, [&](int c) { return script[static_cast<size_t>(c)]; });
  using D = EarlyStopping::Decision;
  std::vector<D> expected{D::improved, D::not_improved, D::improved, D::not_improved, D::restore_continue,
                          D::not_improved, D::restore_continue, D::improved, D::not_improved, D::restore_stop};
  EXPECT_EQ(r.decisions, expected);
  EXPECT_DOUBLE_EQ(r.policy.best_loss(), 3.0);
  EXPECT_NEAR(r.policy.learning_rate(), 0.9 / 27, 1e-15);
  EXPECT_NEAR(r.lrs.back(), 0.1, 1e-15);
  // check 3 at iteration 30 is the best of round 1; stop at 50 rewinds to 30; round 2 checks 40, 50 -> 30.
  EXPECT_EQ(r.validated_at, (std::vector<int64_t>{10, 20, 30, 40, 50, 40, 50, 40, 50, 60}));
  EXPECT_EQ(r.policy.iteration(), 40);
}

TEST(EarlyStopping, MaxIterationsEndsWithoutRestoreUnlessAsked) {
  EarlyStoppingOptions o;
  o.max_iterations = 300;
  auto improving = [](int c) { return 100.0 - c; };
  ScriptedRun r = drive(o, improving);
  EXPECT_EQ(r.policy.iteration(), 300);
  EXPECT_EQ(r.policy.steps(), 300);
  EXPECT_EQ(r.decisions.size(), 6u);
  EXPECT_FALSE(r.policy.stopped_by_patience());
  EXPECT_FALSE(r.policy.restore_at_end());  // reference: last parameters kept
  o.restore_best_at_max_iterations = true;
  auto worse_at_end = [](int c) { return c < 3 ? 10.0 - c : 50.0; };
  ScriptedRun r2 = drive(o, worse_at_end);
  EXPECT_TRUE(r2.policy.restore_at_end());
  EXPECT_EQ(r2.policy.best_iteration(), 150);
}

// ---- Model configuration -------------------------------------------------------------------------------

TEST(ModelConfig, ReferenceConfigsParseAndRoundTripThroughYaml) {
  for (const char* name : {"cnn_tiny", "cnn_32", "cnn_64", "cnn_128", "cnn_128_128_256"}) {
    SCOPED_TRACE(name);
    const auto c = load_model_config(repo_dir() + "/sweeps/models/" + name + ".yaml");
    const std::string text = to_yaml(c);
    const auto back = parse_model_config(text, "roundtrip");
    EXPECT_EQ(to_yaml(back), text);
    EXPECT_EQ(back.core.channels, c.core.channels);
    EXPECT_EQ(back.readout.weight, c.readout.weight);
    EXPECT_EQ(back.train.seed, c.train.seed);
  }
  const auto c32 = load_model_config(repo_dir() + "/sweeps/models/cnn_32.yaml");
  EXPECT_DOUBLE_EQ(c32.core.smooth_weight, 0.0151716);
  EXPECT_DOUBLE_EQ(c32.readout.weight, 0.0193531);
  EXPECT_EQ(c32.train.batch_size, 256);
}

std::string config_error(const std::string& yaml) {
  try {
    parse_model_config(yaml, "m.yaml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(ModelConfig, DefaultsAreTheReferenceAndBadInputIsRejectedWithItsPosition) {
  const auto d = parse_model_config("", "empty");
  EXPECT_EQ(d.core.filter_sizes, (std::vector<int>{13, 5, 5}));
  EXPECT_DOUBLE_EQ(d.core.batchnorm_decay, 0.98);
  EXPECT_EQ(d.train.patience, 5);
  EXPECT_EQ(d.train.max_iterations, 10000);
  EXPECT_NE(config_error("core: {channels: [8, 8]}").find("core.filter_sizes"), std::string::npos);
  EXPECT_NE(config_error("core: {filter_sizes: [4, 5, 5]}").find("odd"), std::string::npos);
  EXPECT_NE(config_error("core: {kind: resnet}").find("core.kind"), std::string::npos);
  EXPECT_NE(config_error("core: {nonlinearities: [relu, softplus, none]}").find("relu"), std::string::npos);
  EXPECT_NE(config_error("train: {learning_rat: 0.1}").find("unknown key"), std::string::npos);
  EXPECT_NE(config_error("train: {data_fraction: 1.5}").find("data_fraction"), std::string::npos);
  EXPECT_NE(config_error("readout: {regularizer: joint_l1, mask_weight: 0.1}").find("joint_l1"), std::string::npos);
  EXPECT_NE(config_error("train:\n  batch_size: -3\n").find("m.yaml:2:15"), std::string::npos);
}

}  // namespace
