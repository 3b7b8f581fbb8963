// v1sysid predict --checkpoint FILE --data PATH --tier test --out pred.h5: predictions [trials, N] in the
// units of the stored responses, in file order of the tier, with image_ids [trials] (and neuron_indices [N]
// for a model trained on a neuron subset, which is applied to the dataset as recorded).
#include "apps/commands.hpp"
#include "io/h5.hpp"
#include "io/output_file.hpp"
#include "train/ensemble.hpp"
#include "train/pipeline.hpp"

#include <iostream>
#include <memory>

namespace v1sysid::apps {

void add_predict_command(CLI::App& app) {
  struct Options {
    std::string checkpoint, data, tier = "test", out;
    bool force = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("predict", "Write a trained model's predictions for one tier");
  cmd->add_option("--checkpoint", o->checkpoint, "checkpoint.h5 written by 'v1sysid train', or an ensemble file")->required();
  cmd->add_option("--data", o->data, "Dataset with the images to predict")->required();
  cmd->add_option("--tier", o->tier, "Tier (train, validation, test, final_test)");
  cmd->add_option("--out", o->out, "Output .h5 file")->required();
  cmd->add_flag("--force", o->force, "Overwrite an existing output file");
  cmd->callback([o] {
    const Tier tier = parse_tier(o->tier, "--tier");
    refuse_outputs_inside_datasets({o->out}, {o->data, o->checkpoint});
    prepare_output_file(o->out, o->force);
    auto models = load_models(o->checkpoint);
    const Checkpoint& c = models.front();
    Dataset d = load_dataset(o->data);
    // load_models checked that every member has the first one's image size, readouts and neurons.
    const int readout = fit_dataset_to_checkpoint(c, d);
    const auto& selection = c.readout_preprocessing[static_cast<size_t>(readout)].neurons;
    const auto p = predict_models(models, d, tier, readout);
    auto f = h5::File::create(o->out, o->force);
    f.write("predictions", p.values, {static_cast<hsize_t>(p.trials), static_cast<hsize_t>(p.neurons)});
    f.write("image_ids", p.image_ids, {static_cast<hsize_t>(p.trials)});
    if (!selection.all())  // column k of predictions is neuron neuron_indices[k] of the dataset
      f.write("neuron_indices", selection.indices, {static_cast<hsize_t>(selection.indices.size())});
    f.write_attribute("/", "tier", std::string(tier_name(tier)));
    f.write_attribute("/", "checkpoint", o->checkpoint);
    f.write_attribute("/", "units", std::string("stored responses (prediction * response_std)"));
    f.write_attribute("/", "members", static_cast<int64_t>(models.size()));
    f.commit();
    std::cout << "wrote " << o->out << ": " << p.trials << " trials x " << p.neurons << " neurons\n";
  });
}

}  // namespace v1sysid::apps
