// Outputs: written under a temporary name and renamed when complete (io/output_file.hpp), never half-written
// or empty under the final name on a full disk, never over an existing file without --force, never inside a
// dataset folder, and refused before any long work. Disk-full cases run on a small tmpfs (root only; skipped
// with the reason otherwise).
#include "core/error.hpp"
#include "io/h5.hpp"
#include "io/npy.hpp"
#include "io/output_file.hpp"
#include "test_support.hpp"

#include <gtest/gtest.h>
#include <sys/mount.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace {

using namespace v1sysid;
using v1sysid::testing::read_text;
using v1sysid::testing::ScratchDir;
using v1sysid::testing::SmallDisk;
namespace fs = std::filesystem;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Names in `folder` that hold ".partial" (temporaries left behind).
std::vector<std::string> leftovers(const std::string& folder) {
  std::vector<std::string> found;
  for (const auto& e : fs::recursive_directory_iterator(folder))
    if (contains(e.path().filename().string(), ".partial")) found.push_back(e.path().string());
  return found;
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

void write_file(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// A FileTree-shaped folder (data/ and meta/trials/), enough for the refusal, which runs before any reading.
std::string make_file_tree(const ScratchDir& dir) {
  const std::string folder = dir / "tree";
  fs::create_directories(folder + "/data/images");
  fs::create_directories(folder + "/meta/trials");
  return folder;
}

// A small random StaticImageSet: 16 x 16 images, 6 neurons, 60 train, 20 validation, 5 test images x 4.
void write_small_dataset(const std::string& path) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> grey(0, 255);
  std::poisson_distribution<int> count(2.0);
  std::vector<float> images, responses;
  std::vector<std::string> tiers;
  std::vector<int64_t> ids;
  auto add = [&](int64_t id, const char* tier) {
    for (int i = 0; i < 16 * 16; ++i) images.push_back(grey(rng));
    for (int n = 0; n < 6; ++n) responses.push_back(static_cast<float>(count(rng)));
    tiers.push_back(tier);
    ids.push_back(id);
  };
  for (int i = 0; i < 60; ++i) add(i, "train");
  for (int i = 0; i < 20; ++i) add(100 + i, "validation");
  for (int r = 0; r < 4; ++r)
    for (int i = 0; i < 5; ++i) add(200 + i, "test");
  const auto T = static_cast<hsize_t>(tiers.size());
  auto f = h5::File::create(path, true);
  f.write("images", images, {T, 1, 16, 16});
  f.write("responses", responses, {T, 6});
  f.write_strings("tiers", tiers);
  f.write("item_info/frame_image_id", ids, {T});
  f.write("neurons/unit_ids", std::vector<int64_t>{1, 2, 3, 4, 5, 6}, {6});
  f.commit();
}

const char* kSmallModel = R"(
core: {filter_sizes: [5, 3], channels: [4, 4], nonlinearities: [softplus, none], batchnorm_scale: [true, false],
       rel_smooth: [1, 0.5], rel_sparse: [0, 1]}
readout: {regularizer: joint_l1, weight: 0.002}
train: {learning_rate: 0.01, batch_size: 32, val_every: 5, patience: 5, max_iterations: 10, seed: 1,
        eval_batch_size: 32}
)";

struct SmallRun {
  ScratchDir dir;
  std::string data = dir / "small.h5";
  std::string model = dir / "model.yaml";
  SmallRun() {
    write_small_dataset(data);
    write_file(model, kSmallModel);
  }
  std::string train_args(const std::string& out) const {
    return "train " + model + " --data " + data + " --out " + out + " --quiet";
  }
};

// ---- write_file_atomically ----------------------------------------------------------------------------

TEST(OutputsAtomicFile, WritesCompleteFileAndLeavesNoTemporary) {
  ScratchDir dir;
  const std::string path = dir / "a.json";
  write_file_atomically(path, std::string("{\"x\": 1}\n"));
  EXPECT_EQ(read_text(path), "{\"x\": 1}\n");
  write_file_atomically(path, std::string("{}\n"), Sync::none);  // replaces
  EXPECT_EQ(read_text(path), "{}\n");
  EXPECT_TRUE(leftovers(dir.path.string()).empty());
  EXPECT_EQ(partial_path(path), path + ".partial-" + std::to_string(::getpid()));
}

