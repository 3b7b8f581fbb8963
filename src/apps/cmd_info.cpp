// `v1sysid info PATH [--json]`: reads a dataset with the same readers and validation as training and
// summarises it: trials per tier, neurons, image shape, test images and their repeats, data_key.
#include "apps/commands.hpp"
#include "data/dataset.hpp"
#include "data/digest.hpp"

#include <nlohmann/json.hpp>

#include <iostream>
#include <memory>
#include <string>

namespace v1sysid::apps {

namespace {

struct InfoOptions {
  std::string path;
  bool json = false;
  bool digest = false;
};

const char* format_description(const std::string& format) {
  if (format == "hdf5") return "StaticImageSet HDF5 (neuralpredictors)";
  if (format == "filetree") return "FileTree folder (neuralpredictors / SENSORIUM)";
  if (format == "filetree-zip") return "zipped FileTree (neuralpredictors / SENSORIUM)";
  return "unknown";
}

nlohmann::json summary_json(const Dataset& d) {
  nlohmann::json trials = {{"train", d.count(Tier::train)},
                           {"validation", d.count(Tier::validation)},
                           {"test", d.count(Tier::test)}};
  if (d.count(Tier::final_test) > 0) trials["final_test"] = d.count(Tier::final_test);
  nlohmann::json j = {
      {"source", d.source},
      {"format", d.format},
      {"data_key", d.data_key},
      {"trials", trials},
      {"neurons", d.n_neurons},
      {"image_shape", {1, d.height, d.width}},
      {"test_images", d.unique_images(Tier::test)},
      {"test_repeats", d.min_repeats(Tier::test)},
      {"image_id_source", d.image_id_source},
      {"has_ground_truth", d.ground_truth.has_value()},
      {"has_cortical_coordinates", !d.cortical_coordinates.empty()},
      {"has_statistics", d.stored_statistics.has_value()},
  };
  if (d.count(Tier::final_test) > 0) {
    j["final_test_images"] = d.unique_images(Tier::final_test);
    j["final_test_repeats"] = d.min_repeats(Tier::final_test);
  }
  return j;
}

void print_summary(const Dataset& d) {
  std::cout << "dataset     " << d.source << "\n"
            << "format      " << format_description(d.format) << "\n"
            << "data_key    " << d.data_key << "\n"
            << "trials      train " << d.count(Tier::train) << ", validation " << d.count(Tier::validation)
            << ", test " << d.count(Tier::test);
  if (d.count(Tier::final_test) > 0) std::cout << ", final_test " << d.count(Tier::final_test);
  std::cout << " (" << d.n_trials << " in all)\n"
            << "neurons     " << d.n_neurons << "\n"
            << "images      1 x " << d.height << " x " << d.width << "\n"
            << "test set    " << d.unique_images(Tier::test) << " distinct images, at least "
            << d.min_repeats(Tier::test) << " repeats each (ids from " << d.image_id_source << ")\n"
            << "cortical coordinates  " << (d.cortical_coordinates.empty() ? "no" : "yes") << "\n"
            << "stored statistics     " << (d.stored_statistics ? "yes" : "no") << "\n"
            << "ground truth          " << (d.ground_truth ? "yes (simulated population)" : "no") << "\n";
}

}  // namespace

void add_info_command(CLI::App& app) {
  auto options = std::make_shared<InfoOptions>();
  auto* cmd = app.add_subcommand("info", "Summarise a dataset: trials per tier, neurons, image shape, repeats");
  cmd->add_option("path", options->path,
                  "StaticImageSet .h5 file, FileTree folder or zipped FileTree (.zip); read-only")
      ->required();
  cmd->add_flag("--json", options->json, "Print one JSON object instead of the table");
  cmd->add_flag("--sha256", options->digest,
                "Also print the dataset's SHA-256 identity, as a sweep records it (`sha256sum FILE` for a file; a "
                "manifest digest for a FileTree folder, docs/formats.md)");
  cmd->callback([options] {
    const Dataset d = load_dataset(options->path);
    const std::string digest = options->digest ? dataset_digest(options->path) : std::string();
    if (options->json) {
      auto j = summary_json(d);
      if (options->digest) j["sha256"] = digest;
      std::cout << j.dump() << std::endl;
    } else {
      print_summary(d);
      if (options->digest) std::cout << "sha256      " << digest << "\n";
    }
  });
}

}  // namespace v1sysid::apps
