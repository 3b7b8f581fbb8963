// v1sysid rf --checkpoint FILE --out rf.h5 [--neurons i j ...] [--batch B] [--force]: each neuron's linear
// receptive field, the gradient of its prediction with respect to the input image at a gray image
// (src/analysis/receptive_field.hpp).
#include "analysis/receptive_field.hpp"
#include "apps/commands.hpp"
#include "io/checkpoint.hpp"
#include "io/h5.hpp"

#include <iostream>
#include <memory>

namespace v1sysid::apps {

void add_rf_command(CLI::App& app) {
  struct Options {
    std::string checkpoint, out;
    std::vector<int64_t> neurons;
    int batch = 64;
    bool force = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("rf", "Linear receptive fields: gradient of each prediction at a gray image");
  cmd->add_option("--checkpoint", o->checkpoint, "checkpoint.h5 written by 'v1sysid train'")->required();
  cmd->add_option("--out", o->out, "Output .h5 file (rf [n, H, W] float32)")->required();
  cmd->add_option("--neurons", o->neurons, "Neuron indices (default: all)");
  cmd->add_option("--batch", o->batch, "Neurons per backward pass (default 64)");
  cmd->add_flag("--force", o->force, "Overwrite an existing output file");
  cmd->callback([o] {
    auto c = load_checkpoint(o->checkpoint);
    auto f = h5::File::create(o->out, o->force);
    const auto rf = compute_receptive_fields(*c.model, c.preprocessing, o->neurons, o->batch);
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
    f.write_attribute("/", "image_mean", c.preprocessing.image_mean);
    f.write_attribute("/", "image_std", c.preprocessing.image_std);
    f.commit();
    std::cout << "wrote " << o->out << ": " << n << " receptive fields of " << rf.height << " x " << rf.width
              << " pixels\n";
  });
}

}  // namespace v1sysid::apps
