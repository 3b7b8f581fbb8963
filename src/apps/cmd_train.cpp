// v1sysid train MODEL.yaml --data PATH --out DIR: trains a model and writes DIR/checkpoint.h5, DIR/metrics.json.
#include "apps/commands.hpp"
#include "core/stop.hpp"
#include "train/pipeline.hpp"

#include <iostream>
#include <memory>

namespace v1sysid::apps {

void add_train_command(CLI::App& app) {
  auto o = std::make_shared<TrainOptions>();
  auto seed = std::make_shared<uint64_t>(0);
  auto max_iterations = std::make_shared<int64_t>(0);
  auto data_fraction = std::make_shared<double>(1.0);
  auto* cmd = app.add_subcommand("train", "Train a model (Ecker et al. 2019 schedule) and evaluate it on the test tier");
  cmd->add_option("model", o->model_path, "Model YAML (e.g. sweeps/models/cnn_32.yaml)")->required();
  cmd->add_option("--data", o->data_paths,
                  "Dataset: StaticImageSet .h5, FileTree folder or .zip; repeat for several datasets on one core "
                  "(one readout per data_key)")
      ->required();
  cmd->add_option("--neurons", o->neurons,
                  "Train on these neurons of every --data only: A:B (indices A..B-1, half-open), even or odd; "
                  "recorded in the checkpoint, which evaluate and predict then apply");
  cmd->add_option("--init-core", o->init_core, "Checkpoint whose core (parameters and BN statistics) starts training; 'random' with --freeze-core: the core as initialised, frozen (a transfer's null)");
  cmd->add_flag("--freeze-core", o->freeze_core,
                "Train only the readouts; the core of --init-core stays fixed, its batch norm in evaluation mode");
  cmd->add_option("--out", o->out_dir, "Output folder for checkpoint.h5 and metrics.json")->required();
  cmd->add_flag("--force", o->force, "Overwrite an existing DIR/checkpoint.h5");
  auto* s = cmd->add_option("--seed", *seed, "Override train.seed");
  auto* m = cmd->add_option("--max-iterations", *max_iterations, "Override train.max_iterations");
  auto* f = cmd->add_option("--data-fraction", *data_fraction, "Override train.data_fraction, in (0, 1]");
  auto state_minutes = std::make_shared<double>(10.0);
  cmd->add_option("--save-state-every", *state_minutes,
                                "Minutes between saved training states (DIR/train_state.h5, also written on SIGTERM): "
                                "the same command continues from it; 0 saves none")
      ->capture_default_str();
  cmd->add_flag("--quiet", [o](int64_t) { o->show_progress = false; }, "No progress lines");
  cmd->callback([=] {
    if (s->count()) o->seed = *seed;
    if (m->count()) o->max_iterations = *max_iterations;
    if (f->count()) o->data_fraction = *data_fraction;
    o->state_interval_s = *state_minutes * 60.0;
    install_stop_handlers();  // SLURM preemption sends SIGTERM first: stop at the next step, exit 75
    auto out = run_training(*o);
    if (out.resumed_at_step >= 0) std::cout << "resumed at step " << out.resumed_at_step << "; ";
    std::cout << "wrote " << out.checkpoint_path << " and " << out.metrics_path << ": status " << out.training.status
              << ", best validation loss " << out.training.best_val_loss;
    if (out.lurz_schedule) std::cout << " (best validation correlation " << out.training.best_val_correlation << ")";
    std::cout << ", test correlation " << out.evaluation->metrics.test_correlation;
    if (out.evaluation->ceiling_fraction) std::cout << ", fraction of ceiling " << *out.evaluation->ceiling_fraction;
    std::cout << "\n";
  });
}

}  // namespace v1sysid::apps
