// Sweep files, the trial table, the MPI scheduler with its results file, resume after SIGKILL, and select.
#include "core/error.hpp"
#include "io/h5.hpp"
#include "sweep/checksum.hpp"
#include "sweep/scheduler.hpp"
#include "sweep/select.hpp"
#include "sweep/sweep_config.hpp"
#include "sweep/training_trial.hpp"
#include "test_support.hpp"

#include <gtest/gtest.h>
#include <hdf5.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <tuple>

namespace {

using v1sysid::testing::run_v1sysid_mpi;
using v1sysid::testing::ScratchDir;

std::string write_sweep(const ScratchDir& dir, const std::string& name, const std::string& body) {
  std::string path = dir / name;
  std::ofstream(path) << body;
  return path;
}

const char* kDrySweep = R"(name: t
seed: 11
trial_kind: dry_run
architectures: [{name: a}, {name: b}]
search:
  draws: 6
  hyperparameters:
    core.smooth_weight: {log_uniform: [0.001, 0.03]}
    train.batch_size: {choice: [64, 128, 256]}
    readout.sparsity: 0.02
grid: {data_fraction: [0.5, 1.0]}
dry_run: {min_seconds: 0.15, max_seconds: 0.25, neurons: 7, fail_fraction: FAIL}
)";

std::string dry_sweep(double fail_fraction) {
  std::string s = kDrySweep;
  s.replace(s.find("FAIL"), 4, std::to_string(fail_fraction));
  return s;
}

TEST(SweepTable, ExpansionIsDeterministicAndInRange) {
  ScratchDir dir;
  auto sweep = v1sysid::SweepConfig::load(write_sweep(dir, "s.yaml", dry_sweep(0)));
  auto a = v1sysid::expand_trials(sweep);
  auto b = v1sysid::expand_trials(v1sysid::SweepConfig::load(write_sweep(dir, "s2.yaml", dry_sweep(0))));
  ASSERT_EQ(a.size(), 2u * 2u * 6u);
  std::set<double> smooth_values;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].id, static_cast<int64_t>(i));
    EXPECT_EQ(a[i].hyperparameters, b[i].hyperparameters);
    double s = a[i].hyperparameters.at("core.smooth_weight");
    EXPECT_GE(s, 0.001);
    EXPECT_LE(s, 0.03);
    double bs = a[i].hyperparameters.at("train.batch_size");
    EXPECT_TRUE(bs == 64 || bs == 128 || bs == 256);
    EXPECT_EQ(a[i].hyperparameters.at("readout.sparsity"), 0.02);
    smooth_values.insert(s);
  }
  // Draw d of an architecture has the same values at every data fraction; architectures differ.
  EXPECT_EQ(a[0].hyperparameters, a[6].hyperparameters);  // a, fraction 0.5 vs 1.0, draw 0
  EXPECT_NE(a[0].hyperparameters, a[12].hyperparameters); // architecture b, draw 0
  EXPECT_EQ(smooth_values.size(), 12u);                   // 2 architectures x 6 draws, all distinct
}

TEST(SweepTable, LogUniformCoversTheRangeOnALogScale) {
  v1sysid::Distribution d;
  d.kind = v1sysid::Distribution::Kind::log_uniform;
  d.lo = 1e-3;
  d.hi = 1e-1;
  EXPECT_NEAR(d.sample(0.0), 1e-3, 1e-15);
  EXPECT_NEAR(d.sample(0.5), 1e-2, 1e-12);  // geometric mean
  EXPECT_NEAR(d.sample(1.0), 1e-1, 1e-12);
}

