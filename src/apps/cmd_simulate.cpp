// v1sysid simulate CONFIG.yaml --out dv1.h5 [--stimuli FILE] [--seed N] [--format h5|filetree] [--force]
// Simulates a digital V1 population (src/sim/) on natural-image stimuli and writes one dataset per animal.
#include "apps/commands.hpp"
#include "core/error.hpp"
#include "io/output_file.hpp"
#include "sim/dataset_writer.hpp"
#include "sim/simulate.hpp"

#include <algorithm>
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
};

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

void run_simulate(const SimulateOptions& o) {
  sim::SimulationConfig config = sim::load_simulation_config(o.config);
  if (!o.stimuli.empty()) config.stimuli = o.stimuli;
  if (o.seed) config.seed = *o.seed;

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
  cmd->callback([opts] { run_simulate(*opts); });
}

}  // namespace v1sysid::apps
