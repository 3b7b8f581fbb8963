// v1sysid simulate CONFIG.yaml --out dv1.h5 [--stimuli FILE] [--seed N] [--format h5|filetree] [--force]
// Simulates a digital V1 population (src/sim/) on natural-image stimuli and writes one dataset per animal.
// v1sysid simulate CONFIG.yaml --rates-for IMAGES.h5 [--animal K] --out rates.h5 [--stimuli FILE] [--seed N]
// Simulates the population again (the same seed gives the same calibrated neurons) and writes its noise-free
// rates on other images: the ground truth that in-silico analyses of a fitted model are scored against.
#include "apps/commands.hpp"
#include "core/error.hpp"
#include "io/h5.hpp"
#include "io/output_file.hpp"
#include "sim/dataset_writer.hpp"
#include "sim/simulate.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <vector>

namespace v1sysid::apps {

namespace {

struct SimulateOptions {
  std::string config;
  std::string out;
  std::string stimuli;
  std::string format = "h5";
  std::optional<uint64_t> seed;
  bool force = false;
  bool store_raw_drive = false;
  std::string rates_for;  // images whose true rates to write instead of a dataset
  int animal = 1;         // 1-based, as in file names
};

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

// Images of a --rates-for file: `images` (T, 1, H, W) or (T, H, W), grey levels, at the config's image size.
std::vector<float> read_rate_images(const std::string& path, int height, int width, int64_t* count) {
  auto f = h5::File::open(path);
  if (!f.exists("images")) {
    throw DataError("no dataset 'images'", path,
                    "pass an HDF5 file with images (T, 1, H, W) or (T, H, W) in grey levels, e.g. a dataset of "
                    "'v1sysid simulate' or an MEI file");
  }
  h5::Shape shape;
  std::vector<float> images = f.read<float>("images", &shape);
  const bool layout_ok = (shape.size() == 4 && shape[1] == 1) || shape.size() == 3;
  if (!layout_ok || shape[shape.size() - 2] != static_cast<hsize_t>(height) ||
      shape.back() != static_cast<hsize_t>(width)) {
    std::string got;
    for (hsize_t e : shape) got += (got.empty() ? "" : " x ") + std::to_string(e);
    throw DataError("'images' has shape " + got + ", expected T x 1 x " + std::to_string(height) + " x " +
                        std::to_string(width) + " or T x " + std::to_string(height) + " x " + std::to_string(width) +
                        " (the image size of the simulation config)",
                    path, "pass images at the config's image.height x image.width");
  }
  if (shape[0] == 0) throw DataError("'images' holds no image", path, "pass at least one image");
  for (size_t k = 0; k < images.size(); ++k) {
    if (!std::isfinite(images[k])) {
      throw DataError("'images' holds a non-finite value (image " + std::to_string(k / (static_cast<size_t>(height) * width)) + ")",
                      path, "replace NaN / infinite pixels");
    }
  }
  *count = static_cast<int64_t>(shape[0]);
  return images;
}

void run_rates_for(const SimulateOptions& o, const sim::SimulationConfig& config) {
  if (o.animal < 1 || o.animal > config.n_animals) {
    throw ConfigError("--animal " + std::to_string(o.animal) + " is not an animal of the config (it has " +
                          std::to_string(config.n_animals) + ")",
                      o.config, "pass --animal between 1 and n_animals");
  }
  if (o.format != "h5") throw ConfigError("--rates-for writes an HDF5 file", "--format", "leave --format out");
  refuse_outputs_inside_datasets({o.out}, {config.stimuli, o.rates_for});
  prepare_output_file(o.out, o.force);
  const int height = config.height, width = config.width;
  int64_t n_images = 0;
  const std::vector<float> images = read_rate_images(o.rates_for, height, width, &n_images);
  const sim::StimulusSet stimuli = sim::read_stimuli(config.stimuli);
  const sim::SimulatedDataset animal = sim::simulate_animal(config, stimuli, o.animal - 1);
  const std::vector<float> rates = sim::true_rates(animal, images, n_images, height, width);
  const auto n = static_cast<hsize_t>(animal.neurons.size());
  auto f = h5::File::create(o.out, o.force);
  f.write("rates", rates, {static_cast<hsize_t>(n_images), n});
  f.write("unit_ids", animal.data.unit_ids, {n});
  f.write_attribute("/", "units", std::string("noise-free rate per trial, as gt/test_rates"));
  f.write_attribute("/", "images", o.rates_for);
  f.write_attribute("/", "animal", static_cast<int64_t>(o.animal));
  f.write_attribute("/", "config", animal.config_yaml);
  f.commit();
  std::cout << "wrote " << o.out << ": true rates of " << n << " neurons (animal " << o.animal << ", seed "
            << config.seed << ") on " << n_images << " images\n";
}

void run_simulate(const SimulateOptions& o) {
  sim::SimulationConfig config = sim::load_simulation_config(o.config);
  if (!o.stimuli.empty()) config.stimuli = o.stimuli;
  if (o.seed) config.seed = *o.seed;
  if (!o.rates_for.empty()) return run_rates_for(o, config);

  std::vector<std::string> outputs;
  for (int a = 0; a < config.n_animals; ++a) outputs.push_back(sim::animal_output_path(o.out, a, config.n_animals));
  // Refuse before minutes of simulation rather than at the end.
  refuse_outputs_inside_datasets(outputs, {config.stimuli});
  for (const auto& path : outputs) {
    if (o.format == "h5") {
      prepare_output_file(path, o.force);
    } else {
      if (std::filesystem::exists(path) && !o.force)
        throw IoError("output folder exists", path, "pass --force to replace it or choose another --out");
      create_output_folder(std::filesystem::absolute(path).parent_path().string());
    }
  }
  const sim::StimulusSet stimuli = sim::read_stimuli(config.stimuli);
  std::string neurons = std::to_string(config.n_neurons);
  if (!config.n_neurons_by_animal.empty()) {
    neurons.clear();
    for (int count : config.n_neurons_by_animal) neurons += (neurons.empty() ? "" : "/") + std::to_string(count);
  }
  std::cerr << "simulate: " << config.n_animals << " animal(s) x " << neurons << " neurons, "
            << config.trials_per_animal() << " trials each, stimuli " << config.stimuli << " (" << stimuli.generator
            << ", " << stimuli.size() << " crops " << stimuli.height << " x " << stimuli.width << ")\n";
  for (int a = 0; a < config.n_animals; ++a) {
    const sim::SimulatedDataset d = sim::simulate_animal(config, stimuli, a, o.store_raw_drive);
    if (o.format == "filetree") {
      sim::write_file_tree(d, outputs[static_cast<size_t>(a)], o.force);
    } else {
      sim::write_static_image_set(d, outputs[static_cast<size_t>(a)], o.force);
    }
    std::vector<double> ceiling, fev;
    double mean_rate = 0;
    for (const auto& c : d.ceilings) {
      ceiling.push_back(c.ceiling_correlation);
      fev.push_back(c.fev);
    }
    for (float r : d.data.responses) mean_rate += r;
    mean_rate /= static_cast<double>(d.data.responses.size());
    std::cout << outputs[static_cast<size_t>(a)] << ": " << d.data.n_trials << " trials, " << d.data.n_neurons
              << " neurons, mean response " << mean_rate << ", median gt ceiling_correlation " << median(ceiling)
              << ", median gt fev " << median(fev) << "\n";
  }
}

}  // namespace

void add_simulate_command(CLI::App& app) {
  auto opts = std::make_shared<SimulateOptions>();
  auto* cmd = app.add_subcommand(
      "simulate", "Simulate a digital V1 population with known ground truth on natural images (StaticImageSet + gt/)");
  cmd->add_option("config", opts->config, "Simulation config (YAML), e.g. data/demo.yaml")->required();
  cmd->add_option("--out", opts->out,
                  "Output dataset (.h5); with n_animals > 1 one file per animal: <stem>-animal<k>.h5")
      ->required();
  cmd->add_option("--stimuli", opts->stimuli,
                  "Stimulus file of 'v1sysid images' (overrides the config's stimuli key; relative to the current "
                  "directory)");
  cmd->add_option("--seed", opts->seed,
                  "Simulator seed (overrides the config's seed key): a fresh population, fresh images and fresh noise "
                  "from the same config");
  cmd->add_option("--format", opts->format, "Output layout: h5 (StaticImageSet file) or filetree (FileTree folder of .npy files)")
      ->check(CLI::IsMember({"h5", "filetree"}));
  cmd->add_flag("--force", opts->force, "Overwrite existing output files");
  cmd->add_flag("--store-raw-drive", opts->store_raw_drive,
                "Also write gt/raw_drive (n_trials x n_neurons, float32): every neuron's raw drive g on every "
                "trial's image, for analysis/learnability.py");
  cmd->add_option("--rates-for", opts->rates_for,
                  "Instead of a dataset, write to --out the noise-free rates (T x n, units of gt/test_rates) of the "
                  "population on the images of this HDF5 file ('images', T x 1 x H x W or T x H x W, grey levels)");
  cmd->add_option("--animal", opts->animal, "With --rates-for: the animal (1-based) whose neurons answer");
  cmd->callback([opts] { run_simulate(*opts); });
}

}  // namespace v1sysid::apps
