// `v1sysid sweep` (random searches and data-efficiency sweeps under MPI) and `v1sysid select` (Table 1).
#include "apps/commands.hpp"
#include "core/collective.hpp"
#include "core/error.hpp"
#include "core/stop.hpp"
#include "data/digest.hpp"
#include "io/output_file.hpp"
#include "model/model_config.hpp"
#include "sweep/checksum.hpp"
#include "sweep/lock_file.hpp"
#include "sweep/results_file.hpp"
#include "sweep/scheduler.hpp"
#include "sweep/select.hpp"
#include "sweep/sweep_config.hpp"
#include "sweep/training_trial.hpp"

#include <mpi.h>
#include <signal.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

namespace v1sysid::apps {

namespace {

struct SweepOptions {
  std::string sweep_file, out, save_checkpoints;
  std::vector<std::string> data;  // one readout per dataset, as train --data
  bool list = false, force = false, dry_run = false;
  double state_minutes = 10.0;  // --save-state-every; 0: no resumable states
};

// The resumable states of a results file's trials (TrainingTrialRunner): "<results>.states/".
std::string state_folder(const std::string& out) { return out + ".states"; }

void print_table(const SweepConfig& sweep, const std::vector<Trial>& trials) {
  std::cout << "trial\tarchitecture\tdraw\tdata_fraction\tseed";
  const auto names = all_hyperparameter_names(sweep);
  for (const auto& name : names) std::cout << '\t' << name;
  std::cout << '\n';
  for (const auto& t : trials) {
    std::cout << t.id << '\t' << t.architecture << '\t' << t.draw << '\t' << t.data_fraction << '\t' << t.seed;
    for (const auto& name : names) {
      auto it = t.hyperparameters.find(name);
      std::cout << '\t';
      if (it != t.hyperparameters.end()) std::cout << it->second; else std::cout << '-';
    }
    std::cout << '\n';
  }
}

// Partial files that a killed run (SIGKILL, a lost node) left behind: "<out>.partial-<pid>" (only this job, which
// holds the lock, writes those) and checkpoints "trial_<id>.h5.partial-<pid>" whose writer no longer runs.
void remove_stale_partials(const std::string& out, const std::string& checkpoint_dir) {
  namespace fs = std::filesystem;
  auto remove = [](const fs::path& p) {
    std::error_code ec;
    if (fs::remove(p, ec)) std::fprintf(stderr, "sweep: removed %s, left by an interrupted run\n", p.c_str());
  };
  const fs::path out_path(out);
  const std::string results_prefix = out_path.filename().string() + ".partial-";
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(out_path.parent_path().empty() ? fs::path(".") : out_path.parent_path(), ec)) {
    if (e.path().filename().string().rfind(results_prefix, 0) == 0) remove(e.path());
  }
  if (checkpoint_dir.empty()) return;
  for (const auto& e : fs::directory_iterator(checkpoint_dir, ec)) {
    const std::string name = e.path().filename().string();
    const auto mark = name.rfind(".h5.partial-");
    if (name.rfind("trial_", 0) != 0 || mark == std::string::npos) continue;
    const long pid = std::atol(name.c_str() + mark + 12);
    if (pid > 0 && kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) remove(e.path());
  }
}

// Several --data: the paths and checksums in --data order, comma-separated (one dataset: as before), so that a
// resume with other datasets, fewer, more or in another order is refused.
std::string dataset_paths(const std::vector<std::string>& paths) {
  std::string out;
  for (const auto& p : paths) out += (out.empty() ? "" : ",") + p;
  return out;
}
std::string legacy_dataset_checksums(const std::vector<std::string>& paths) {
  std::string out;
  for (const auto& p : paths) out += (out.empty() ? "" : ",") + dataset_checksum(p);
  return out;
}
// The SHA-256 digests of the datasets (data/digest.hpp), computed on rank 0 only (cached there by path, size and
// time) and broadcast, so that the ranks do not all read every dataset in full before the first trial.
std::string dataset_digests(MPI_Comm comm, const std::vector<std::string>& paths) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  std::string out;
  run_agreed(comm, [&] {
    if (rank != 0) return;
    const auto start = std::chrono::steady_clock::now();
    for (const auto& p : paths) out += (out.empty() ? "" : ",") + dataset_digest(p);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::fprintf(stderr, "sweep: dataset identity (SHA-256) in %.2f s\n", seconds);
  });
  int length = static_cast<int>(out.size());
  MPI_Bcast(&length, 1, MPI_INT, 0, comm);
  out.resize(static_cast<size_t>(length));
  MPI_Bcast(out.data(), length, MPI_CHAR, 0, comm);
  return out;
}