TEST(OutputsAtomicFile, DiskFullKeepsTheOldFileAndRemovesTheTemporary) {
  SmallDisk disk(64 * 1024);
  if (!disk.mounted) GTEST_SKIP() << disk.why_not;
  const std::string path = disk / "metrics.json";
  write_file_atomically(path, std::string("old\n"));
  disk.fill(0);
  const std::string big(32 * 1024, 'x');
  const std::string m = message_of([&] { write_file_atomically(path, big); });
  EXPECT_TRUE(contains(m, "disk full while writing metrics.json")) << m;
  EXPECT_TRUE(contains(m, path)) << m;
  EXPECT_THROW(write_file_atomically(path, big), EnvironmentError);
  EXPECT_EQ(read_text(path), "old\n");
  EXPECT_TRUE(leftovers(disk.dir.path.string()).empty());
}

TEST(OutputsAtomicFile, FailedRenameRemovesTheTemporary) {
  ScratchDir dir;
  const std::string path = dir / "taken";
  fs::create_directories(path + "/inside");  // a non-empty folder cannot be replaced by a file
  EXPECT_THROW(write_file_atomically(path, std::string("x")), IoError);
  EXPECT_TRUE(leftovers(dir.path.string()).empty());
}

TEST(OutputsAtomicFile, NpySaveOnAFullDiskLeavesNoTemporary) {
  SmallDisk disk(64 * 1024);
  if (!disk.mounted) GTEST_SKIP() << disk.why_not;
  disk.fill(0);
  const std::vector<float> v(20000, 1.0f);
  EXPECT_THROW(npy::save(disk / "a.npy", npy::from_float32(v, {20000})), EnvironmentError);
  EXPECT_FALSE(fs::exists(disk / "a.npy"));
  EXPECT_TRUE(leftovers(disk.dir.path.string()).empty());
}

// ---- output folders and files ---------------------------------------------------------------------------

TEST(OutputsFolder, AFileInTheWayIsAnOrdinaryIoError) {
  ScratchDir dir;
  write_file(dir / "file", "x");
  const std::string m = message_of([&] { create_output_folder(dir / "file/sub"); });
  EXPECT_TRUE(contains(m, "while creating the output folder")) << m;
  EXPECT_THROW(create_output_folder(dir / "file/sub"), IoError);
  EXPECT_THROW(prepare_output_file(dir / "file/sub/out.h5", false), IoError);
}

TEST(OutputsFolder, ReadOnlyFileSystemSaysNotAllowed) {
  SmallDisk disk(64 * 1024);
  if (!disk.mounted) GTEST_SKIP() << disk.why_not;
  ASSERT_EQ(mount("tmpfs", disk.dir.path.c_str(), "tmpfs", MS_REMOUNT | MS_RDONLY, nullptr), 0) << std::strerror(errno);
  const std::string m = message_of([&] { prepare_output_file(disk / "sub/out.h5", false); });
  EXPECT_TRUE(contains(m, "not allowed while creating the output folder")) << m;
  const auto r = v1sysid::testing::run_v1sysid("rf --checkpoint none.h5 --out " + disk / "sub/rf.h5");
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_TRUE(contains(r.output, "not allowed while creating the output folder")) << r.output;
  EXPECT_FALSE(contains(r.output, "unexpected")) << r.output;
  // An existing folder that cannot take files: refused before training, not when the checkpoint is written.
  SmallRun run;
  const auto t = v1sysid::testing::run_v1sysid(run.train_args(disk.dir.path.string()));
  EXPECT_EQ(t.exit_code, 3) << t.output;
  EXPECT_TRUE(contains(t.output, "not allowed while creating files in the output folder")) << t.output;
}

TEST(OutputsFile, ExistingFileNeedsForce) {
  ScratchDir dir;
  write_file(dir / "out.h5", "x");
  EXPECT_THROW(prepare_output_file(dir / "out.h5", false), IoError);
  EXPECT_NO_THROW(prepare_output_file(dir / "out.h5", true));
  EXPECT_THROW(prepare_output_file(dir.path.string(), true), IoError);  // a folder is not a file name
  EXPECT_NO_THROW(prepare_output_file(dir / "new/out.h5", false));
  EXPECT_TRUE(fs::is_directory(dir / "new"));
}

// ---- outputs inside a dataset ---------------------------------------------------------------------------

