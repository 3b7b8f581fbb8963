// v1sysid similarity --checkpoint FILE --images FILE --out rsm.h5 [--data-key KEY] [--block 1024] [--force]: the
// representational similarity matrix of predicted population responses (src/analysis/similarity.hpp).
#include "analysis/receptive_field.hpp"
#include "analysis/similarity.hpp"
#include "apps/commands.hpp"
#include "train/checkpoint.hpp"
#include "io/output_file.hpp"

#include <iostream>
#include <memory>

namespace v1sysid::apps {

void add_similarity_command(CLI::App& app) {
  struct Options {
    std::string checkpoint, images, out, data_key;
    SimilarityOptions similarity;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "similarity", "Representational similarity matrix (correlation of predicted population responses)");
  cmd->add_option("--checkpoint", o->checkpoint, "checkpoint.h5 written by 'v1sysid train'")->required();
  cmd->add_option("--images", o->images, "stimuli.h5 of 'v1sysid images' or a StaticImageSet .h5")->required();
  cmd->add_option("--out", o->out, "Output .h5 file (rsm [I, I] float32, image_ids [I])")->required();
  cmd->add_option("--data-key", o->data_key, "Readout (dataset key) of a model trained on several datasets");
  cmd->add_option("--block", o->similarity.block, "Matrix rows per GEMM and per write (default 1024)");
  cmd->add_flag("--force", o->similarity.force, "Overwrite an existing output file");
  cmd->callback([o] {
    refuse_outputs_inside_datasets({o->out}, {o->images, o->checkpoint});
    prepare_output_file(o->out, o->similarity.force);
    auto c = load_checkpoint(o->checkpoint);
    const ImageSet images = read_image_set(o->images);
    o->similarity.checkpoint_path = o->checkpoint;
    o->similarity.readout = analysis_readout(*c.model, o->data_key);
    const auto r = static_cast<size_t>(o->similarity.readout);
    const int64_t constant = write_similarity(*c.model, c.readout_preprocessing.at(r), images, o->out, o->similarity);
    std::cout << "wrote " << o->out << ": " << images.count << " x " << images.count << " similarity matrix over "
              << c.model->readout_spec(o->similarity.readout).n_neurons << " neurons";
    if (constant > 0) std::cout << " (" << constant << " images with a constant prediction: rows of 0)";
    std::cout << "\n";
  });
}

}  // namespace v1sysid::apps