void run_sweep_command(const SweepOptions& o) {
  install_stop_handlers();
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  // Input errors are the same on every rank: run_agreed lets the ranks report one message and exit with its
  // status instead of aborting each other.
  SweepConfig sweep;
  std::vector<Trial> trials;
  run_agreed(MPI_COMM_WORLD, [&] {
    sweep = SweepConfig::load(o.sweep_file);
    trials = expand_trials(sweep);
    if (o.dry_run && sweep.trial_kind != "dry_run") {
      // A training sweep run with --dry-run still gets its trial models checked (unknown keys of a drawn
      // hyperparameter, values out of range), as the real run would check them before its first trial.
      for (const auto& t : trials) (void)trial_config(sweep, t);
      sweep.trial_kind = "dry_run";
    }
  });
  if (o.list) {
    if (rank == 0) print_table(sweep, trials);
    return;
  }
  if (o.out.empty()) throw ConfigError("missing --out", "v1sysid sweep", "give the results file, e.g. --out results.h5");
  // One job per results file: rank 0 holds "<out>.lock" until this function returns, on every path.
  ResultsLock lock;
  run_agreed(MPI_COMM_WORLD, [&] {
    if (rank != 0) return;
    refuse_outputs_inside_datasets({o.out, o.save_checkpoints}, o.data);
    create_output_folder(std::filesystem::path(o.out).parent_path().string());
    lock = ResultsLock(o.out);
    remove_stale_partials(o.out, o.save_checkpoints);
    if (!(o.state_minutes >= 0))
      throw ConfigError("--save-state-every must be 0 (no states) or positive", "the command line", "fix the value");
    if (o.force) {  // starting over: no trial continues from a state of the replaced file
      std::error_code ec;
      std::filesystem::remove_all(state_folder(o.out), ec);
    }
  });

  TrialRunner runner;
  std::unique_ptr<TrainingTrialRunner> training;
  ResultsLayout layout;
  layout.n_trials = static_cast<int64_t>(trials.size());
  layout.hyperparameters = all_hyperparameter_names(sweep);
  ResultsMetadata meta;
  run_agreed(MPI_COMM_WORLD, [&] {
    meta.sweep_yaml = sweep.resolved_yaml();
    meta.sweep_identity = sweep.identity_yaml();
    meta.model_files = sweep.model_file_checksums();
    if (sweep.trial_kind == "dry_run") {
      layout.max_checks = sweep.max_checks > 0 ? sweep.max_checks : 16;
      layout.n_neurons = sweep.dry_run.neurons;
      meta.dataset_path = o.data.empty() ? "none (dry run)" : dataset_paths(o.data);
      meta.dataset_checksum = "none";  // replaced by the digests below when --data is given
      runner = [&sweep](const Trial& t, const TrialProgress& p) { return run_dry_trial(sweep, t, p); };
    } else {
      if (o.data.empty()) throw ConfigError("missing --data", "v1sysid sweep", "trial_kind 'train' needs a dataset: --data PATH");
      meta.dataset_path = dataset_paths(o.data);
      layout.max_checks = sweep.max_checks > 0 ? sweep.max_checks : max_validation_checks(sweep, trials);
      for (const auto& t : trials) meta.trial_configs.push_back(to_yaml(trial_config(sweep, t)));
      const std::string states = o.state_minutes > 0 ? state_folder(o.out) : std::string();
      training = std::make_unique<TrainingTrialRunner>(sweep, o.data, o.save_checkpoints, states, o.state_minutes * 60.0);
      layout.n_neurons = training->n_neurons();
      runner = [&training](const Trial& t, const TrialProgress& p) { return (*training)(t, p); };
    }
  });

  if (!o.data.empty()) {
    meta.dataset_checksum = dataset_digests(MPI_COMM_WORLD, o.data);
    meta.legacy_dataset_checksum = [&o] { return legacy_dataset_checksums(o.data); };
  }
  int exists = 0;
  if (rank == 0) exists = std::filesystem::exists(o.out) ? 1 : 0;
  MPI_Bcast(&exists, 1, MPI_INT, 0, MPI_COMM_WORLD);
  ResultsFile results = (exists && !o.force)
                            ? ResultsFile::open_for_resume(o.out, MPI_COMM_WORLD, layout, meta)
                            : ResultsFile::create(o.out, MPI_COMM_WORLD, layout, meta, trials, o.force);
  // A trial's state is removed once its row is written; one left by a run killed between the two goes now.
  auto remove_state = [&](const Trial& t) {
    std::error_code ec;
    std::filesystem::remove(trial_state_path(state_folder(o.out), t.id), ec);
  };
  if (rank == 0 && sweep.trial_kind != "dry_run") {
    const auto statuses = results.read_statuses();
    for (size_t i = 0; i < statuses.size() && i < trials.size(); ++i)
      if (is_finished(statuses[i])) remove_state(trials[i]);
  }
  SweepSummary s = run_sweep(MPI_COMM_WORLD, trials, results, runner, remove_state, sweep.pruning);
  if (rank == 0) {
    std::error_code ec;
    std::filesystem::remove(state_folder(o.out), ec);  // only when empty: no trial left a state to continue
    std::fprintf(stderr, "sweep: %lld trials run now (%lld ok, %lld diverged, %lld failed, %lld pruned), %lld finished before, in %.1f s\n",
                 static_cast<long long>(s.ran), static_cast<long long>(s.ok), static_cast<long long>(s.diverged),
                 static_cast<long long>(s.failed), static_cast<long long>(s.pruned), static_cast<long long>(s.already_finished), s.wall_seconds);
    if (s.stopped && s.pending() == 0) std::fprintf(stderr, "sweep: stopped by a signal after the last trial\n");
    if (s.environment_error.empty() && !(s.stopped && s.pending() > 0)) std::cout << o.out << '\n';
  }
  // Every rank holds the same summary, so every rank throws the same error (no MPI_Abort, one message).
  if (!s.environment_error.empty()) throw EnvironmentError(s.environment_error);
  if (s.stopped && s.pending() > 0) {
    run_agreed(MPI_COMM_WORLD, [&] {
      throw StoppedError("a stop signal ended the sweep with " + std::to_string(s.pending()) + " of " + std::to_string(s.total) +
                             " trials pending",
                         o.out, "run the same command again to resume them");
    });
  }
}

}  // namespace