TEST(OutputsInsideDataset, RefusesOutputsInsideADatasetFolderOrOnAnInput) {
  ScratchDir dir;
  const std::string tree = make_file_tree(dir);
  fs::create_directories(dir / "elsewhere");
  fs::create_directory_symlink(tree, dir / "link");
  const std::string m = message_of([&] { refuse_outputs_inside_datasets({tree + "/data/images/x.h5"}, {tree}); });
  EXPECT_TRUE(contains(m, "lies inside the dataset folder " + tree)) << m;
  EXPECT_TRUE(contains(m, "write it elsewhere")) << m;
  EXPECT_THROW(refuse_outputs_inside_datasets({tree + "/results.h5"}, {tree + "/"}), ConfigError);
  EXPECT_THROW(refuse_outputs_inside_datasets({dir / "elsewhere/../tree/r.h5"}, {tree}), ConfigError);
  EXPECT_THROW(refuse_outputs_inside_datasets({dir / "link/r.h5"}, {tree}), ConfigError);  // through a link
  EXPECT_THROW(refuse_outputs_inside_datasets({tree}, {tree}), ConfigError);
  // Inside a FileTree folder that the command does not read: refused all the same.
  EXPECT_THROW(refuse_outputs_inside_datasets({tree + "/meta/x.csv"}, {}), ConfigError);
  // A dataset file: the output must not be that file.
  write_file(dir / "d.h5", "x");
  EXPECT_THROW(refuse_outputs_inside_datasets({dir / "./d.h5"}, {dir / "d.h5"}), ConfigError);
  // Elsewhere, next to the dataset, or empty: fine.
  EXPECT_NO_THROW(refuse_outputs_inside_datasets({dir / "elsewhere/r.h5", dir / "tree.h5", ""}, {tree, ""}));
  EXPECT_NO_THROW(refuse_outputs_inside_datasets({dir / "d2.h5"}, {dir / "d.h5"}));
}

TEST(OutputsInsideDataset, EveryCommandRefusesBeforeWriting) {
  ScratchDir dir;
  const std::string tree = make_file_tree(dir);
  const std::string model = dir / "model.yaml";
  write_file(model, kSmallModel);
  const std::string sweep = v1sysid::testing::source_dir() + "/sweeps/dry_run.yaml";
  for (const std::string& args :
       {"predict --checkpoint c.h5 --data " + tree + " --out " + tree + "/data/images/x.h5",
        "train " + model + " --data " + tree + " --out " + tree + "/run",
        "sweep " + sweep + " --dry-run --data " + tree + " --out " + tree + "/results.h5",
        "sweep " + sweep + " --dry-run --data " + tree + " --out " + (dir / "r.h5") + " --save-checkpoints " + tree +
            "/ck",
        "rf --checkpoint c.h5 --out " + tree + "/rf.h5",
        "similarity --checkpoint c.h5 --images " + tree + " --out " + tree + "/meta/rsm.h5",
        "images --procedural dead_leaves --out " + tree + "/stimuli.h5",
        "simulate " + v1sysid::testing::source_dir() + "/data/tiny.yaml --out " + tree + "/sim.h5"}) {
    const auto r = v1sysid::testing::run_v1sysid(args);
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, "inside the dataset folder")) << args << "\n" << r.output;
  }
  // Nothing was written into the dataset.
  std::vector<std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(tree)) files.push_back(e.path().string());
  EXPECT_EQ(files.size(), 4u) << files.back();  // data, data/images, meta, meta/trials
}

// ---- commands on a full disk ----------------------------------------------------------------------------

