// v1sysid images: builds the grey natural-image stimulus set from the curated photographs (or, only when
// asked by name, a procedural dead-leaves set) and writes the stimulus file described in sim/photos.hpp and
// docs/formats.md ("Stimuli file"):
//   images [N, H, W] float32 0..255, split [N] "trainval"|"test", photo_index [N] int32, scale [N] float32,
//   position [N, 2] int32 (x, y), scaled_width [N] int32, photos/{name,path,package,author,licence} [P];
//   root attributes format_version = 1, generator, seed, min_crop_sd; summary/ attributes.
// It prints the effective number of distinct images: crops, photographs and crops per photograph per tier, the
// inverse Simpson index of the crop shares, and the measured number of overlapping crop pairs (0).
#include "apps/commands.hpp"
#include "core/error.hpp"
#include "io/output_file.hpp"
#include "sim/photos.hpp"

#include <iomanip>
#include <iostream>
#include <memory>

namespace v1sysid::apps {

namespace {

struct ImagesArgs {
  std::string out;
  long count = 5400;  // data/paper.yaml: 4,860 train + 540 validation images
  long test_count = 100;
  int height = 36;
  int width = 64;
  int64_t seed = 0;
  std::string photos = sim::default_photo_cache();
  std::string procedural;
  bool force = false;
};

void print_tier(const char* tier, const sim::TierSummary& t, long available, std::ostream& out) {
  out << "images: " << tier << ": " << t.crops << " crops (" << available << " non-overlapping available) from "
      << t.photos << " photographs; crops per photograph min " << t.min_per_photo << ", median " << t.median_per_photo
      << ", max " << t.max_per_photo << "; effective number of photographs " << std::fixed << std::setprecision(1)
      << t.effective_photos << std::defaultfloat << " (inverse Simpson index of the crop shares)\n";
}

void print_stimulus_summary(const sim::StimulusSet& set, std::ostream& out) {
  const sim::StimulusSummary s = sim::summarize_stimuli(set);
  print_tier("trainval", s.trainval, set.available_trainval, out);
  print_tier("test", s.test, set.available_test, out);
  out << "images: overlapping crop pairs of one photograph (measured in photo coordinates): " << s.overlapping_pairs
      << "; photographs in both tiers: " << s.shared_photos << std::endl;
}

void run_images(const ImagesArgs& args) {
  // A file of no image would pass for a stimulus set until `simulate` or `similarity` found it empty.
  if (args.count == 0 && args.test_count == 0)
    throw ConfigError("--count and --test-count are both 0: there would be no image to write", "the command line",
                      "ask for at least one crop (--count for train/validation, --test-count for test)");
  // Refuse before cutting thousands of crops rather than at the end.
  refuse_outputs_inside_datasets({args.out}, {});
  prepare_output_file(args.out, args.force);
  sim::StimulusOptions options;
  options.trainval_count = args.count;
  options.test_count = args.test_count;
  options.crop.height = args.height;
  options.crop.width = args.width;
  options.seed = static_cast<uint64_t>(args.seed);
  options.photo_dir = args.photos;
  const sim::StimulusSet set =
      args.procedural == "dead_leaves" ? sim::build_dead_leaves_stimuli(options) : sim::build_photo_stimuli(options);
  sim::write_stimuli(set, args.out, args.force);
  std::cout << "images: wrote " << set.size() << " images of " << set.height << "x" << set.width << " ("
            << options.trainval_count << " trainval, " << options.test_count << " test) to " << args.out
            << "; generator: " << set.generator << std::endl;
  if (set.generator != sim::kGeneratorPhotographs) return;
  print_stimulus_summary(set, std::cout);
}

}  // namespace

void add_images_command(CLI::App& app) {
  auto args = std::make_shared<ImagesArgs>();
  auto* cmd = app.add_subcommand(
      "images", "Cut grey natural-image stimuli (crops with source photo and scale) from the curated photographs");
  cmd->add_option("--out", args->out, "Output stimulus file (.h5)")->required();
  cmd->add_option("--count", args->count, "Number of train/validation crops")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--test-count", args->test_count, "Number of test crops (from the photos reserved for test)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--height", args->height, "Crop height in pixels")->capture_default_str()->check(CLI::Range(2, 4096));
  cmd->add_option("--width", args->width, "Crop width in pixels")->capture_default_str()->check(CLI::Range(2, 4096));
  cmd->add_option("--seed", args->seed, "Seed of the crop selection")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option(
         "--photos", args->photos,
         "Photo cache made by env/fetch-photos.sh (default: $V1SYSID_PHOTO_CACHE or /var/cache/v1sysid/photos)")
      ->capture_default_str();
  cmd->add_option(
         "--procedural", args->procedural,
         "Generate procedural images instead of photographs (labelled as such in the file); only 'dead_leaves'")
      ->check(CLI::IsMember({"dead_leaves"}));
  cmd->add_flag("--force", args->force, "Overwrite an existing output file");
  cmd->callback([args] { run_images(*args); });
}

}  // namespace v1sysid::apps
