#include "apps/commands.hpp"

#include <iostream>

namespace v1sysid::apps {
void add_info_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Summarise a dataset: trials per tier, neurons, image shape, repeats");
  cmd->callback([] { std::cout << "todo\n"; });
}
}  // namespace v1sysid::apps
