// Each subcommand of the v1sysid executable registers itself on the CLI11 application here.
// A command's file (src/apps/cmd_<name>.cpp) holds its options and a thin run function that calls the library.
#pragma once

#include <CLI/CLI.hpp>

namespace v1sysid::apps {

void add_info_command(CLI::App& app);
void add_sweep_command(CLI::App& app);
void add_select_command(CLI::App& app);
void add_images_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_evaluate_command(CLI::App& app);
void add_predict_command(CLI::App& app);
void add_rf_command(CLI::App& app);
void add_mei_command(CLI::App& app);
void add_ensemble_command(CLI::App& app);
void add_export_command(CLI::App& app);
void add_similarity_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_simulate_command(CLI::App& app);
void add_status_command(CLI::App& app);

}  // namespace v1sysid::apps