TEST(OutputsFullDisk, TrainDoesNotReportAnEmptyMetricsFileAsWritten) {
  SmallRun run;
  // How much the checkpoint takes, from the same run on an ordinary disk (same data path, same size).
  auto r = v1sysid::testing::run_v1sysid(run.train_args(run.dir / "probe"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto checkpoint_bytes = fs::file_size(run.dir / "probe/checkpoint.h5");
  SmallDisk disk(checkpoint_bytes + 256 * 1024);
  if (!disk.mounted) GTEST_SKIP() << disk.why_not;
  fs::create_directories(disk / "run");
  disk.fill((checkpoint_bytes + 4095) / 4096 * 4096);  // room for the checkpoint, none for metrics.json
  r = v1sysid::testing::run_v1sysid(run.train_args(disk / "run"));
  EXPECT_EQ(r.exit_code, 7) << r.output;
  EXPECT_TRUE(contains(r.output, "disk full while writing metrics.json")) << r.output;
  EXPECT_FALSE(contains(r.output, "wrote")) << r.output;
  EXPECT_TRUE(fs::exists(disk / "run/checkpoint.h5")) << r.output;  // the room was for it
  EXPECT_FALSE(fs::exists(disk / "run/metrics.json"));
  EXPECT_TRUE(leftovers(disk.dir.path.string()).empty());
}

TEST(OutputsFullDisk, TrainAndPredictLeaveNoEmptyFileUnderTheFinalName) {
  SmallRun run;
  auto r = v1sysid::testing::run_v1sysid(run.train_args(run.dir / "run"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  SmallDisk disk(64 * 1024);
  if (!disk.mounted) GTEST_SKIP() << disk.why_not;
  fs::create_directories(disk / "run");
  disk.fill(0);
  // A full disk is an EnvironmentError (exit 7) that says so, and leaves no temporary file behind.
  auto leftovers = [&] {
    std::string names;
    for (const auto& e : fs::recursive_directory_iterator(disk.dir.path))
      if (e.path().filename().string().find(".partial") != std::string::npos) names += e.path().string() + " ";
    return names;
  };
  r = v1sysid::testing::run_v1sysid(run.train_args(disk / "run"));
  EXPECT_EQ(r.exit_code, 7) << r.output;
  EXPECT_TRUE(contains(r.output, "disk full")) << r.output;
  EXPECT_FALSE(fs::exists(disk / "run/checkpoint.h5")) << r.output;
  EXPECT_FALSE(fs::exists(disk / "run/metrics.json")) << r.output;
  EXPECT_EQ(leftovers(), "");
  r = v1sysid::testing::run_v1sysid("predict --checkpoint " + run.dir / "run/checkpoint.h5" + " --data " + run.data +
                                    " --out " + disk / "pred.h5");
  EXPECT_EQ(r.exit_code, 7) << r.output;
  EXPECT_TRUE(contains(r.output, "disk full")) << r.output;
  EXPECT_FALSE(fs::exists(disk / "pred.h5")) << r.output;
  EXPECT_EQ(leftovers(), "");
}

// `select --csv`: on a full disk an error and no file; an existing file only with --force.
TEST(OutputsSelectCsv, CsvIsCompleteOrAbsentAndNeedsForce) {
  ScratchDir dir;
  const std::string results = dir / "dry.h5";
  auto r = v1sysid::testing::run_v1sysid("sweep " + v1sysid::testing::source_dir() + "/sweeps/dry_run.yaml --out " +
                                         results);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string csv = dir / "sel.csv";
  write_file(csv, "keep\n");
  r = v1sysid::testing::run_v1sysid("select " + results + " --csv " + csv);
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_TRUE(contains(r.output, "--force")) << r.output;
  EXPECT_EQ(read_text(csv), "keep\n");
  r = v1sysid::testing::run_v1sysid("select " + results + " --csv " + csv + " --force");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(read_text(csv), "architecture,")) << read_text(csv);
  r = v1sysid::testing::run_v1sysid("select " + results + " --csv " + results + " --force");
  EXPECT_EQ(r.exit_code, 2) << r.output;  // never over its own input

  SmallDisk disk(64 * 1024);
  if (!disk.mounted) GTEST_SKIP() << disk.why_not;
  disk.fill(0);
  r = v1sysid::testing::run_v1sysid("select " + results + " --csv " + disk / "sel.csv");
  EXPECT_EQ(r.exit_code, 7) << r.output;
  EXPECT_TRUE(contains(r.output, "disk full while writing sel.csv")) << r.output;
  EXPECT_FALSE(fs::exists(disk / "sel.csv"));
  EXPECT_TRUE(leftovers(disk.dir.path.string()).empty());
}

// `images` refuses an existing output before any work: here the photo cache is missing, which the work would
// meet first.
TEST(OutputsImages, RefusesAnExistingOutputBeforeCuttingCrops) {
  ScratchDir dir;
  write_file(dir / "stimuli.h5", "x");
  const auto r = v1sysid::testing::run_v1sysid("images --photos " + dir / "no-photos" + " --out " + dir / "stimuli.h5");
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_TRUE(contains(r.output, "already exists")) << r.output;
  EXPECT_EQ(read_text(dir / "stimuli.h5"), "x");
}

}  // namespace
