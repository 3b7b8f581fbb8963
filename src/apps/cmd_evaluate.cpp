// v1sysid evaluate --checkpoint FILE --data PATH [--tier test] [--neurons SPEC] [--json]: metrics of a trained
// model (on the neurons it was trained on, or on SPEC among them).
#include "apps/commands.hpp"
#include "train/ensemble.hpp"
#include "train/pipeline.hpp"

#include <iostream>
#include <memory>

namespace v1sysid::apps {

void add_evaluate_command(CLI::App& app) {
  struct Options {
    std::string checkpoint, data, tier = "test", neurons;
    bool json = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("evaluate", "Test correlation, FEVE, fraction oracle (and fraction of the digital-V1 ceiling)");
  cmd->add_option("--checkpoint", o->checkpoint, "checkpoint.h5 written by 'v1sysid train', or an ensemble file")->required();
  cmd->add_option("--data", o->data, "Dataset the model was trained on")->required();
  cmd->add_option("--tier", o->tier, "Tier to evaluate (train, validation, test, final_test)");
  cmd->add_option("--neurons", o->neurons,
                  "Metrics over these neurons of the dataset only: A:B (half-open), even or odd; they must be "
                  "among the neurons the model predicts");
  cmd->add_flag("--json", o->json, "Print one JSON object");
  cmd->callback([o] {
    const Tier tier = parse_tier(o->tier, "--tier");
    auto models = load_models(o->checkpoint);
    const Checkpoint& c = models.front();
    Dataset d = load_dataset(o->data);
    std::vector<int64_t> columns;
    if (!o->neurons.empty()) {
      const auto& recorded = c.readout_preprocessing[static_cast<size_t>(readout_of_dataset(c, d))].neurons;
      columns = evaluation_columns(o->neurons, d, recorded, "--neurons");
    }
    // load_models checked that every member has the first one's image size, readouts and neurons.
    const int readout = fit_dataset_to_checkpoint(c, d);
    const auto r = evaluate_models(models, d, tier, readout, columns);
    if (o->json) {
      std::cout << evaluation_json(r) << "\n";
      return;
    }
    const auto& m = r.metrics;
    std::cout << "tier " << tier_name(tier) << ": " << m.n_trials << " trials, " << m.n_images << " images, "
              << m.test_correlation_per_neuron.size() << " neurons\n"
              << "  test correlation        " << m.test_correlation << "\n"
              << "  single-trial corr.      " << m.single_trial_correlation << "\n"
              << "  fraction oracle         " << m.fraction_oracle << "\n"
              << "  FEVE                    " << m.feve << " (" << m.feve_neurons_left_out
              << (m.feve_neurons_left_out == 1 ? " neuron" : " neurons") << " without explainable variance left out)\n"
              << "  Poisson loss            " << r.loss << "\n";
    if (r.ceiling_fraction)
      std::cout << "  fraction of ceiling     " << *r.ceiling_fraction << " (mean ceiling correlation "
                << *r.mean_ceiling_correlation << ")\n";
  });
}

}  // namespace v1sysid::apps
