// v1sysid status RESULTS [--watch SECONDS] [--json]: a sweep's progress from its results file, safe to run on a
// login node while the job writes the file (sweep/status.hpp).
#include "apps/commands.hpp"
#include "core/error.hpp"
#include "core/progress.hpp"
#include "io/output_file.hpp"
#include "sweep/status.hpp"

#include <chrono>
#include <filesystem>
#include <iostream>
#include <memory>
#include <thread>

namespace v1sysid::apps {

namespace {
struct StatusOptions {
  std::string results;
  double watch_seconds = 0;
  bool json = false;
  int stall_checks = 5;
  std::string png;
  bool force = false;
};
}  // namespace

void add_status_command(CLI::App& app) {
  auto o = std::make_shared<StatusOptions>();
  auto* cmd = app.add_subcommand(
      "status",
      "Progress of a sweep from its results file: finished/running/pending trials, ETA, best so far, "
      "stalled trials, validation curves (read-only: safe while the sweep runs)");
  cmd->add_option("RESULTS", o->results, "results.h5 of v1sysid sweep (with --watch, waited for until it exists)")
      ->required();
  cmd->add_option("--watch", o->watch_seconds, "Print again every SECONDS until no trial is pending or running")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--json", o->json, "One JSON object per report (one line each) instead of the text");
  cmd->add_option("--stall-checks", o->stall_checks,
                  "A running trial whose heartbeat is older than this many of its validation intervals (and than "
                  "60 s) is reported as stalled")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--png", o->png, "Also write the validation curves of the best trials to this PNG (each report)");
  cmd->add_flag("--force", o->force, "Overwrite an existing --png file");
  cmd->callback([o] {
    if (!o->png.empty()) prepare_output_file(o->png, o->force, "--png");
    const bool tty = Progress::stderr_is_tty() && !o->json;
    if (!std::filesystem::exists(o->results)) {
      if (o->watch_seconds <= 0)
        throw IoError("no such results file", o->results, "give the --out file of v1sysid sweep");
      std::cerr << "status: waiting for " << o->results << " to be created\n";
      while (!std::filesystem::exists(o->results))
        std::this_thread::sleep_for(std::chrono::duration<double>(o->watch_seconds));
    }
    for (;;) {
      const SweepStatus s = read_sweep_status(o->results, o->stall_checks);
      if (o->json) {
        std::cout << sweep_status_json(s) << std::endl;
      } else {
        if (tty && o->watch_seconds > 0) std::cout << "\033[H\033[2J";  // redraw in place on a terminal
        std::cout << sweep_status_text(s) << std::flush;
      }
      if (!o->png.empty()) {
        const std::string png = sweep_status_png(s);
        if (!png.empty()) write_file_atomically(o->png, png, Sync::none);
      }
      if (o->watch_seconds <= 0 || (s.pending == 0 && s.running == 0)) break;
      std::this_thread::sleep_for(std::chrono::duration<double>(o->watch_seconds));
      if (!o->json && !tty) std::cout << "\n";
    }
  });
}

}  // namespace v1sysid::apps
