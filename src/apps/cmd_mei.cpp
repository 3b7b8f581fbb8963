// v1sysid mei --checkpoint FILE --out mei.h5 [--neurons i j ...] [--data-key KEY] [--starts S] [--steps K]
//             [--rms R] [--seed N] [--force]: most exciting inputs of a trained model's neurons
// (src/analysis/mei.hpp), as grey-level images that `predict` and `simulate --rates-for` read.
#include "analysis/mei.hpp"
#include "analysis/receptive_field.hpp"
#include "apps/commands.hpp"
#include "io/h5.hpp"
#include "io/output_file.hpp"
#include "train/ensemble.hpp"

#include <iostream>
#include <memory>

namespace v1sysid::apps {

void add_mei_command(CLI::App& app) {
  struct Options {
    std::string checkpoint, out, data_key;
    std::vector<int64_t> neurons;
    MeiOptions mei;
    std::vector<double> blur;
    bool force = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "mei", "Most exciting inputs: per neuron the image of a fixed RMS contrast that maximises its prediction");
  cmd->add_option("--checkpoint", o->checkpoint, "checkpoint.h5 written by 'v1sysid train' (or a sweep trial), or an ensemble file")
      ->required();
  cmd->add_option("--out", o->out, "Output .h5 file (images [n, 1, H, W] grey levels, activation [n], ...)")
      ->required();
  cmd->add_option("--neurons", o->neurons, "Neuron indices (default: all)");
  cmd->add_option("--data-key", o->data_key, "Readout (dataset key) of a model trained on several datasets");
  cmd->add_option("--starts", o->mei.starts, "Random starts per neuron; the best is kept")->capture_default_str();
  cmd->add_option("--steps", o->mei.steps, "Gradient-ascent steps per start")->capture_default_str();
  cmd->add_option("--rms", o->mei.rms,
                  "RMS contrast of the MEI in units of the training images' pixel SD (the norm constraint)")
      ->capture_default_str();
  cmd->add_option("--step", o->mei.step, "First step, as a fraction of the image norm (decays to a tenth)")
      ->capture_default_str();
  cmd->add_option("--blur", o->blur, "Gradient blur sigma in pixels at the first and the last step (two values)")
      ->expected(2);
  cmd->add_option("--seed", o->mei.seed, "Seed of the random starts")->capture_default_str();
  cmd->add_option("--batch", o->mei.batch, "(neuron, start) pairs per pass")->capture_default_str();
  cmd->add_flag("--force", o->force, "Overwrite an existing output file");
  cmd->callback([o] {
    if (!o->blur.empty()) {
      o->mei.blur_start = o->blur[0];
      o->mei.blur_end = o->blur[1];
    }
    refuse_outputs_inside_datasets({o->out}, {o->checkpoint});
    prepare_output_file(o->out, o->force);
    auto models = load_models(o->checkpoint);
    const Checkpoint& c = models.front();
    const int readout = analysis_readout(*c.model, o->data_key);
    const Preprocessing& p = c.readout_preprocessing.at(static_cast<size_t>(readout));
    std::vector<MeiMember<Real>> members;
    for (auto& member : models)
      members.push_back({member.model.get(), &member.readout_preprocessing.at(static_cast<size_t>(readout))});
    const auto m = compute_meis(members, o->neurons, o->mei, readout);
    const auto n = static_cast<hsize_t>(m.neurons.size());
    auto f = h5::File::create(o->out, o->force);
    f.write("images", m.images, {n, 1, static_cast<hsize_t>(m.height), static_cast<hsize_t>(m.width)});
    f.write("neurons", m.neurons, {n});
    f.write("activation", m.activation, {n});
    f.write("activation_by_start", m.activation_by_start, {n, static_cast<hsize_t>(o->mei.starts)});
    f.write("activation_at_gray", m.activation_at_gray, {n});
    f.write_attribute("/", "format_version", int64_t{1});
    f.write_attribute("/", "kind", std::string("v1sysid most exciting inputs"));
    f.write_attribute("/", "checkpoint", o->checkpoint);
    f.write_attribute("/", "data_key", c.model->readout_spec(readout).key);
    f.write_attribute("/", "members", static_cast<int64_t>(models.size()));
    f.write_attribute("/", "units", std::string("images: grey levels of the stored image; activation: stored "
                                                "response units (prediction * response_std)"));
    f.write_attribute("/", "rms", o->mei.rms);
    f.write_attribute("/", "steps", static_cast<int64_t>(o->mei.steps));
    f.write_attribute("/", "starts", static_cast<int64_t>(o->mei.starts));
    f.write_attribute("/", "step", o->mei.step);
    f.write_attribute("/", "blur_start", o->mei.blur_start);
    f.write_attribute("/", "blur_end", o->mei.blur_end);
    f.write_attribute("/", "seed", static_cast<int64_t>(o->mei.seed));
    f.write_attribute("/", "image_mean", p.image_mean);
    f.write_attribute("/", "image_std", p.image_std);
    f.commit();
    std::cout << "wrote " << o->out << ": most exciting inputs of " << n << " neurons (" << m.height << " x "
              << m.width << ", " << o->mei.starts << " starts x " << o->mei.steps << " steps)\n";
  });
}

}  // namespace v1sysid::apps
