// v1sysid rf --checkpoint FILE --out rf.h5 [--neurons i j ...] [--data-key KEY] [--batch B] [--force]: each
// neuron's linear receptive field, the gradient of its prediction with respect to the input image at a gray
// image (src/analysis/receptive_field.hpp); --data-key picks the readout of a model with several.
#include "analysis/receptive_field.hpp"
#include "apps/commands.hpp"
#include "train/ensemble.hpp"
#include "io/h5.hpp"
#include "io/output_file.hpp"

#include <iostream>
#include <memory>

namespace v1sysid::apps {

void add_rf_command(CLI::App& app) {
  struct Options {
    std::string checkpoint, out;
    std::vector<int64_t> neurons;
    std::string data_key;
    int batch = 64;
    bool force = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("rf", "Linear receptive fields: gradient of each prediction at a gray image");
  cmd->add_option("--checkpoint", o->checkpoint, "checkpoint.h5 written by 'v1sysid train', or an ensemble file")->required();
  cmd->add_option("--out", o->out, "Output .h5 file (rf [n, H, W] float32)")->required();
  cmd->add_option("--neurons", o->neurons, "Neuron indices (default: all)");
  cmd->add_option("--data-key", o->data_key, "Readout (dataset key) of a model trained on several datasets");
  cmd->add_option("--batch", o->batch, "Neurons per backward pass (default 64)");
  cmd->add_flag("--force", o->force, "Overwrite an existing output file");
  cmd->callback([o] {
    refuse_outputs_inside_datasets({o->out}, {o->checkpoint});
    prepare_output_file(o->out, o->force);
    auto models = load_models(o->checkpoint);
    const Checkpoint& c = models.front();
    const int readout = analysis_readout(*c.model, o->data_key);
    const Preprocessing& p = c.readout_preprocessing.at(static_cast<size_t>(readout));
    auto f = h5::File::create(o->out, o->force);
    // An ensemble's receptive field is the gradient of its mean prediction: the mean of the members' fields, each
    // in stored response units per grey level.
    auto rf = compute_receptive_fields(*c.model, p, o->neurons, o->batch, readout);
    for (size_t m = 1; m < models.size(); ++m) {
      const auto more = compute_receptive_fields(*models[m].model, models[m].readout_preprocessing.at(static_cast<size_t>(readout)),
                                                 o->neurons, o->batch, readout);
      for (size_t k = 0; k < rf.fields.size(); ++k) rf.fields[k] += more.fields[k];
      for (size_t k = 0; k < rf.prediction_at_gray.size(); ++k) rf.prediction_at_gray[k] += more.prediction_at_gray[k];
    }
    if (models.size() > 1) {
      for (auto& v : rf.fields) v /= static_cast<Real>(models.size());
      for (auto& v : rf.prediction_at_gray) v /= static_cast<Real>(models.size());
    }
    const auto n = static_cast<hsize_t>(rf.neurons.size());
    f.write("rf", rf.fields, {n, static_cast<hsize_t>(rf.height), static_cast<hsize_t>(rf.width)});
    f.write("neurons", rf.neurons, {n});
    f.write("prediction_at_gray", rf.prediction_at_gray, {n});
    f.write_attribute("/", "format_version", int64_t{1});
    f.write_attribute("/", "kind", std::string("v1sysid receptive fields"));
    f.write_attribute("/", "checkpoint", o->checkpoint);
    f.write_attribute("/", "method",
                      std::string("gradient of the evaluation-mode prediction at the gray image (every pixel = "
                                  "image_mean, 0 after preprocessing)"));
    f.write_attribute("/", "units", std::string("stored response units per grey level of the stored image"));
    f.write_attribute("/", "image_mean", p.image_mean);
    f.write_attribute("/", "image_std", p.image_std);
    f.write_attribute("/", "data_key", c.model->readout_spec(readout).key);
    f.write_attribute("/", "members", static_cast<int64_t>(models.size()));
    f.commit();
    std::cout << "wrote " << o->out << ": " << n << " receptive fields of " << rf.height << " x " << rf.width
              << " pixels\n";
  });
}

}  // namespace v1sysid::apps
