// v1sysid export CHECKPOINT --format neuralpredictors --out DIR [--force]: the model as a PyTorch state_dict with
// neuralpredictors' parameter names and shapes plus its constructor arguments (docs/formats.md, "neuralpredictors
// export"). The mapping is written once, in Python, because torch.save is the only writer of the format:
// this command checks its arguments and runs analysis/export_neuralpredictors.py with the python3 found at build
// time (/usr/bin/python3; $V1SYSID_PYTHON overrides), whose exit status
// (2 a model neuralpredictors cannot express, 3 unreadable input or existing output, 4 a damaged checkpoint,
// 7 a full disk) it keeps.
#include "apps/commands.hpp"
#include "core/error.hpp"
#include "core/stop.hpp"
#include "io/output_file.hpp"

#include <spawn.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

extern char** environ;

namespace v1sysid::apps {

namespace {

// The folder of the analysis scripts: $V1SYSID_ANALYSIS_DIR, else the source tree this executable was built from.
std::string export_script() {
  const char* env = std::getenv("V1SYSID_ANALYSIS_DIR");
  const std::string dir = (env && *env) ? env : V1SYSID_SOURCE_ANALYSIS_DIR;
  const std::string script = (std::filesystem::path(dir) / "export_neuralpredictors.py").string();
  if (!std::filesystem::is_regular_file(script)) {
    throw IoError("the export script is missing", script,
                  "set V1SYSID_ANALYSIS_DIR to the analysis/ folder of the v1sysid sources");
  }
  return script;
}

// Runs argv[0] (searched on PATH) and returns its exit status; a signal is reported as 128 + its number.
int run_and_wait(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, argv[0], nullptr, nullptr, argv.data(), environ);
  if (rc != 0) {
    throw IoError(std::string("cannot start ") + args[0] + " (" + std::strerror(rc) + ")", "--format neuralpredictors",
                  "install python3 with python3-torch, python3-h5py and python3-yaml (env/install-deps.sh with "
                  "V1SYSID_WITH_TORCH=1), or name the interpreter in V1SYSID_PYTHON");
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw IoError(std::string("waiting for ") + args[0] + " failed: " + std::strerror(errno));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

void add_export_command(CLI::App& app) {
  struct Options {
    std::string checkpoint, format, out;
    bool force = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "export", "Write a checkpoint in another framework's format: --format neuralpredictors writes a PyTorch "
                "state_dict with neuralpredictors' names and shapes and the constructor arguments (needs python3-torch)");
  cmd->add_option("CHECKPOINT", o->checkpoint, "checkpoint.h5 of v1sysid train (or a sweep's trial_<id>.h5)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--format", o->format, "Output format")->required()->check(CLI::IsMember({"neuralpredictors"}));
  cmd->add_option("--out", o->out, "Output folder (state_dict.pt, model.json)")->required();
  cmd->add_flag("--force", o->force, "Replace state_dict.pt and model.json in an existing folder");
  cmd->callback([o] {
    refuse_outputs_inside_datasets({o->out}, {o->checkpoint});
    const std::string script = export_script();
    const char* python = std::getenv("V1SYSID_PYTHON");
    std::vector<std::string> args{(python && *python) ? python : V1SYSID_DEFAULT_PYTHON, script, o->checkpoint,
                                  "--out", o->out};
    if (o->force) args.push_back("--force");
    const int status = run_and_wait(args);
    // The script has printed its own message; this one gives its exit status the same meaning here.
    if (status != 0)
      throw_for_exit_code(status, "the neuralpredictors export stopped with exit status " + std::to_string(status) +
                                      " (its message is above), in " + script);
  });
}

}  // namespace v1sysid::apps
