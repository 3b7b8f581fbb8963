// v1sysid ensemble RESULTS --checkpoints DIR --top K --out F [--architecture A] [--data-fraction X] [--force]:
// the K best trials of one architecture (by validation loss, or correlation for the Lurz schedule, as `select` ranks
// them) as one model
// (train/ensemble.hpp) that evaluate, predict, rf and mei take as --checkpoint.
#include "apps/commands.hpp"
#include "core/error.hpp"
#include "io/h5.hpp"
#include "io/output_file.hpp"
#include "sweep/select.hpp"
#include "train/ensemble.hpp"

#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>

namespace v1sysid::apps {

void add_ensemble_command(CLI::App& app) {
  struct Options {
    std::string results, checkpoints, out, architecture;
    std::optional<double> data_fraction;
    int64_t top = 5;
    bool force = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "ensemble", "The K best trials of an architecture in a sweep as one model (mean prediction) for evaluate, "
                  "predict, rf and mei");
  cmd->add_option("RESULTS", o->results, "results.h5 written by v1sysid sweep")->required()->check(CLI::ExistingFile);
  cmd->add_option("--checkpoints", o->checkpoints, "The sweep's --save-checkpoints folder (trial_<id>.h5)")
      ->required();
  cmd->add_option("--top", o->top, "How many of the best trials")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--architecture", o->architecture, "Architecture name (needed when the sweep has several)");
  cmd->add_option("--data-fraction", o->data_fraction, "Data fraction (needed when the sweep has several)");
  cmd->add_option("--out", o->out, "Output ensemble file (.h5)")->required();
  cmd->add_flag("--force", o->force, "Overwrite an existing output file");
  cmd->callback([o] {
    refuse_outputs_inside_datasets({o->out}, {o->results, o->checkpoints});
    prepare_output_file(o->out, o->force);
    const auto rows = select_best(o->results, o->top);
    std::vector<const SelectionRow*> matching;
    std::string groups;
    for (const auto& r : rows) {
      groups += (groups.empty() ? "" : ", ") + r.architecture + " at " + std::to_string(r.data_fraction);
      if ((o->architecture.empty() || r.architecture == o->architecture) &&
          (!o->data_fraction || r.data_fraction == *o->data_fraction))
        matching.push_back(&r);
    }
    if (matching.size() != 1) {
      throw ConfigError(std::string(matching.empty() ? "no" : "more than one") +
                            " (architecture, data fraction) of the sweep matches (it has " + groups + ")",
                        o->architecture.empty() ? "--architecture" : "--data-fraction",
                        "name one architecture (and data fraction) of the sweep");
    }
    const SelectionRow& row = *matching.front();
    if (row.top_trials.empty()) {
      throw DataError("architecture " + row.architecture + " has no finished trial (status ok)", o->results,
                      "finish the sweep (run it again to resume) before making an ensemble");
    }
    EnsembleSpec spec;
    spec.results = std::filesystem::absolute(o->results).lexically_normal().string();
    spec.architecture = row.architecture;
    spec.data_fraction = row.data_fraction;
    spec.ranked_by = ranked_by_name(row.ranked_by);
    const auto results = h5::File::open(o->results);
    const auto val = results.read<double>("trials/best_val_loss");
    const auto val_corr = read_val_correlations(results, val.size());
    for (int64_t t : row.top_trials) {
      const std::string path = (std::filesystem::path(o->checkpoints) / ("trial_" + std::to_string(t) + ".h5")).string();
      if (!std::filesystem::is_regular_file(path)) {
        throw IoError("the checkpoint of trial " + std::to_string(t) + " is missing", path,
                      "pass the folder the sweep wrote with --save-checkpoints");
      }
      auto f = h5::File::open(path);
      if (!f.has_attribute("/", "trial_id") || f.read_attribute_int("/", "trial_id") != t) {
        throw DataError("this checkpoint is not the one of trial " + std::to_string(t) + " (its trial_id attribute)",
                        path, "pass the --save-checkpoints folder of this results file");
      }
      spec.members.push_back(path);
      spec.trials.push_back(t);
      spec.val_loss.push_back(val.at(static_cast<size_t>(t)));
      spec.val_correlation.push_back(val_corr.at(static_cast<size_t>(t)));
    }
    save_ensemble(o->out, spec, o->force);
    std::cout << "wrote " << o->out << ": ensemble of " << spec.members.size() << " trials of " << row.architecture
              << " at data fraction " << row.data_fraction << " (the best by " << spec.ranked_by << ": trials";
    for (int64_t t : spec.trials) std::cout << " " << t;
    std::cout << ")\n";
  });
}

}  // namespace v1sysid::apps