TEST(SweepTable, BadSweepFilesNameTheKey) {
  ScratchDir dir;
  auto expect_error = [&](const std::string& body, const std::string& needle) {
    try {
      v1sysid::SweepConfig::load(write_sweep(dir, "bad.yaml", body));
      ADD_FAILURE() << "no error for: " << body;
    } catch (const v1sysid::ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error("name: x\ntrial_kind: dry_run\narchitectures: [{name: a}]\nserch: {draws: 2}\n", "serch: unknown key");
  expect_error("name: x\ntrial_kind: dry_run\narchitectures: [{name: a}]\nsearch: {hyperparameters: {w: {log_uniform: [0, 1]}}}\n",
               "positive lower bound");
  expect_error("name: x\ntrial_kind: dry_run\narchitectures: [{name: a}]\nsearch: {hyperparameters: {w: {between: [1, 2]}}}\n",
               "exactly one of");
  expect_error("name: x\ntrial_kind: dry_run\narchitectures: [{name: a}, {name: a}]\n", "duplicate architecture");
  expect_error("name: x\ntrial_kind: dry_run\narchitectures: [{name: a}]\ngrid: {data_fraction: [0]}\n", "fractions in (0, 1]");
  expect_error("name: x\narchitectures: [{name: a}]\n", "no base_model");
  // An empty base model would train the defaults in every trial: each architecture's model needs core and readout.
  write_sweep(dir, "empty_model.yaml", "");
  expect_error("name: x\nbase_model: empty_model.yaml\narchitectures: [{name: a}]\n", "has no 'core' section");
  expect_error("name: x\nbase_model: empty_model.yaml\narchitectures: [{name: a, overrides: {core: {layers: 2}}}]\n",
               "has no 'readout' section");
}

// `--dry-run` on a training sweep (how a user or a test checks a sweep file without training) checks every trial's
// model as the real run does; it used to write a results file of synthetic trials for a key no model has.
TEST(SweepTable, ADryRunOfATrainingSweepChecksItsTrialModels) {
  ScratchDir dir;
  const std::string model = v1sysid::testing::source_dir() + "/sweeps/models/cnn_tiny.yaml";
  auto sweep = write_sweep(dir, "s.yaml",
                           "name: s\nseed: 1\nbase_model: " + model + "\narchitectures: [{name: x, hyperparameters: "
                           "{core.bogus: {uniform: [0, 1]}}}]\n");
  auto r = v1sysid::testing::run_v1sysid("sweep " + sweep + " --dry-run --out " + (dir / "r.h5") + " 2>&1");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("core.bogus: unknown key"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir / "r.h5"));
  sweep = write_sweep(dir, "good.yaml",
                      "name: s\nseed: 1\nbase_model: " + model + "\narchitectures: [{name: x, hyperparameters: "
                      "{core.smooth_weight: {uniform: [0, 1]}}}]\n");
  r = v1sysid::testing::run_v1sysid("sweep " + sweep + " --dry-run --out " + (dir / "good.h5") + " 2>&1");
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(SweepTable, AnArchitectureMayDrawItsOwnHyperparameters) {
  ScratchDir dir;
  auto sweep = v1sysid::SweepConfig::load(write_sweep(dir, "s.yaml",
      "name: h\ntrial_kind: dry_run\narchitectures:\n  - {name: joint}\n"
      "  - name: l2\n    hyperparameters: {readout.mask_weight: {log_uniform: [0.01, 0.1]}, readout.feature_weight: {log_uniform: [0.1, 1.0]}}\n"
      "search: {draws: 3, hyperparameters: {readout.weight: {log_uniform: [0.005, 0.03]}}}\n"));
  auto trials = v1sysid::expand_trials(sweep);
  ASSERT_EQ(trials.size(), 6u);
  EXPECT_EQ(trials[0].hyperparameters.count("readout.weight"), 1u);
  EXPECT_EQ(trials[0].hyperparameters.size(), 1u);
  EXPECT_EQ(trials[3].hyperparameters.count("readout.weight"), 0u);
  EXPECT_GE(trials[3].hyperparameters.at("readout.feature_weight"), 0.1);
  EXPECT_EQ(v1sysid::all_hyperparameter_names(sweep),
            (std::vector<std::string>{"readout.feature_weight", "readout.mask_weight", "readout.weight"}));
}

// trials/val_curve holds every check of every trial: the Ecker schedule's count depends on max_iterations,
// the Lurz schedule's (one check per epoch) on max_epochs alone.
TEST(SweepTable, ValidationCurveWidthCoversBothSchedules) {
  ScratchDir dir;
  const std::string models = v1sysid::testing::source_dir() + "/sweeps/models/";
  auto lurz = v1sysid::SweepConfig::load(write_sweep(dir, "lurz.yaml",
      "name: l\nseed: 1\nbase_model: " + models + "lurz_transfer_quick.yaml\n"
      "architectures:\n  - {name: long, overrides: {train: {max_epochs: 400}}}\n  - {name: short}\n"));
  EXPECT_EQ(v1sysid::max_validation_checks(lurz, v1sysid::expand_trials(lurz)), 400);
  auto ecker = v1sysid::SweepConfig::load(write_sweep(dir, "ecker.yaml",
      "name: e\nseed: 1\nbase_model: " + models + "cnn_tiny.yaml\n"
      "architectures:\n  - {name: a, overrides: {train: {max_iterations: 1000, val_every: 50}}}\n"));
  // 1,000 iterations + 2 decay rounds x patience 5 x 50 rewound = 1,500 iterations: 30 checks and the first.
  EXPECT_EQ(v1sysid::max_validation_checks(ecker, v1sysid::expand_trials(ecker)), 31);
}

TEST(SweepTable, TrialModelGetsDrawnValuesAndOverrides) {
  ScratchDir dir;
  write_sweep(dir, "base.yaml",
              "core: {channels: [8, 8], smooth_weight: 0.5}\nreadout: {kind: factorized}\ntrain: {learning_rate: 0.002}\n");
  auto path = write_sweep(dir, "s.yaml",
                          "name: m\nbase_model: base.yaml\narchitectures:\n  - {name: wide, overrides: {core: {channels: [16, 16]}}}\n"
                          "search: {draws: 2, hyperparameters: {core.smooth_weight: {uniform: [1, 2]}}}\ngrid: {data_fraction: [0.25]}\n");
  auto sweep = v1sysid::SweepConfig::load(path);
  auto trials = v1sysid::expand_trials(sweep);
  YAML::Node m = v1sysid::trial_model_yaml(sweep, trials[1]);
  EXPECT_EQ(m["core"]["channels"][0].as<int>(), 16);
  EXPECT_DOUBLE_EQ(m["core"]["smooth_weight"].as<double>(), trials[1].hyperparameters.at("core.smooth_weight"));
  EXPECT_DOUBLE_EQ(m["train"]["learning_rate"].as<double>(), 0.002);
  EXPECT_DOUBLE_EQ(m["train"]["data_fraction"].as<double>(), 0.25);
}

struct ResultsReadback {
  std::vector<std::string> status, message;
  std::vector<int64_t> trial_id;
  std::vector<int32_t> rank;
};

ResultsReadback read_results(const std::string& path) {
  v1sysid::h5::File f = v1sysid::h5::File::open(path);
  return {f.read_strings("trials/status"), f.read_strings("trials/message"), f.read<int64_t>("trials/trial_id"),
          f.read<int32_t>("trials/rank")};
}

class SweepMpi : public ::testing::TestWithParam<int> {};

TEST_P(SweepMpi, EveryTrialIsWrittenOnceAndTheFileReadsBack) {
  const int ranks = GetParam();
  ScratchDir dir;
  auto sweep = write_sweep(dir, "s.yaml", dry_sweep(0));
  auto r = run_v1sysid_mpi(ranks, "sweep " + sweep + " --out " + (dir / "r.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto res = read_results(dir / "r.h5");
  ASSERT_EQ(res.status.size(), 24u);
  std::set<int32_t> ranks_seen;
  for (size_t i = 0; i < res.status.size(); ++i) {
    EXPECT_EQ(res.status[i], "ok") << i;
    EXPECT_EQ(res.trial_id[i], static_cast<int64_t>(i));
    ranks_seen.insert(res.rank[i]);
  }
  EXPECT_EQ(static_cast<int>(ranks_seen.size()), ranks) << "dynamic scheduling left a rank idle";
  // Running again finds nothing to do and keeps the file.
  auto again = run_v1sysid_mpi(ranks, "sweep " + sweep + " --out " + (dir / "r.h5"));
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("24 finished before, 0 to run"), std::string::npos) << again.output;
}

INSTANTIATE_TEST_SUITE_P(Ranks, SweepMpi, ::testing::Values(2, 4));

// Only `sweep` shares work among ranks: a single-process command started on two would write its outputs twice
// over each other (`bench`, which writes nothing, excepted). It is refused before any work, said once (by rank 0), with exit 2 and no output written.
TEST(SweepMpi, OtherCommandsButBenchStartedOnSeveralRanksAreRefusedOnceBeforeAnyWork) {
  ScratchDir dir;
  const std::string out = dir / "stimuli.h5";
  auto r = run_v1sysid_mpi(2, "images --procedural dead_leaves --count 4 --test-count 2 --height 8 --width 8 --out " + out);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("'v1sysid images' runs on one process but was started on 2 MPI ranks"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("only 'v1sysid sweep' shares work"), std::string::npos) << r.output;
  size_t said = 0;
  for (size_t at = r.output.find("runs on one process"); at != std::string::npos;
       at = r.output.find("runs on one process", at + 1))
    ++said;
  EXPECT_EQ(said, 1u) << r.output;
  EXPECT_FALSE(std::filesystem::exists(out));
  // The same command on one rank runs.
  auto one = run_v1sysid_mpi(1, "images --procedural dead_leaves --count 4 --test-count 2 --height 8 --width 8 --out " + out);
  EXPECT_EQ(one.exit_code, 0) << one.output;
  EXPECT_TRUE(std::filesystem::exists(out));
  // `bench` writes nothing and runs one benchmark per rank on purpose (the throughput of a rank layout).
  auto bench = run_v1sysid_mpi(2, "bench --model cnn --channels 4 --neurons 7 --batch 3 --height 9 --width 11 "
                                  "--steps 1 --warmup 0");
  EXPECT_EQ(bench.exit_code, 0) << bench.output;
  size_t lines = 0;
  for (size_t at = bench.output.find("\"train_images_per_s\""); at != std::string::npos;
       at = bench.output.find("\"train_images_per_s\"", at + 1))
    ++lines;
  EXPECT_EQ(lines, 2u) << bench.output;
}

// One trial of 6 s on 2 ranks: the rank without a trial waits 6 s for the other. It must sleep, not poll: the
// whole job (both ranks and mpiexec) may use at most 1.5 CPU-seconds, where a polling wait takes 2.5-6 (2.6
// measured on a loaded 2-core machine before the fix, 0.4-0.5 after).
TEST(SweepMpiIdle, ARankWithoutTrialsSleepsUntilTheLastTrialEnds) {
  ScratchDir dir;
  auto sweep = write_sweep(dir, "s.yaml",
                           "name: idle\nseed: 1\ntrial_kind: dry_run\narchitectures: [{name: a}]\nsearch: {draws: 1}\n"
                           "dry_run: {min_seconds: 6, max_seconds: 6, neurons: 3, fail_fraction: 0}\n");
  const std::string log = dir / "log";
  auto timed = v1sysid::testing::run_shell(
      "bash -c \"TIMEFORMAT='cpu %U %S'; time " + v1sysid::testing::mpi_command(2, "sweep " + sweep + " --out " + (dir / "r.h5")) +
      " > " + log + " 2>&1\"");
  ASSERT_EQ(timed.exit_code, 0) << timed.output << v1sysid::testing::run_shell("cat " + log).output;
  const auto cpu_line = timed.output.rfind("cpu ");
  ASSERT_NE(cpu_line, std::string::npos) << timed.output;
  double user = -1, sys = -1;
  ASSERT_EQ(std::sscanf(timed.output.c_str() + cpu_line, "cpu %lf %lf", &user, &sys), 2) << timed.output;
  EXPECT_LT(user + sys, 1.5) << "the idle rank polled while it waited: " << user << " s user, " << sys << " s system";
  EXPECT_EQ(read_results(dir / "r.h5").status, std::vector<std::string>{"ok"});
}

TEST(SweepResume, SigkillThenRerunCompletesEveryTrialExactlyOnce) {
  ScratchDir dir;
  auto sweep = write_sweep(dir, "s.yaml", dry_sweep(0));
  const std::string out = dir / "r.h5";
  // SIGKILL the whole job (mpiexec and both ranks, whose command lines all name the unique output path), as a
  // scheduler would, once the log shows that three trials have finished: 24 trials of 0.15-0.25 s on 2 ranks
  // leave most of them pending.
  const std::string log = dir / "log";
  v1sysid::testing::run_shell("(" + v1sysid::testing::mpi_command(2, "sweep " + sweep + " --out " + out) + " >" +
                              log + " 2>&1 &) ; for i in $(seq 300); do [ $(grep -c ': ok val' " + log +
                              " 2>/dev/null || echo 0) -ge 3 ] && break; sleep 0.1; done; pkill -KILL -f '" + out +
                              "'; sleep 0.3");
  auto partial = read_results(out);  // readable after SIGKILL
  int64_t done = 0;
  for (const auto& s : partial.status) done += s == "ok";
  EXPECT_GT(done, 0) << "killed before any trial finished; the test did not exercise resume";
  EXPECT_LT(done, 24) << "the job finished before the kill; the test did not exercise resume";
  auto resumed = run_v1sysid_mpi(2, "sweep " + sweep + " --out " + out);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find(std::to_string(done) + " finished before"), std::string::npos) << resumed.output;
  auto full = read_results(out);
  for (size_t i = 0; i < full.status.size(); ++i) {
    EXPECT_EQ(full.status[i], "ok") << i;
    EXPECT_EQ(full.trial_id[i], static_cast<int64_t>(i));
  }
  // A changed sweep refuses to resume into the same file.
  auto other = write_sweep(dir, "other.yaml", dry_sweep(0.5));
  auto refused = run_v1sysid_mpi(1, "sweep " + other + " --out " + out);
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.output.find("the sweep changed"), std::string::npos) << refused.output;
}

TEST(SweepFaults, FailingTrialsAreRecordedAndTheSweepGoesOn) {
  ScratchDir dir;
  auto sweep = write_sweep(dir, "s.yaml", dry_sweep(0.4));
  auto r = run_v1sysid_mpi(2, "sweep " + sweep + " --out " + (dir / "r.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto res = read_results(dir / "r.h5");
  int failed = 0, ok = 0;
  for (size_t i = 0; i < res.status.size(); ++i) {
    if (res.status[i] == "failed") {
      ++failed;
      EXPECT_NE(res.message[i].find("failed on purpose"), std::string::npos);
    }
    ok += res.status[i] == "ok";
  }
  EXPECT_GT(failed, 0);
  EXPECT_GT(ok, 0);
  EXPECT_EQ(failed + ok, 24);
}

TEST(SweepSelect, BestByValidationLossAndTopKStatistics) {
  ScratchDir dir;
  auto sweep = write_sweep(dir, "s.yaml", dry_sweep(0));
  ASSERT_EQ(run_v1sysid_mpi(2, "sweep " + sweep + " --out " + (dir / "r.h5")).exit_code, 0);
  v1sysid::h5::File f = v1sysid::h5::File::open(dir / "r.h5");
  auto val = f.read<double>("trials/best_val_loss");
  auto corr = f.read<double>("trials/test_correlation");
  auto rows = v1sysid::select_best(dir / "r.h5", 3);
  ASSERT_EQ(rows.size(), 4u);  // 2 architectures x 2 fractions, in table order
  // Group (a, 0.5) is trials 0..5.
  std::vector<size_t> order{0, 1, 2, 3, 4, 5};
  std::sort(order.begin(), order.end(), [&](size_t x, size_t y) { return val[x] < val[y]; });
  EXPECT_EQ(rows[0].architecture, "a");
  EXPECT_EQ(rows[0].best_trial, static_cast<int64_t>(order[0]));
  double mean = (corr[order[0]] + corr[order[1]] + corr[order[2]]) / 3;
  double var = 0;
  for (int j = 0; j < 3; ++j) var += std::pow(corr[order[j]] - mean, 2) / 2;
  EXPECT_NEAR(rows[0].top_mean_test_correlation, mean, 1e-12);
  EXPECT_NEAR(rows[0].top_sd_test_correlation, std::sqrt(var), 1e-12);
  EXPECT_NE(v1sysid::selection_markdown(rows, 3).find("| a | 0.5 | 6/6 | validation loss |"), std::string::npos);
  // Dry-run (Ecker-like) trials have no validation correlation: NaN in the file, ranked by loss.
  for (double c : f.read<double>("trials/best_val_correlation")) EXPECT_TRUE(std::isnan(c));
  EXPECT_EQ(rows[0].ranked_by, v1sysid::RankedBy::validation_loss);
}

// Lurz et al. keep the epoch of best validation correlation and select models by it, so a group whose trials all
// have one ranks by it, highest first, even where the validation losses order the trials otherwise; a group where
// one trial lacks it (finished under results format 4) falls back to the loss, as do Ecker trials (NaN).
TEST(SweepSelect, LurzScheduleTrialsRankByValidationCorrelation) {
  const double nan = std::nan("");
  const std::vector<double> loss{1.0, 2.0, 3.0, 0.5};
  const std::vector<double> corr{0.2, 0.4, 0.3, nan};
  std::vector<size_t> lurz{0, 1, 2};
  ASSERT_EQ(v1sysid::ranking_of(lurz, corr), v1sysid::RankedBy::validation_correlation);
  v1sysid::rank_trials(lurz, v1sysid::RankedBy::validation_correlation, loss, corr);
  EXPECT_EQ(lurz, (std::vector<size_t>{1, 2, 0}));
  std::vector<size_t> mixed{0, 1, 2, 3};
  ASSERT_EQ(v1sysid::ranking_of(mixed, corr), v1sysid::RankedBy::validation_loss);
  v1sysid::rank_trials(mixed, v1sysid::RankedBy::validation_loss, loss, corr);
  EXPECT_EQ(mixed, (std::vector<size_t>{3, 0, 1, 2}));
  // Ties keep trial order.
  std::vector<size_t> tied{2, 0, 1};
  v1sysid::rank_trials(tied, v1sysid::RankedBy::validation_correlation, loss, std::vector<double>{0.1, 0.1, 0.1});
  EXPECT_EQ(tied, (std::vector<size_t>{2, 0, 1}));
}

}  // namespace

namespace {

// DIR/tiny.h5: data/tiny.yaml simulated on procedural stimuli (DIR/stimuli.h5).
void simulate_tiny(const ScratchDir& dir) {
  auto r = v1sysid::testing::run_v1sysid("images --procedural dead_leaves --count 700 --test-count 20 --out " + (dir / "stimuli.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = v1sysid::testing::run_v1sysid("simulate " + v1sysid::testing::source_dir() + "/data/tiny.yaml --stimuli " +
                                    (dir / "stimuli.h5") + " --out " + (dir / "tiny.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
}

TEST(SweepTrain, TrainingTrialsOnTwoRanksWriteMetricsCurvesAndCheckpoints) {
  ScratchDir dir;
  const std::string src = v1sysid::testing::source_dir();
  ASSERT_NO_FATAL_FAILURE(simulate_tiny(dir));
  auto sweep = write_sweep(dir, "s.yaml",
                           "name: train_test\nseed: 3\nbase_model: " + src + "/sweeps/models/cnn_tiny.yaml\n"
                           "architectures:\n  - {name: cnn_tiny, overrides: {train: {max_iterations: 20, val_every: 10, batch_size: 32}}}\n"
                           "search:\n  draws: 2\n  hyperparameters: {readout.weight: {log_uniform: [0.005, 0.03]}}\n"
                           "grid: {data_fraction: [0.5, 1.0]}\n");
  auto r = run_v1sysid_mpi(2, "sweep " + sweep + " --data " + (dir / "tiny.h5") + " --out " + (dir / "r.h5") +
                             " --save-checkpoints " + (dir / "ckpt"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // Every trial reports its progress (first line at once, then a line a minute) and its end.
  for (int i = 0; i < 4; ++i) {
    const std::string label = "sweep trial " + std::to_string(i);
    EXPECT_NE(r.output.find(label + " 1/"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(label + " done in "), std::string::npos) << r.output;
  }
  v1sysid::h5::File f = v1sysid::h5::File::open(dir / "r.h5");
  auto status = f.read_strings("trials/status");
  auto corr = f.read<double>("trials/test_correlation");
  v1sysid::h5::Shape curve_shape, neuron_shape;
  auto curve = f.read<double>("trials/val_curve", &curve_shape);
  auto neurons = f.read<float>("trials/neuron_correlation", &neuron_shape);
  ASSERT_EQ(status.size(), 4u);
  EXPECT_EQ(neuron_shape[1], 60u);  // data/tiny.yaml has 60 neurons
  for (size_t i = 0; i < status.size(); ++i) {
    EXPECT_EQ(status[i], "ok") << i;
    EXPECT_TRUE(std::isfinite(corr[i])) << i;
    EXPECT_TRUE(std::isfinite(curve[i * curve_shape[1]])) << "no validation check recorded for trial " << i;
    EXPECT_TRUE(std::isfinite(neurons[i * neuron_shape[1]])) << i;
    const std::string checkpoint = dir / ("ckpt/trial_" + std::to_string(i) + ".h5");
    ASSERT_TRUE(std::filesystem::exists(checkpoint)) << i;
    // The checkpoint names its trial, so that analysis/report.py can check which row a file belongs to.
    EXPECT_EQ(v1sysid::h5::File::open(checkpoint).read_attribute_int("/", "trial_id"), static_cast<int64_t>(i));
  }
  // The same trial trained again alone gives the same validation loss: a trial is a pure function of its config.
  auto again = run_v1sysid_mpi(1, "sweep " + sweep + " --data " + (dir / "tiny.h5") + " --out " + (dir / "r1.h5"));
  ASSERT_EQ(again.exit_code, 0) << again.output;
  auto val2 = v1sysid::h5::File::open(dir / "r1.h5").read<double>("trials/best_val_loss");
  auto val1 = f.read<double>("trials/best_val_loss");
  for (size_t i = 0; i < val1.size(); ++i) EXPECT_EQ(val1[i], val2[i]) << "trial " << i << " differs between runs";
}

// A trial whose Gaussian readout predicts mu from the neurons' cortical positions gets them from the dataset
// (the sweep once initialised every readout without them, so such a trial failed before its first step).
TEST(SweepTrain, GaussianReadoutWithCortexGridPredictorTrains) {
  ScratchDir dir;
  const std::string src = v1sysid::testing::source_dir();
  ASSERT_NO_FATAL_FAILURE(simulate_tiny(dir));
  auto sweep = write_sweep(dir, "s.yaml",
                           "name: gaussian_cortex\nseed: 3\nbase_model: " + src + "/sweeps/models/lurz_transfer_quick.yaml\n"
                           "architectures:\n  - {name: stacked2d_gaussian, overrides: {train: {max_epochs: 2}}}\n"
                           "search: {draws: 1}\ngrid: {data_fraction: [1.0]}\n");
  auto r = run_v1sysid_mpi(1, "sweep " + sweep + " --data " + (dir / "tiny.h5") + " --out " + (dir / "r.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  v1sysid::h5::File f = v1sysid::h5::File::open(dir / "r.h5");
  auto status = f.read_strings("trials/status");
  auto message = f.read_strings("trials/message");
  auto corr = f.read<double>("trials/test_correlation");
  ASSERT_EQ(status.size(), 1u);
  EXPECT_EQ(status[0], "ok") << message[0];
  EXPECT_TRUE(std::isfinite(corr[0]));
}

}  // namespace

namespace {

// Every sweep file shipped in sweeps/ expands, and every trial's model config (base + overrides + drawn
// values) passes the strict model-config decoder, so a typo in a hyperparameter name fails here, not on a
// cluster after hours in the queue.
TEST(SweepFiles, EveryShippedSweepGivesValidModelConfigs) {
  namespace fs = std::filesystem;
  int sweeps = 0;
  for (const auto& entry : fs::directory_iterator(v1sysid::testing::source_dir() + "/sweeps")) {
    if (entry.path().extension() != ".yaml") continue;
    SCOPED_TRACE(entry.path().string());
    auto sweep = v1sysid::SweepConfig::load(entry.path().string());
    auto trials = v1sysid::expand_trials(sweep);
    ASSERT_FALSE(trials.empty());
    ++sweeps;
    if (sweep.trial_kind != "train") continue;
    EXPECT_GT(v1sysid::max_validation_checks(sweep, trials), 1);  // parses every trial's model config
  }
  EXPECT_GE(sweeps, 4);
}

}  // namespace

// Issue 16: full disks, concurrent jobs, edited inputs and damaged rows.
namespace {

using v1sysid::testing::run_shell;
using v1sysid::testing::SmallDisk;

// Files left in a folder, except the disk filler.
std::vector<std::string> leftovers(const std::filesystem::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (e.path().filename() != ".filler" && e.is_regular_file()) out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// A full disk while rank 0 writes the new results file: every rank reports the disk-full error and exits 7
// (before: 2 ranks deadlocked in different collectives, 1 rank crashed), and no partial or lock file is left.
TEST(SweepDiskFull, CreatingTheResultsFileOnAFullDiskFailsCleanlyOnEveryRank) {
  SmallDisk disk(64 * 1024);
  if (!disk.mounted) GTEST_SKIP() << disk.why_not;
  disk.fill(8 * 1024);
  const std::string sweep = v1sysid::testing::source_dir() + "/sweeps/dry_run.yaml";
  for (int ranks : {2, 1}) {
    SCOPED_TRACE(ranks);
    auto r = run_shell("timeout 60 " + v1sysid::testing::mpi_command(ranks, "sweep " + sweep + " --out " + (disk / "res.h5")));
    EXPECT_EQ(r.exit_code, 7) << r.output;
    EXPECT_NE(r.output.find("disk full"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(disk / "res.h5"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("Segmentation"), std::string::npos) << r.output;
    EXPECT_EQ(leftovers(disk.dir.path), std::vector<std::string>{});
  }
}

// Checkpoints on a full disk: the trained trials stay pending (not "failed"), the ranks stop taking trials, the
// run exits 7 without crashing at exit (before: rank 0 segfaulted in H5F__close_cb at MPI_Finalize), no partial
// checkpoint is left, and the next run with space retries them.
TEST(SweepDiskFull, CheckpointsOnAFullDiskLeaveTrialsPendingForTheNextRun) {
  SmallDisk disk(1024 * 1024);  // less than one checkpoint of cnn_tiny (2.3 MB)
  if (!disk.mounted) GTEST_SKIP() << disk.why_not;
  ScratchDir dir;
  const std::string src = v1sysid::testing::source_dir();
  ASSERT_NO_FATAL_FAILURE(simulate_tiny(dir));
  auto sweep = write_sweep(dir, "s.yaml",
                           "name: full_disk\nseed: 3\nbase_model: " + src + "/sweeps/models/cnn_tiny.yaml\n"
                           "architectures:\n  - {name: cnn_tiny, overrides: {train: {max_iterations: 10, val_every: 10, batch_size: 32}}}\n"
                           "search: {draws: 2}\ngrid: {data_fraction: [0.5, 1.0]}\n");
  const std::string args = "sweep " + sweep + " --data " + (dir / "tiny.h5") + " --out " + (dir / "r.h5");
  auto r = run_v1sysid_mpi(2, args + " --save-checkpoints " + (disk / "ckpt"));
  EXPECT_EQ(r.exit_code, 7) << r.output;
  EXPECT_NE(r.output.find("disk full"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("left pending"), std::string::npos) << r.output;
  EXPECT_EQ(leftovers(disk.dir.path), std::vector<std::string>{});
  auto res = read_results(dir / "r.h5");
  for (size_t i = 0; i < res.status.size(); ++i) EXPECT_EQ(res.status[i], "pending") << i << ": " << res.message[i];
  auto again = run_v1sysid_mpi(2, args + " --save-checkpoints " + (dir / "ckpt"));
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("0 finished before, 4 to run"), std::string::npos) << again.output;
  for (const auto& s : read_results(dir / "r.h5").status) EXPECT_EQ(s, "ok");
}

// The identity of a sweep is its resolved content: an edited base model file is noticed on resume, while the
// same sweep named by another path (relative, from another folder) resumes.
TEST(SweepIdentity, AnEditedModelFileIsRefusedAndAnotherSpellingOfThePathResumes) {
  ScratchDir dir;
  std::filesystem::create_directories(dir.path / "models");
  std::ofstream(dir / "models/base.yaml") << "core: {hidden_channels: [8]}\nreadout: {type: factorized}\n";
  std::string body = dry_sweep(0);
  body.replace(body.find("trial_kind: dry_run\n"), 19, "trial_kind: dry_run\nbase_model: models/base.yaml");
  auto sweep = write_sweep(dir, "s.yaml", body);
  ASSERT_EQ(run_v1sysid_mpi(1, "sweep " + sweep + " --out " + (dir / "r.h5")).exit_code, 0);

  // Relative, from the sweep's folder: the same sweep.
  auto relative = run_shell("cd " + dir.path.string() + " && " + v1sysid::testing::mpi_command(1, "sweep s.yaml --out r.h5"));
  EXPECT_EQ(relative.exit_code, 0) << relative.output;
  EXPECT_NE(relative.output.find("24 finished before, 0 to run"), std::string::npos) << relative.output;
  // Through another folder with "..": the same sweep.
  std::filesystem::create_directories(dir.path / "elsewhere");
  auto dotted = run_shell("cd " + (dir / "elsewhere") + " && " +
                          v1sysid::testing::mpi_command(1, "sweep ../s.yaml --out ../r.h5"));
  EXPECT_EQ(dotted.exit_code, 0) << dotted.output;

  // A comment or layout change of the model file is not a change; a value is.
  std::ofstream(dir / "models/base.yaml") << "# note\ncore:\n  hidden_channels: [8]\nreadout: {type: factorized}\n";
  EXPECT_EQ(run_v1sysid_mpi(1, "sweep " + sweep + " --out " + (dir / "r.h5")).exit_code, 0);
  std::ofstream(dir / "models/base.yaml") << "core: {hidden_channels: [16]}\nreadout: {type: factorized}\n";
  auto edited = run_v1sysid_mpi(1, "sweep " + sweep + " --out " + (dir / "r.h5"));
  EXPECT_EQ(edited.exit_code, 2) << edited.output;
  EXPECT_NE(edited.output.find("the model file " + (dir / "models/base.yaml") + " (base_model) changed"),
            std::string::npos) << edited.output;
}

// Two sweeps on one --out: the second is refused with a message that names the lock and its holder; the lock is
// gone after the first ends. A stale lock (its process is gone) is taken over; one from another host is refused.
TEST(SweepLock, ASecondSweepOnTheSameOutputIsRefused) {
  ScratchDir dir;
  auto sweep = write_sweep(dir, "s.yaml",
                           "name: slow\nseed: 1\ntrial_kind: dry_run\narchitectures: [{name: a}]\nsearch: {draws: 3}\n"
                           "dry_run: {min_seconds: 1, max_seconds: 1, neurons: 3}\n");
  const std::string out = dir / "r.h5", lock = out + ".lock", log = dir / "first.log";
  run_shell("(" + v1sysid::testing::mpi_command(1, "sweep " + sweep + " --out " + out) + " > " + log +
            " 2>&1; echo $? > " + (dir / "first.rc") + ") > /dev/null 2>&1 & for i in $(seq 100); do [ -e " + lock +
            " ] && break; sleep 0.05; done");
  ASSERT_TRUE(std::filesystem::exists(lock)) << v1sysid::testing::read_text(log);
  auto second = run_v1sysid_mpi(1, "sweep " + sweep + " --out " + out);
  EXPECT_EQ(second.exit_code, 3) << second.output;
  EXPECT_NE(second.output.find("another sweep is writing this results file"), std::string::npos) << second.output;
  EXPECT_NE(second.output.find(lock), std::string::npos) << second.output;
  EXPECT_NE(second.output.find("PID "), std::string::npos) << second.output;
  run_shell("for i in $(seq 200); do [ -e " + (dir / "first.rc") + " ] && break; sleep 0.05; done");
  EXPECT_EQ(v1sysid::testing::read_text(dir / "first.rc"), "0\n") << v1sysid::testing::read_text(log);
  EXPECT_FALSE(std::filesystem::exists(lock));
  for (const auto& s : read_results(out).status) EXPECT_EQ(s, "ok");

  // A lock whose process is gone, on this host: taken over with a message.
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  const std::string dead_pid = run_shell("sh -c 'echo $$'").output;  // a process that has exited
  std::ofstream(lock) << "host: " << host << "\npid: " << std::stol(dead_pid) << "\nstarted: 2020-01-01T00:00:00Z\n";
  auto taken = run_v1sysid_mpi(1, "sweep " + sweep + " --out " + out + " --force");
  EXPECT_EQ(taken.exit_code, 0) << taken.output;
  EXPECT_NE(taken.output.find("taking over the stale lock"), std::string::npos) << taken.output;
  EXPECT_FALSE(std::filesystem::exists(lock));

  // A lock held on another host cannot be checked from here: refused, with how to remove it if it is stale.
  std::ofstream(lock) << "host: other-node-17\npid: 4242\nstarted: 2020-01-01T00:00:00Z\n";
  auto other = run_v1sysid_mpi(1, "sweep " + sweep + " --out " + out);
  EXPECT_EQ(other.exit_code, 3) << other.output;
  EXPECT_NE(other.output.find("PID 4242 on host other-node-17"), std::string::npos) << other.output;
  EXPECT_NE(other.output.find("remove " + lock), std::string::npos) << other.output;
  EXPECT_TRUE(std::filesystem::exists(lock));
}

// A training trial stopped by SIGTERM saves its state beside the results file (RESULTS.states/trial_<id>.h5) and
// the rerun continues it where it stopped: after several stops in the middle of trials, every row equals the row of
// an uninterrupted sweep bit for bit (Serial Kokkos, one BLAS thread), and no state is left behind.
TEST(SweepResume, TrialsStoppedMidwayContinueFromTheirStatesToTheSameRows) {
  ScratchDir dir;
  const std::string src = v1sysid::testing::source_dir();
  ASSERT_NO_FATAL_FAILURE(simulate_tiny(dir));
  auto sweep = write_sweep(dir, "s.yaml",
                           "name: resume_test\nseed: 3\nbase_model: " + src + "/sweeps/models/cnn_tiny.yaml\n"
                           "architectures:\n  - {name: cnn_tiny, overrides: {train: {max_iterations: 80, val_every: 10, "
                           "batch_size: 32, patience: 3}}}\nsearch:\n  draws: 2\n  hyperparameters: {readout.weight: "
                           "{log_uniform: [0.005, 0.03]}}\n");
  const std::string env = "OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 ";
  const std::string args = "sweep " + sweep + " --data " + (dir / "tiny.h5");
  auto whole = run_shell(env + v1sysid::testing::mpi_command(1, args + " --out " + (dir / "whole.h5")));
  ASSERT_EQ(whole.exit_code, 0) << whole.output;
  const std::string out = dir / "r.h5";
  int stops = 0, resumed = 0;
  for (int attempt = 0; attempt < 4; ++attempt) {
    const std::string log = dir / ("log" + std::to_string(attempt));
    // SIGTERM a moment after a trial reports its first step (a different moment each time).
    auto r = run_shell(env + v1sysid::testing::mpi_command(1, args + " --out " + out) + " > " + log +
                       " 2>&1 & pid=$!; for i in $(seq 600); do grep -q 'sweep trial [0-9]* [0-9]*/' " + log +
                       " && break; sleep 0.05; done; sleep 0." + std::to_string(2 + attempt % 5) +
                       "; kill -TERM $pid; wait $pid; echo rc=$?");
    const std::string text = v1sysid::testing::read_text(log);
    resumed += text.find("resuming at step") != std::string::npos;
    if (r.output.find("rc=0") != std::string::npos) break;
    ++stops;
  }
  EXPECT_GE(stops, 2) << "the trials ended before the signals came";
  auto again = run_shell(env + v1sysid::testing::mpi_command(1, args + " --out " + out));  // finishes what is pending
  resumed += again.output.find("resuming at step") != std::string::npos;
  std::printf("%d stops, %d reruns continued a saved state\n", stops, resumed);
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_GE(resumed, 2) << "no rerun continued a saved state";
  auto a = v1sysid::h5::File::open(dir / "whole.h5"), b = v1sysid::h5::File::open(out);
  for (const char* name : {"trials/best_val_loss", "trials/test_correlation", "trials/val_curve", "trials/iterations"}) {
    const auto x = a.read<double>(name), y = b.read<double>(name);  // val_curve is NaN-padded: compare the bits
    ASSERT_EQ(x.size(), y.size()) << name;
    EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size() * sizeof(double)), 0) << name;
  }
  EXPECT_EQ(a.read<float>("trials/neuron_correlation"), b.read<float>("trials/neuron_correlation"));
  for (const auto& status : b.read_strings("trials/status")) EXPECT_EQ(status, "ok");
  EXPECT_FALSE(std::filesystem::exists(out + ".states")) << "states, or their folder, left after the last trial";
}

// A trial continued from its saved state reports, as TrialResult::wall_seconds, the training time of every
// process that worked on it; its row keeps that, not only the time of the last process.
TEST(SweepResume, AResumedTrialsRowCountsTheTimeOfEarlierProcesses) {
  ScratchDir dir;
  v1sysid::Trial trial;
  trial.architecture = "a";
  v1sysid::ResultsLayout layout;
  layout.n_trials = 1;
  layout.max_checks = 1;
  layout.n_neurons = 1;
  v1sysid::ResultsMetadata meta;
  meta.trial_configs = {""};
  const std::string path = dir / "r.h5";
  auto results = v1sysid::ResultsFile::create(path, MPI_COMM_SELF, layout, meta, {trial}, false);
  const double earlier_and_now = 1000.0;  // as a runner resuming a trial trained for 1000 s before reports it
  const auto summary = v1sysid::run_sweep(MPI_COMM_SELF, {trial}, results, [&](const v1sysid::Trial&, const auto&) {
    v1sysid::TrialResult r;
    r.status = v1sysid::TrialStatus::ok;
    r.best_val_loss = 1.0;
    r.val_curve = {1.0};
    r.neuron_correlation = {0.5};
    r.wall_seconds = earlier_and_now;
    return r;
  });
  ASSERT_EQ(summary.ran, 1);
  const auto wall = v1sysid::h5::File::open(path).read<double>("trials/wall_seconds");
  ASSERT_EQ(wall.size(), 1u);
  EXPECT_GE(wall[0], earlier_and_now);
}

// SIGTERM ends a sweep early with exit 75 ("stopped, rerun to resume"), not 0, and removes its lock.
TEST(SweepStop, AStoppedSweepExits75AndTheRerunFinishesIt) {
  ScratchDir dir;
  auto sweep = write_sweep(dir, "s.yaml",
                           "name: stop\nseed: 1\ntrial_kind: dry_run\narchitectures: [{name: a}]\nsearch: {draws: 6}\n"
                           "dry_run: {min_seconds: 0.4, max_seconds: 0.4, neurons: 3}\n");
  const std::string out = dir / "r.h5", log = dir / "log";
  auto r = run_shell(std::string(V1SYSID_TEST_EXE) + " sweep " + sweep + " --out " + out + " > " + log +
                     " 2>&1 & pid=$!; for i in $(seq 100); do grep -q ': ok val' " + log +
                     " && break; sleep 0.05; done; kill -TERM $pid; wait $pid; echo rc=$?");
  EXPECT_NE(r.output.find("rc=75"), std::string::npos) << r.output << v1sysid::testing::read_text(log);
  EXPECT_NE(v1sysid::testing::read_text(log).find("stopped: a stop signal ended the sweep with"), std::string::npos)
      << v1sysid::testing::read_text(log);
  EXPECT_FALSE(std::filesystem::exists(out + ".lock"));
  auto again = run_v1sysid_mpi(1, "sweep " + sweep + " --out " + out);
  EXPECT_EQ(again.exit_code, 0) << again.output;
  for (const auto& s : read_results(out).status) EXPECT_EQ(s, "ok");
}

// ---- Live rows and `v1sysid status` ------------------------------------------------------------------------------

// A running trial's row says so while it runs ("running", counters, curve, heartbeat); `status --json`, read twice
// during the sweep, sees its iteration advance; `status --watch` follows the sweep to its end and then exits.
TEST(SweepStatus, LiveRowsLetStatusWatchASweepAdvance) {
  ScratchDir dir;
  auto sweep = write_sweep(dir, "s.yaml",
                           "name: live\nseed: 1\ntrial_kind: dry_run\narchitectures: [{name: a}]\nsearch: {draws: 2}\n"
                           "dry_run: {min_seconds: 6, max_seconds: 6, neurons: 3}\n");
  // 6 s trials: both reports below must come while trial 0 runs, and on a loaded machine (2 cores shared with
  // another sweep) the status calls before them took up to 2 s, which 4 s trials did not always leave room for.
  const std::string out = dir / "r.h5", log = dir / "log", watch = dir / "watch";
  const std::string status = std::string(V1SYSID_TEST_EXE) + " status " + out;
  auto r = run_shell(v1sysid::testing::mpi_command(1, "sweep " + sweep + " --out " + out) + " > " + log + " 2>&1 & " +
                     status + " --watch 0.5 > " + watch + " 2>&1 & w=$!; " +
                     "for i in $(seq 100); do " + status + " --json 2>/dev/null | grep -q '\"running\":1' && break; sleep 0.1; done; " +
                     status + " --json; sleep 1.5; " + status + " --json; wait $w; echo watch_rc=$?; wait");
  // Two JSON lines while trial 0 runs.
  std::vector<nlohmann::json> reports;
  std::istringstream lines(r.output);
  for (std::string line; std::getline(lines, line);)
    if (!line.empty() && line[0] == '{') reports.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(reports.size(), 2u) << r.output;
  ASSERT_EQ(reports[0]["running"].size(), 1u) << r.output;
  ASSERT_EQ(reports[1]["running"].size(), 1u) << r.output;
  EXPECT_EQ(reports[0]["running"][0]["trial"], 0) << r.output;
  EXPECT_GT(reports[1]["running"][0]["iterations"].get<int64_t>(), reports[0]["running"][0]["iterations"].get<int64_t>())
      << r.output;
  EXPECT_LT(reports[1]["running"][0]["heartbeat_age_seconds"].get<double>(), 3.0) << r.output;
  EXPECT_EQ(reports[1]["trials"]["pending"], 1) << r.output;
  // --watch printed while the sweep ran and stopped by itself once every trial had finished.
  EXPECT_NE(r.output.find("watch_rc=0"), std::string::npos) << r.output;
  const std::string watched = v1sysid::testing::read_text(watch);
  EXPECT_NE(watched.find("1 running"), std::string::npos) << watched;
  EXPECT_NE(watched.find("2 of 2 trials finished (2 ok"), std::string::npos) << watched;
  for (const auto& s : read_results(out).status) EXPECT_EQ(s, "ok");
}

// A "running" row whose heartbeat stopped (its job died) is reported as stalled, and the next run of the sweep
// treats it as unfinished and runs it again.
TEST(SweepStatus, ARowLeftRunningByADeadJobIsStalledAndRunAgain) {
  ScratchDir dir;
  auto sweep = write_sweep(dir, "s.yaml", dry_sweep(0));
  const std::string out = dir / "r.h5";
  auto r = run_v1sysid_mpi(1, "sweep " + sweep + " --out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  {
    auto f = v1sysid::h5::File::open_rw(out);
    const hid_t d = f.open_dataset("trials/status").release();
    const hid_t h = f.open_dataset("trials/heartbeat").release();
    hsize_t start = 3, count = 1;
    hid_t space = H5Dget_space(d), mem = H5Screate_simple(1, &count, nullptr);
    H5Sselect_hyperslab(space, H5S_SELECT_SET, &start, nullptr, &count, nullptr);
    hid_t type = H5Dget_type(d);
    std::string running(H5Tget_size(type), '\0');
    running.replace(0, 7, "running");
    H5Dwrite(d, type, mem, space, H5P_DEFAULT, running.data());
    const double old = 1.0e9;  // 2001: long before now
    H5Dwrite(h, H5T_NATIVE_DOUBLE, mem, space, H5P_DEFAULT, &old);
    H5Tclose(type), H5Sclose(mem), H5Sclose(space), H5Dclose(h), H5Dclose(d);
  }
  r = run_shell(std::string(V1SYSID_TEST_EXE) + " status " + out + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["trials"]["running"], 1) << r.output;
  EXPECT_EQ(j["stalled"], nlohmann::json::array({3})) << r.output;
  r = run_shell(std::string(V1SYSID_TEST_EXE) + " status " + out);
  EXPECT_NE(r.output.find("STALLED"), std::string::npos) << r.output;
  // --png writes the curves, and refuses to overwrite without --force.
  const std::string png = dir / "curves.png";
  r = run_shell(std::string(V1SYSID_TEST_EXE) + " status " + out + " --png " + png);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(v1sysid::testing::read_text(png).substr(1, 3), "PNG");
  r = run_shell(std::string(V1SYSID_TEST_EXE) + " status " + out + " --png " + png);
  EXPECT_EQ(r.exit_code, 3) << r.output;
  r = run_v1sysid_mpi(1, "sweep " + sweep + " --out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("1 to run"), std::string::npos) << r.output;
  EXPECT_EQ(read_results(out).status[3], "ok");
}

// A results file of format 3 (before live rows) is upgraded in place when a sweep resumes it: trials/heartbeat is
// added, its finished rows keep their values and are not run again. This file still has the format-5 and 6 columns
// best_val_correlation and val_correlation_curve, as one whose upgrade stopped before it set format_version: its
// checksums, which cover them, verify, and the upgrade completes (tests/py/test_analysis.py upgrades real
// format-3/4/5 files).
TEST(SweepStatus, AFormat3FileIsUpgradedInPlaceOnResume) {
  ScratchDir dir;
  auto sweep = write_sweep(dir, "s.yaml", dry_sweep(0));
  const std::string out = dir / "r.h5";
  auto r = run_v1sysid_mpi(1, "sweep " + sweep + " --out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto before = v1sysid::h5::File::open(out).read<uint64_t>("trials/row_checksum");
  {
    auto f = v1sysid::h5::File::open_rw(out);
    ASSERT_GE(H5Ldelete(f.id(), "trials/heartbeat", H5P_DEFAULT), 0);
    f.write_attribute("/", "format_version", int64_t{3});
  }
  r = run_v1sysid_mpi(1, "sweep " + sweep + " --out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("upgraded " + out + " from results format 3 to 6 (added trials/heartbeat)"),
            std::string::npos) << r.output;
  EXPECT_NE(r.output.find("0 to run"), std::string::npos) << r.output;
  auto f = v1sysid::h5::File::open(out);
  EXPECT_EQ(f.read_attribute_int("/", "format_version"), 6);
  EXPECT_TRUE(f.exists("trials/heartbeat"));
  EXPECT_EQ(f.read<uint64_t>("trials/row_checksum"), before);
}

// A results file of a format this v1sysid neither writes nor upgrades (2, whose trials/iterations held the steps;
// 7, from a newer v1sysid) is refused unchanged, naming its version and the versions this one resumes.
TEST(SweepStatus, AFormatOutsideTheUpgradableRangeIsRefusedUnchanged) {
  ScratchDir dir;
  auto sweep = write_sweep(dir, "s.yaml", dry_sweep(0));
  const std::string out = dir / "r.h5";
  auto r = run_v1sysid_mpi(1, "sweep " + sweep + " --out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const int64_t version : {int64_t{2}, int64_t{7}}) {
    SCOPED_TRACE("format " + std::to_string(version));
    v1sysid::h5::File::open_rw(out).write_attribute("/", "format_version", version);
    const std::string bytes = v1sysid::testing::read_text(out);
    r = run_v1sysid_mpi(1, "sweep " + sweep + " --out " + out);
    EXPECT_EQ(r.exit_code, 3) << r.output;
    EXPECT_NE(r.output.find("format version " + std::to_string(version) +
                            "; this v1sysid resumes version 6 (and upgrades versions 3 to 5) only"),
              std::string::npos) << r.output;
    EXPECT_EQ(v1sysid::testing::read_text(out), bytes);
  }
}

// The median stopping rule (`pruning: {rule: median, ...}`, off by default) stops a trial whose best loss so far is
// worse than the median, at the same check, of the finished ok trials of its architecture: its row says "pruned",
// `select` leaves it out and a rerun does not redo it. Without the rule no trial is pruned.
TEST(SweepPruning, TheMedianRuleStopsTrialsWorseThanTheFinishedOnes) {
  ScratchDir dir;
  const std::string body =
      "name: prune\nseed: 5\ntrial_kind: dry_run\narchitectures: [{name: a}]\nsearch:\n  draws: 10\n"
      "  hyperparameters:\n    core.smooth_weight: {log_uniform: [0.0001, 1.0]}\n"
      "dry_run: {min_seconds: 0.6, max_seconds: 0.6, neurons: 3}\n";
  auto plain = write_sweep(dir, "plain.yaml", body);
  auto pruned = write_sweep(dir, "pruned.yaml", body + "pruning: {rule: median, min_checks: 2, min_trials: 2}\n");
  auto r = run_v1sysid_mpi(1, "sweep " + plain + " --out " + (dir / "plain.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const auto& s : read_results(dir / "plain.h5").status) EXPECT_EQ(s, "ok");
  const std::string out = dir / "pruned.h5";
  r = run_v1sysid_mpi(1, "sweep " + pruned + " --out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto f = v1sysid::h5::File::open(out);
  const auto status = f.read_strings("trials/status");
  v1sysid::h5::Shape shape;
  const auto curves = f.read<double>("trials/val_curve", &shape);
  auto curve = [&](size_t i) {
    std::vector<double> c;
    for (size_t k = 0; k < shape[1] && std::isfinite(curves[i * shape[1] + k]); ++k) c.push_back(curves[i * shape[1] + k]);
    return c;
  };
  int n_pruned = 0, n_ok = 0;
  for (size_t i = 0; i < status.size(); ++i) {
    n_ok += status[i] == "ok";
    if (status[i] != "pruned") continue;
    ++n_pruned;
    // One rank runs the trials in order: the peers of trial i are the ok trials before it.
    const auto c = curve(i);
    const size_t k = c.size();
    std::vector<double> peer_best;
    for (size_t j = 0; j < i; ++j)
      if (status[j] == "ok" && curve(j).size() >= k) {
        const auto p = curve(j);
        peer_best.push_back(*std::min_element(p.begin(), p.begin() + static_cast<std::ptrdiff_t>(k)));
      }
    ASSERT_GE(peer_best.size(), 2u) << "trial " << i;
    std::sort(peer_best.begin(), peer_best.end());
    const size_t m = peer_best.size();
    const double median = m % 2 ? peer_best[m / 2] : 0.5 * (peer_best[m / 2 - 1] + peer_best[m / 2]);
    EXPECT_GT(*std::min_element(c.begin(), c.end()), median) << "trial " << i << " pruned at check " << k;
  }
  EXPECT_GE(n_pruned, 1) << r.output;
  EXPECT_GE(n_ok, 2) << r.output;
  r = run_v1sysid_mpi(1, "select " + out);
  EXPECT_NE(r.output.find(std::to_string(n_ok) + "/10"), std::string::npos) << r.output;
  // `status` counts pruned trials as finished, not as pending work.
  r = run_shell(std::string(V1SYSID_TEST_EXE) + " status " + out + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["trials"]["pruned"], n_pruned) << r.output;
  EXPECT_EQ(j["trials"]["pending"], 0) << r.output;
  EXPECT_EQ(j["trials"]["finished"], 10) << r.output;
  r = run_v1sysid_mpi(1, "sweep " + pruned + " --out " + out);
  EXPECT_NE(r.output.find("0 to run"), std::string::npos) << r.output;
  // The rule's own arithmetic: even and odd numbers of peers, too few peers, too early.
  const std::vector<double> a{3, 2, 1}, b{3, 2, 2}, c{4, 4, 4}, shorter{1};
  v1sysid::PruningConfig rule;
  rule.enabled = true;
  rule.min_checks = 2;
  rule.min_trials = 2;
  const auto loss = v1sysid::CurveDirection::lower_is_better;
  EXPECT_TRUE(v1sysid::median_rule_prunes(rule, {5, 4}, {&a, &b}, loss));    // 4 > median(2, 2)
  EXPECT_FALSE(v1sysid::median_rule_prunes(rule, {5, 2}, {&a, &b}, loss));   // 2 is not worse than 2
  EXPECT_FALSE(v1sysid::median_rule_prunes(rule, {5, 4}, {&a, &shorter}, loss));  // one peer reached check 2
  EXPECT_TRUE(v1sysid::median_rule_prunes(rule, {5, 4.5}, {&a, &b, &c}, loss));   // median of 2, 2, 4 is 2
  EXPECT_FALSE(v1sysid::median_rule_prunes(rule, {9}, {&a, &b, &c}, loss));       // before min_checks
  // A correlation curve: the best is the highest, and worse means below the median of the peers' highest.
  const std::vector<double> ra{0.1, 0.2, 0.3}, rb{0.1, 0.2, 0.2}, rc{0, 0, 0};
  const auto correlation = v1sysid::CurveDirection::higher_is_better;
  EXPECT_TRUE(v1sysid::median_rule_prunes(rule, {0, 0.1}, {&ra, &rb}, correlation));   // 0.1 < median(0.2, 0.2)
  EXPECT_FALSE(v1sysid::median_rule_prunes(rule, {0, 0.1}, {&ra, &rb}, loss));         // its lowest, 0, is the best
  EXPECT_FALSE(v1sysid::median_rule_prunes(rule, {0, 0.2}, {&ra, &rb}, correlation));  // 0.2 is not worse than 0.2
  EXPECT_TRUE(v1sysid::median_rule_prunes(rule, {0, 0.15}, {&ra, &rb, &rc}, correlation));  // median of 0, 0.2, 0.2
  rule.enabled = false;
  EXPECT_FALSE(v1sysid::median_rule_prunes(rule, {5, 4}, {&a, &b}, loss));
}

// Trials on Lurz's schedule are kept at, and selected by, their best validation correlation: the median rule judges
// them by it (trials/val_correlation_curve, highest is best), not by the loss. Every pruned trial's best correlation
// so far is below the median of its finished peers' best by the same check.
TEST(SweepPruning, LurzScheduleTrialsArePrunedByValidationCorrelation) {
  ScratchDir dir;
  ASSERT_NO_FATAL_FAILURE(simulate_tiny(dir));
  std::ofstream(dir / "m.yaml")
      << "core: {kind: stacked2d, filter_sizes: [7, 5], channels: [4, 4], nonlinearities: [elu, elu],\n"
         "       batchnorm_scale: [true, true], rel_smooth: [0, 0], rel_sparse: [0, 0]}\n"
         "readout: {kind: gaussian, feature_weight: 0.1, grid_predictor: cortex}\n"
         "train: {schedule: lurz, batch_size: 64, max_epochs: 4, seed: 1}\n";
  auto sweep = write_sweep(dir, "lurz.yaml",
                           "name: lurz\nseed: 3\nbase_model: m.yaml\narchitectures: [{name: g}]\nsearch:\n  draws: 8\n"
                           "  hyperparameters:\n    readout.feature_weight: {log_uniform: [0.001, 30.0]}\n"
                           "pruning: {rule: median, min_checks: 1, min_trials: 2}\n");
  const std::string out = dir / "lurz.h5";
  auto r = run_v1sysid_mpi(1, "sweep " + sweep + " --data " + (dir / "tiny.h5") + " --out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto f = v1sysid::h5::File::open(out);
  const auto status = f.read_strings("trials/status");
  v1sysid::h5::Shape shape;
  const auto curves = f.read<double>("trials/val_correlation_curve", &shape);
  const auto losses = f.read<double>("trials/val_curve");
  auto curve = [&](const std::vector<double>& all, size_t i) {
    std::vector<double> c;
    for (size_t k = 0; k < shape[1] && std::isfinite(all[i * shape[1] + k]); ++k) c.push_back(all[i * shape[1] + k]);
    return c;
  };
  int n_pruned = 0;
  for (size_t i = 0; i < status.size(); ++i) {
    SCOPED_TRACE("trial " + std::to_string(i));
    const auto c = curve(curves, i);
    EXPECT_EQ(c.size(), curve(losses, i).size());  // one correlation per check
    ASSERT_FALSE(c.empty());
    if (status[i] != "pruned") continue;
    ++n_pruned;
    // One rank runs the trials in order: the peers of trial i are the ok trials before it.
    const size_t k = c.size();
    std::vector<double> peer_best;
    for (size_t j = 0; j < i; ++j)
      if (status[j] == "ok" && curve(curves, j).size() >= k) {
        const auto p = curve(curves, j);
        peer_best.push_back(*std::max_element(p.begin(), p.begin() + static_cast<std::ptrdiff_t>(k)));
      }
    ASSERT_GE(peer_best.size(), 2u);
    std::sort(peer_best.begin(), peer_best.end());
    const size_t m = peer_best.size();
    const double median = m % 2 ? peer_best[m / 2] : 0.5 * (peer_best[m / 2 - 1] + peer_best[m / 2]);
    EXPECT_LT(*std::max_element(c.begin(), c.end()), median) << "pruned at check " << k;
  }
  EXPECT_GE(n_pruned, 1) << r.output;
}

// A file at --out that is not a results file (empty, or another format) is refused and left unchanged.
TEST(SweepFaults, AnEmptyOrForeignFileAtOutIsRefusedUnchanged) {
  ScratchDir dir;
  auto sweep = write_sweep(dir, "s.yaml", dry_sweep(0));
  for (const std::string content : {std::string(), std::string("x,y\n1,2\n")}) {
    std::ofstream(dir / "r.h5", std::ios::binary) << content;
    auto r = run_v1sysid_mpi(2, "sweep " + sweep + " --out " + (dir / "r.h5"));
    EXPECT_EQ(r.exit_code, 3) << r.output;
    EXPECT_NE(r.output.find("not a v1sysid results file"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("--force"), std::string::npos) << r.output;
    EXPECT_EQ(v1sysid::testing::read_text(dir / "r.h5"), content);
    EXPECT_EQ(leftovers(dir.path), (std::vector<std::string>{"r.h5", "s.yaml"}));
  }
}

// A row whose values changed after the sweep wrote it (a zeroed validation loss) fails its checksum: select
// leaves it out instead of picking it as the best, and a rerun of the sweep redoes it.
TEST(SweepSelect, ADamagedRowIsNeverPickedAsBestAndTheRerunRedoesIt) {
  ScratchDir dir;
  auto sweep = write_sweep(dir, "s.yaml", dry_sweep(0));
  const std::string out = dir / "r.h5";
  ASSERT_EQ(run_v1sysid_mpi(2, "sweep " + sweep + " --out " + out).exit_code, 0);
  const auto before = v1sysid::select_best(out, 3);
  const int64_t damaged = before[0].best_trial == 4 ? 5 : 4;  // group (a, 0.5) is trials 0..5; not the best
  {
    auto f = v1sysid::h5::File::open_rw(out);
    auto d = f.open_dataset("trials/best_val_loss");
    auto val = f.read<double>("trials/best_val_loss");
    val[static_cast<size_t>(damaged)] = 0.0;
    ASSERT_GE(H5Dwrite(d.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, val.data()), 0);
  }
  auto r = v1sysid::testing::run_v1sysid("select " + out);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("trial " + std::to_string(damaged) + ": its row fails its checksum"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("| a | 0.5 | 5/6 |"), std::string::npos) << r.output;
  const auto rows = v1sysid::select_best(out, 3);
  EXPECT_EQ(rows[0].best_trial, before[0].best_trial);
  EXPECT_EQ(rows[0].best_val_loss, before[0].best_val_loss);

  auto again = run_v1sysid_mpi(2, "sweep " + sweep + " --out " + out);
  EXPECT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("23 finished before, 1 to run"), std::string::npos) << again.output;
  EXPECT_NE(v1sysid::h5::File::open(out).read<double>("trials/best_val_loss")[static_cast<size_t>(damaged)], 0.0);
  EXPECT_NE(v1sysid::selection_markdown(v1sysid::select_best(out, 3), 3).find("| a | 0.5 | 6/6 |"), std::string::npos);
}

// A status spelling no v1sysid writes (a hand-edited file) is an error that names the file and the row, for the
// sweep that would resume it, select and status alike. Before the status enum, the sweep ran such a row again
// and select, status and the checksum check passed over it.
TEST(SweepSelect, AnUnknownStatusSpellingIsAnErrorNamingTheRow) {
  ScratchDir dir;
  auto sweep = write_sweep(dir, "s.yaml", dry_sweep(0));
  const std::string out = dir / "r.h5";
  ASSERT_EQ(run_v1sysid_mpi(2, "sweep " + sweep + " --out " + out).exit_code, 0);
  {
    auto f = v1sysid::h5::File::open_rw(out);
    auto d = f.open_dataset("trials/status");
    std::vector<char> raw(24 * 16, '\0');
    for (size_t i = 0; i < 24; ++i) std::memcpy(raw.data() + i * 16, i == 3 ? "finishd" : "ok", i == 3 ? 7 : 2);
    v1sysid::h5::Handle t(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(t.get(), 16);
    H5Tset_strpad(t.get(), H5T_STR_NULLPAD);
    ASSERT_GE(H5Dwrite(d.get(), t.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, raw.data()), 0);
  }
  for (const std::string command : {"select " + out, "status " + out}) {
    auto r = v1sysid::testing::run_v1sysid(command);
    EXPECT_NE(r.exit_code, 0) << command << "\n" << r.output;
    EXPECT_NE(r.output.find("trials/status of row 3 reads 'finishd'"), std::string::npos) << command << "\n" << r.output;
    EXPECT_NE(r.output.find(out), std::string::npos) << r.output;
  }
  auto again = run_v1sysid_mpi(2, "sweep " + sweep + " --out " + out);
  EXPECT_NE(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("trials/status of row 3 reads 'finishd'"), std::string::npos) << again.output;
}

}  // namespace

namespace {

// h5::File::create on a disk that fills: commit() throws EnvironmentError "disk full" naming the file, the
// partial file is removed, and no HDF5 file stays open. Small datasets reach the disk only when the file is
// flushed; a flush that failed through HDF5's default driver left the file half-closed, and the library
// crashed on it at exit.
TEST(SweepDiskFull, ASerialHdf5FileOnAFullDiskIsAnEnvironmentErrorAndLeavesNothing) {
  SmallDisk disk(2 * 1024 * 1024);
  if (!disk.mounted) GTEST_SKIP() << disk.why_not;
  disk.fill(16 * 1024);
  const std::string path = disk / "small_datasets.h5";
  std::vector<float> values(512, 1.5f);  // 2 KiB each, 200 of them
  auto write = [&] {
    auto f = v1sysid::h5::File::create(path, false);
    for (int i = 0; i < 200; ++i) f.write("d" + std::to_string(i), values, {values.size()});
    f.commit();
  };
  try {
    write();
    ADD_FAILURE() << "400 KiB fitted on a disk with 16 KiB free";
  } catch (const v1sysid::EnvironmentError& e) {
    EXPECT_NE(std::string(e.what()).find("disk full"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  EXPECT_EQ(leftovers(disk.dir.path), std::vector<std::string>{});
  EXPECT_EQ(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_FILE), 0) << "a file that failed to close stays open";
  // Once there is space, the same file is written.
  std::filesystem::remove(disk / ".filler");
  write();
  EXPECT_EQ(v1sysid::h5::File::open(path).read<float>("d199"), values);
}

}  // namespace

namespace {

// Partial files that a SIGKILLed run left (results file and checkpoints) are removed by the next run.
TEST(SweepFaults, PartialFilesOfAKilledRunAreRemovedByTheNextRun) {
  ScratchDir dir;
  auto sweep = write_sweep(dir, "s.yaml", dry_sweep(0));
  const std::string dead_pid = std::to_string(std::stol(run_shell("sh -c 'echo $$'").output));
  std::filesystem::create_directories(dir.path / "ckpt");
  for (const std::string name : {"r.h5.partial-" + dead_pid, "ckpt/trial_3.h5.partial-" + dead_pid}) {
    std::ofstream(dir / name) << "half";
  }
  auto r = run_v1sysid_mpi(2, "sweep " + sweep + " --out " + (dir / "r.h5") + " --save-checkpoints " + (dir / "ckpt"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("left by an interrupted run"), std::string::npos) << r.output;
  EXPECT_EQ(leftovers(dir.path), (std::vector<std::string>{"r.h5", "s.yaml"}));
}

}  // namespace

namespace {

// A SLURM job requeued onto another node finds the lock of its own earlier run (same job id, lower restart count)
// and takes it over; another step of the same job run (same restart count) is refused.
TEST(SweepLock, ARequeuedSlurmJobTakesOverItsOwnLockFromAnotherNode) {
  ScratchDir dir;
  auto sweep = write_sweep(dir, "s.yaml", dry_sweep(0));
  const std::string out = dir / "r.h5", lock = out + ".lock";
  const std::string held = "host: other-node-3\npid: 777\nslurm_job_id: 4711\nslurm_restart_count: 0\nstarted: x\n";
  std::ofstream(lock) << held;
  auto same_run = run_shell("SLURM_JOB_ID=4711 " + v1sysid::testing::mpi_command(1, "sweep " + sweep + " --out " + out));
  EXPECT_EQ(same_run.exit_code, 3) << same_run.output;
  EXPECT_EQ(v1sysid::testing::read_text(lock), held);
  auto requeued = run_shell("SLURM_JOB_ID=4711 SLURM_RESTART_COUNT=1 " +
                            v1sysid::testing::mpi_command(1, "sweep " + sweep + " --out " + out));
  EXPECT_EQ(requeued.exit_code, 0) << requeued.output;
  EXPECT_NE(requeued.output.find("an earlier run of this SLURM job"), std::string::npos) << requeued.output;
  EXPECT_FALSE(std::filesystem::exists(lock));
}

}  // namespace

namespace {

// Every dataset under `group` of two HDF5 files, compared value by value (floats read exactly as doubles).
void expect_same_tree(const v1sysid::h5::File& a, const v1sysid::h5::File& b, const std::string& group, int& compared) {
  ASSERT_EQ(a.list(group), b.list(group)) << group;
  for (const auto& name : a.list(group)) {
    const std::string path = group + "/" + name;
    if (a.is_group(path)) {
      expect_same_tree(a, b, path, compared);
    } else if (a.is_string(path)) {
      EXPECT_EQ(a.read_strings(path), b.read_strings(path)) << path;
      ++compared;
    } else {
      EXPECT_EQ(a.read<double>(path), b.read<double>(path)) << path;
      ++compared;
    }
  }
}

// One training path: a sweep trial on two datasets, and one that starts from a frozen core on a third, give the
// checkpoints `v1sysid train` gives for the same model, data, seed and data fraction (the transfer protocol of
// docs/replication/protocol.md section 4.4 in small).
// Each dataset of a model gets a readout named by its data_key (the file name stem). Two --data with one key
// (the same file twice, or files of one name in two folders) are refused before any data is read, by train and by
// sweep; the sweep used to record every trial as failed (the model refused the two readouts) and exit 0.
TEST(SweepTrain, TwoDatasetsWithOneDataKeyAreRefusedBeforeAnyWork) {
  ScratchDir dir;
  ASSERT_NO_FATAL_FAILURE(simulate_tiny(dir));
  std::filesystem::create_directories(dir / "other");
  std::filesystem::copy_file(dir / "tiny.h5", dir / "other/tiny.h5");
  const std::string model = v1sysid::testing::source_dir() + "/sweeps/models/lurz_transfer_quick.yaml";
  auto r = v1sysid::testing::run_v1sysid("train " + model + " --data " + (dir / "tiny.h5") + " --data " +
                                         (dir / "other/tiny.h5") + " --out " + (dir / "run") + " 2>&1");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--data " + (dir / "tiny.h5") + " and --data " + (dir / "other/tiny.h5") +
                          " have the same data_key 'tiny'"),
            std::string::npos)
      << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir / "run"));
  auto sweep = write_sweep(dir, "core.yaml",
                           "name: core\nseed: 1\nbase_model: " + model + "\narchitectures: [{name: core}]\n"
                           "search: {draws: 2}\n");
  r = run_v1sysid_mpi(2, "sweep " + sweep + " --data " + (dir / "tiny.h5") + " --data " + (dir / "tiny.h5") +
                             " --out " + (dir / "core.h5"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  const std::string said = "have the same data_key 'tiny'";
  const size_t first = r.output.find(said);
  EXPECT_NE(first, std::string::npos) << r.output;
  EXPECT_EQ(r.output.find(said, first + 1), std::string::npos) << "said once, by rank 0: " << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir / "core.h5"));
}

TEST(SweepTrain, SeveralDatasetsAndAFrozenInitCoreTrainAsTrainDoes) {
  ScratchDir dir;
  const std::string src = v1sysid::testing::source_dir();
  ASSERT_NO_FATAL_FAILURE(simulate_tiny(dir));
  {
    std::ifstream in(src + "/data/tiny.yaml");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    text.replace(text.find("\nseed: 1\n"), 9, "\nseed: 2\n");
    std::ofstream(dir / "other.yaml") << text;
  }
  auto r = v1sysid::testing::run_v1sysid("simulate " + (dir / "other.yaml") + " --stimuli " + (dir / "stimuli.h5") +
                                         " --out " + (dir / "other.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ofstream(dir / "m.yaml")
      << "core: {kind: stacked2d, filter_sizes: [7, 5], channels: [4, 4], nonlinearities: [elu, elu],\n"
         "       batchnorm_scale: [true, true], rel_smooth: [0, 0], rel_sparse: [0, 0]}\n"
         "readout: {kind: gaussian, feature_weight: 0.1, grid_predictor: cortex}\n"
         "train: {schedule: lurz, batch_size: 64, max_epochs: 2, seed: 1}\n";
  const std::string data = " --data " + (dir / "tiny.h5") + " --data " + (dir / "other.h5");
  // train under mpirun too: OpenBLAS takes one thread there and two in a plain process, and a GEMM's sums then
  // round differently.
  r = run_v1sysid_mpi(1, "train " + (dir / "m.yaml") + data + " --out " + (dir / "core") + " --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.output;

  auto core_sweep = write_sweep(dir, "core.yaml",
                                "name: core\nseed: 1\nbase_model: m.yaml\narchitectures: [{name: core}]\n"
                                "search: {draws: 1}\n");
  r = run_v1sysid_mpi(
      1, "sweep " + core_sweep + data + " --out " + (dir / "core.h5") + " --save-checkpoints " + (dir / "core_ckpt"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find(" (val corr "), std::string::npos) << r.output;  // the Lurz criterion in the trial's line
  // A frozen core on the other dataset at half its images, by train and by a sweep: the trained core (the sweep's
  // init_core is resolved against the sweep file's folder), and the random-core null (init_core: random).
  for (const auto& [name, train_core, sweep_core] :
       {std::tuple<std::string, std::string, std::string>{"frozen", dir / "core/checkpoint.h5", "core/checkpoint.h5"},
        {"random", "random", "random"}}) {
    r = run_v1sysid_mpi(1, "train " + (dir / "m.yaml") + " --data " + (dir / "other.h5") + " --init-core " +
                               train_core + " --freeze-core --data-fraction 0.5 --out " + (dir / name) + " --quiet");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto sweep = write_sweep(dir, name + ".yaml",
                             "name: " + name + "\nseed: 1\nbase_model: m.yaml\narchitectures: [{name: " + name +
                                 ", init_core: " + sweep_core + ", freeze_core: true}]\n"
                                 "search: {draws: 1}\ngrid: {data_fraction: [0.5]}\n");
    r = run_v1sysid_mpi(1, "sweep " + sweep + " --data " + (dir / "other.h5") + " --out " + (dir / (name + ".h5")) +
                               " --save-checkpoints " + (dir / (name + "_ckpt")));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }

  for (const auto& [trained, swept] :
       {std::pair<std::string, std::string>{"core/checkpoint.h5", "core_ckpt/trial_0.h5"},
        {"frozen/checkpoint.h5", "frozen_ckpt/trial_0.h5"}, {"random/checkpoint.h5", "random_ckpt/trial_0.h5"}}) {
    SCOPED_TRACE(swept);
    auto a = v1sysid::h5::File::open(dir / trained);
    auto b = v1sysid::h5::File::open(dir / swept);
    int compared = 0;
    expect_same_tree(a, b, "export", compared);
    expect_same_tree(a, b, "params", compared);
    EXPECT_GT(compared, 20);
  }
  // One meaning of iterations: the results row holds the schedule's counter (here epochs) as the checkpoint and
  // metrics.json do, and the optimiser steps beside it.
  for (const auto& [results, checkpoint] :
       {std::pair<std::string, std::string>{"core.h5", "core/checkpoint.h5"}, {"frozen.h5", "frozen/checkpoint.h5"}}) {
    auto row = v1sysid::h5::File::open(dir / results);
    auto trained = v1sysid::h5::File::open(dir / checkpoint);
    EXPECT_EQ(row.read<int64_t>("trials/iterations"),
              std::vector<int64_t>{trained.read_attribute_int("training", "iterations")});
    EXPECT_EQ(row.read<int64_t>("trials/steps"), std::vector<int64_t>{trained.read_attribute_int("training", "steps")});
    EXPECT_EQ(row.read<int64_t>("trials/iterations"), std::vector<int64_t>{2});  // max_epochs
    EXPECT_GT(trained.read_attribute_int("training", "steps"), 2);
    // trials/config: the trial's resolved model config, the text its checkpoint stores.
    EXPECT_EQ(row.read_strings("trials/config"),
              std::vector<std::string>{trained.read_attribute_string("/", "config")});
    // The Lurz schedule's criterion: the row's best validation correlation is the run's (metrics.json, 10 digits).
    const std::string metrics = dir / (checkpoint.substr(0, checkpoint.find('/')) + "/metrics.json");
    const double from_train = nlohmann::json::parse(v1sysid::testing::read_text(metrics))["best_val_correlation"];
    const auto in_row = row.read<double>("trials/best_val_correlation");
    ASSERT_EQ(in_row.size(), 1u);
    EXPECT_NEAR(in_row[0], from_train, 1e-9 * std::fabs(from_train)) << metrics;
    // ... and its validation correlation at each check (one per epoch), none above the best.
    v1sysid::h5::Shape shape;
    const auto curve = row.read<double>("trials/val_correlation_curve", &shape);
    ASSERT_EQ(shape[0], 1u);
    ASSERT_GE(shape[1], 2u);
    EXPECT_TRUE(std::isfinite(curve[0]) && std::isfinite(curve[1]));
    for (size_t k = 2; k < shape[1]; ++k) EXPECT_TRUE(std::isnan(curve[k])) << k;  // max_epochs: 2
    EXPECT_LE(std::max(curve[0], curve[1]), in_row[0]);
  }
  // Two datasets: trials/neuron_correlation holds both datasets' neurons.
  v1sysid::h5::Shape shape;
  v1sysid::h5::File::open(dir / "core.h5").read<float>("trials/neuron_correlation", &shape);
  EXPECT_EQ(shape[1], 120u);
  EXPECT_EQ(v1sysid::h5::File::open(dir / "frozen.h5").read_strings("trials/status"), std::vector<std::string>{"ok"});
  // An ensemble of a Lurz-schedule sweep records the criterion its members were chosen by and their correlations.
  r = v1sysid::testing::run_v1sysid("ensemble " + (dir / "core.h5") + " --checkpoints " + (dir / "core_ckpt") +
                                    " --out " + (dir / "core_ensemble.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("the best by validation correlation: trials 0)"), std::string::npos) << r.output;
  {
    auto ensemble = v1sysid::h5::File::open(dir / "core_ensemble.h5");
    EXPECT_EQ(ensemble.read_attribute_string("/", "ranked_by"), "validation correlation");
    EXPECT_EQ(ensemble.read<double>("val_correlation"),
              v1sysid::h5::File::open(dir / "core.h5").read<double>("trials/best_val_correlation"));
  }
  // A core that does not fit its architecture (other channels) is refused before any trial, naming the checkpoint,
  // instead of failing, and being recorded as failed, in every trial.
  auto misfit = write_sweep(dir, "misfit.yaml",
                            "name: misfit\nseed: 1\nbase_model: m.yaml\n"
                            "architectures: [{name: wide, init_core: core/checkpoint.h5, freeze_core: true, "
                            "overrides: {core: {channels: [6, 6]}}}]\nsearch: {draws: 3}\n");
  r = run_v1sysid_mpi(1, "sweep " + misfit + " --data " + (dir / "other.h5") + " --out " + (dir / "misfit.h5"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("core/checkpoint.h5 (architectures[0].init_core) differs from the core"), std::string::npos)
      << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir / "misfit.h5"));
}

// A resume must use the inputs the results file was started with: other datasets (fewer, or another order) or a
// changed init-core checkpoint are refused; the same inputs resume.
// The results file records each dataset's SHA-256 (what sha256sum prints), computed once, on rank 0; a file started
// before the SHA-256 digests recorded 64-bit FNV-1a checksums and still resumes on the same data, not on other data.
TEST(SweepIdentity, DatasetDigestsAreSha256FromRankZeroAndOldChecksumFilesStillResume) {
  ScratchDir dir;
  std::ofstream(dir / "a.bin") << "a dataset of a few bytes";
  std::string body = dry_sweep(0);
  body.replace(body.find("min_seconds: 0.15, max_seconds: 0.25"), 36, "min_seconds: 0.01, max_seconds: 0.02");
  auto sweep = write_sweep(dir, "s.yaml", body);
  const std::string cache = "V1SYSID_CACHE_DIR=" + (dir / "cache") + " ";
  const std::string cmd = "sweep " + sweep + " --data " + (dir / "a.bin") + " --out " + (dir / "r.h5");
  auto r = run_shell(cache + v1sysid::testing::mpi_command(2, cmd));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  size_t lines = 0;
  for (size_t at = r.output.find("dataset identity (SHA-256)"); at != std::string::npos;
       at = r.output.find("dataset identity (SHA-256)", at + 1))
    ++lines;
  EXPECT_EQ(lines, 1u) << "the digest is computed by rank 0 alone: " << r.output;
  const auto sha = run_shell("sha256sum " + (dir / "a.bin") + " | cut -c1-64");
  const std::string expected = sha.output.substr(0, 64);
  EXPECT_EQ(v1sysid::h5::File::open(dir / "r.h5").read_attribute_string("/", "dataset_checksum"), expected);
  EXPECT_NE(v1sysid::testing::read_text(dir / "cache/digests.tsv").find(expected), std::string::npos);
  // A file of the FNV-1a era: resumes on the same data, refused on other data.
  v1sysid::h5::File::open_rw(dir / "r.h5").write_attribute("/", "dataset_checksum", v1sysid::dataset_checksum(dir / "a.bin"));
  r = run_shell(cache + v1sysid::testing::mpi_command(1, cmd));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  v1sysid::h5::File::open_rw(dir / "r.h5").write_attribute("/", "dataset_checksum", std::string("0123456789abcdef"));
  r = run_shell(cache + v1sysid::testing::mpi_command(1, cmd));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("the dataset differs"), std::string::npos) << r.output;
}

TEST(SweepIdentity, OtherDatasetsOrAnotherInitCoreAreRefusedOnResume) {
  ScratchDir dir;
  std::ofstream(dir / "a.bin") << "first dataset";
  std::ofstream(dir / "b.bin") << "second dataset";
  std::ofstream(dir / "core.h5") << "a core";
  std::string body = dry_sweep(0);
  auto edit = [&body](const std::string& from, const std::string& to) {
    body.replace(body.find(from), from.size(), to);
  };
  edit("{name: a}", "{name: a, init_core: core.h5, freeze_core: true}");
  edit("min_seconds: 0.15, max_seconds: 0.25", "min_seconds: 0.01, max_seconds: 0.02");
  auto sweep = write_sweep(dir, "s.yaml", body);
  const std::string out = " --out " + (dir / "r.h5");
  const std::string a = " --data " + (dir / "a.bin"), b = " --data " + (dir / "b.bin");
  auto r = run_v1sysid_mpi(1, "sweep " + sweep + a + b + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(v1sysid::h5::File::open(dir / "r.h5").read_attribute_string("/", "dataset_path"),
            (dir / "a.bin") + "," + (dir / "b.bin"));
  for (const std::string& other : {a, b + a}) {
    r = run_v1sysid_mpi(1, "sweep " + sweep + other + out);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("the dataset differs from the one this results file was started with"), std::string::npos)
        << r.output;
  }
  r = run_v1sysid_mpi(1, "sweep " + sweep + a + b + out);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::ofstream(dir / "core.h5") << "another core";
  r = run_v1sysid_mpi(1, "sweep " + sweep + a + b + out);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find((dir / "core.h5") + " (architectures[0].init_core) changed"), std::string::npos) << r.output;
  // freeze_core alone would freeze a random core.
  edit("init_core: core.h5, ", "");
  r = run_v1sysid_mpi(1, "sweep " + write_sweep(dir, "t.yaml", body) + a + " --out " + (dir / "t.h5"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("freeze_core"), std::string::npos) << r.output;
  // A random frozen core on purpose (the null of a transfer) is spelled init_core: random, and is part of the
  // sweep's identity; random without freeze_core would be training from scratch.
  edit("freeze_core: true", "init_core: random, freeze_core: true");
  r = run_v1sysid_mpi(1, "sweep " + write_sweep(dir, "u.yaml", body) + a + " --out " + (dir / "u.h5"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(v1sysid::h5::File::open(dir / "u.h5").read_attribute_string("/", "sweep_identity").find("init_core: random"),
            std::string::npos);
  edit("init_core: random, freeze_core: true", "init_core: random");
  r = run_v1sysid_mpi(1, "sweep " + write_sweep(dir, "v.yaml", body) + a + " --out " + (dir / "v.h5"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("freeze_core: true"), std::string::npos) << r.output;
}

}  // namespace

// ---- ensembles (issue 22) ---------------------------------------------------------------------------------

namespace {

std::vector<float> read_floats(const std::string& path, const std::string& name) {
  return v1sysid::h5::File::open(path).read<float>(name);
}

}  // namespace

// `ensemble` takes the K trials with the lowest validation loss (as `select` ranks them) and every command that
// takes --checkpoint takes the ensemble: predict and rf give the mean of the members' outputs, a one-member
// ensemble evaluates and finds MEIs exactly as its checkpoint does, and a member changed after the ensemble was
// made is refused by name.
TEST(Ensemble, TheBestTrialsActAsOneModelInEveryCommand) {
  ScratchDir dir;
  const std::string src = v1sysid::testing::source_dir();
  ASSERT_NO_FATAL_FAILURE(simulate_tiny(dir));
  auto sweep = write_sweep(dir, "s.yaml",
                           "name: ensemble_test\nseed: 5\nbase_model: " + src + "/sweeps/models/cnn_tiny.yaml\n"
                           "architectures:\n  - {name: cnn_tiny, overrides: {train: {max_iterations: 15, val_every: 5, batch_size: 32}}}\n"
                           "search:\n  draws: 3\n  hyperparameters: {readout.weight: {log_uniform: [0.005, 0.03]}}\n");
  const std::string data = dir / "tiny.h5", results = dir / "r.h5", ckpt = dir / "ckpt";
  auto r = v1sysid::testing::run_v1sysid("sweep " + sweep + " --data " + data + " --out " + results +
                                         " --save-checkpoints " + ckpt);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto val = v1sysid::h5::File::open(results).read<double>("trials/best_val_loss");
  std::vector<int64_t> order{0, 1, 2};
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return val[a] < val[b]; });

  r = v1sysid::testing::run_v1sysid("ensemble " + results + " --checkpoints " + ckpt + " --top 2 --out " + (dir / "e.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(v1sysid::h5::File::open(dir / "e.h5").read<int64_t>("trials"), (std::vector<int64_t>{order[0], order[1]}));
  {  // Ecker's schedule: chosen by validation loss; no validation correlation.
    auto ensemble = v1sysid::h5::File::open(dir / "e.h5");
    EXPECT_EQ(ensemble.read_attribute_string("/", "ranked_by"), "validation loss");
    EXPECT_EQ(ensemble.read<double>("val_loss"),
              (std::vector<double>{val.at(static_cast<size_t>(order[0])), val.at(static_cast<size_t>(order[1]))}));
    const auto val_correlation = ensemble.read<double>("val_correlation");
    ASSERT_EQ(val_correlation.size(), 2u);
    EXPECT_TRUE(std::isnan(val_correlation[0]) && std::isnan(val_correlation[1]));
  }
  auto member = [&](int k) { return ckpt + "/trial_" + std::to_string(order[static_cast<size_t>(k)]) + ".h5"; };

  // predict and rf: the mean of the two members.
  for (const std::string& c : {dir / "e.h5", member(0), member(1)}) {
    const std::string tag = std::to_string(std::hash<std::string>{}(c));
    r = v1sysid::testing::run_v1sysid("predict --checkpoint " + c + " --data " + data + " --tier test --out " +
                                      (dir / ("p" + tag + ".h5")));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = v1sysid::testing::run_v1sysid("rf --checkpoint " + c + " --neurons 0 5 --out " + (dir / ("rf" + tag + ".h5")));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  auto file = [&](const std::string& prefix, const std::string& c) {
    return dir / (prefix + std::to_string(std::hash<std::string>{}(c)) + ".h5");
  };
  for (const auto& [prefix, name] : {std::pair<std::string, std::string>{"p", "predictions"}, {"rf", "rf"}}) {
    const auto e = read_floats(file(prefix, dir / "e.h5"), name);
    const auto a = read_floats(file(prefix, member(0)), name), b = read_floats(file(prefix, member(1)), name);
    ASSERT_EQ(e.size(), a.size());
    double worst = 0, scale = 0;
    for (size_t k = 0; k < e.size(); ++k) {
      worst = std::max(worst, std::fabs(double(e[k]) - 0.5 * (double(a[k]) + double(b[k]))));
      scale = std::max(scale, std::fabs(double(a[k])));
    }
    EXPECT_LT(worst, 1e-6 * scale) << name;
    EXPECT_NE(a, b) << name << ": the members should differ";
  }

  // A one-member ensemble is its checkpoint: evaluate and mei give the same output.
  r = v1sysid::testing::run_v1sysid("ensemble " + results + " --checkpoints " + ckpt + " --top 1 --out " + (dir / "e1.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto one = v1sysid::testing::run_v1sysid("evaluate --checkpoint " + (dir / "e1.h5") + " --data " + data + " --json");
  const auto best = v1sysid::testing::run_v1sysid("evaluate --checkpoint " + member(0) + " --data " + data + " --json");
  ASSERT_EQ(one.exit_code, 0) << one.output;
  EXPECT_EQ(one.output, best.output);
  const auto two = v1sysid::testing::run_v1sysid("evaluate --checkpoint " + (dir / "e.h5") + " --data " + data + " --json");
  ASSERT_EQ(two.exit_code, 0) << two.output;
  EXPECT_NE(two.output, best.output);
  for (const std::string& c : {dir / "e1.h5", member(0)}) {
    r = v1sysid::testing::run_v1sysid("mei --checkpoint " + c + " --neurons 1 --steps 5 --starts 1 --out " +
                                      file("mei", c));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  EXPECT_EQ(read_floats(file("mei", dir / "e1.h5"), "images"), read_floats(file("mei", member(0)), "images"));
  r = v1sysid::testing::run_v1sysid("mei --checkpoint " + (dir / "e.h5") + " --neurons 1 --steps 5 --starts 1 --out " +
                                    (dir / "mei_e.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;

  // Bad requests: an architecture the sweep does not have; a member changed after the ensemble was made.
  r = v1sysid::testing::run_v1sysid("ensemble " + results + " --checkpoints " + ckpt + " --architecture roteq --out " +
                                    (dir / "bad.h5"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("cnn_tiny"), std::string::npos) << r.output;
  {
    auto f = v1sysid::h5::File::open_rw(member(1));
    f.write_attribute("/", "touched", int64_t{1});
  }
  r = v1sysid::testing::run_v1sysid("predict --checkpoint " + (dir / "e.h5") + " --data " + data +
                                    " --tier test --out " + (dir / "p_bad.h5"));
  EXPECT_EQ(r.exit_code, 4) << r.output;
  EXPECT_NE(r.output.find("changed since the ensemble was made"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(member(1)), std::string::npos) << r.output;
}