void add_sweep_command(CLI::App& app) {
  auto o = std::make_shared<SweepOptions>();
  auto* cmd = app.add_subcommand("sweep", "Run a random search / data-efficiency sweep under MPI into one results.h5");
  cmd->add_option("SWEEP", o->sweep_file, "Sweep YAML (sweeps/*.yaml)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--data", o->data,
                  "Dataset: StaticImageSet .h5, FileTree folder or .zip; repeat for several datasets on one core (one "
                  "readout per data_key) in every trial");
  cmd->add_option("--out", o->out, "Results file (parallel HDF5); an existing one is resumed");
  cmd->add_option("--save-checkpoints", o->save_checkpoints, "Folder to keep each trial's best checkpoint");
  cmd->add_option("--save-state-every", o->state_minutes,
                  "Minutes between saved states of each running trial (RESULTS.states/, also written on SIGTERM): "
                  "a rerun continues every unfinished trial where it stopped; 0 saves none")
      ->capture_default_str();
  cmd->add_flag("--list", o->list, "Print the trial table and exit");
  cmd->add_flag("--force", o->force, "Start over even if --out exists");
  cmd->add_flag("--dry-run", o->dry_run, "Synthetic trials (no training): exercises scheduling and results I/O");
  cmd->footer(
      "Exit status:\n"
      "  0   every trial finished (ok, diverged or failed)\n"
      "  75  stopped by SIGTERM/SIGINT with trials pending: run the same command again to resume\n"
      "  7   the machine failed (disk full, I/O error): that trial stays pending; free space and run the same\n"
      "      command again\n"
      "  3   also when another sweep writes the same --out: it holds <out>.lock while it runs\n"
      "  2-6 otherwise an input error (see the message)");
  cmd->callback([o] { run_sweep_command(*o); });
}

void add_select_command(CLI::App& app) {
  struct Options {
    std::string results, csv;
    int64_t top = 5;
    bool force = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("select", "Table 1: best trial per architecture by validation loss (Lurz schedule: validation correlation), top-k test correlation");
  cmd->add_option("RESULTS", o->results, "results.h5 written by v1sysid sweep")->required()->check(CLI::ExistingFile);
  cmd->add_option("--top", o->top, "How many best trials to average")->check(CLI::PositiveNumber);
  cmd->add_option("--csv", o->csv, "Also write the table as CSV to this file");
  cmd->add_flag("--force", o->force, "Overwrite an existing --csv file");
  cmd->callback([o] {
    if (!o->csv.empty()) {
      refuse_outputs_inside_datasets({o->csv}, {o->results});
      prepare_output_file(o->csv, o->force, "--csv");
    }
    auto rows = select_best(o->results, o->top);
    std::cout << selection_markdown(rows, o->top);
    if (!o->csv.empty()) write_file_atomically(o->csv, selection_csv(rows));
  });
}

}  // namespace v1sysid::apps
