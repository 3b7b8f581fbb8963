// v1sysid: one executable, subcommands. Parses the command line, initialises MPI and Kokkos once, runs the
// chosen command and turns every typed error into one line "v1sysid: error: ..." and a non-zero exit.
#include "apps/commands.hpp"
#include "core/collective.hpp"
#include "core/error.hpp"
#include "core/stop.hpp"
#include "core/version.hpp"
#include "io/h5.hpp"

#include <Kokkos_Core.hpp>
#include <mpi.h>

#include <iostream>

namespace {

int rank_of_world() {
  int initialised = 0, rank = 0;
  MPI_Initialized(&initialised);
  if (initialised) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

// A stopped command is not an error: it says so and how to resume.
int report(const std::string& message, int code, const char* kind = "error") {
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size > 1) {
    std::cerr << "v1sysid: [rank " << rank_of_world() << "] " << kind << ": " << message << std::endl;
  } else {
    std::cerr << "v1sysid: " << kind << ": " << message << std::endl;
  }
  return code;
}

// Only `sweep` shares work among MPI ranks; any other command started on several (mpirun -np N, or srun in a
// sweep's batch script) would run N times and write the same outputs concurrently. Every rank sees the same
// world size, so every rank refuses alike (an agreed error: rank 0 says it once and no rank is aborted).
// `bench` writes nothing and is run on several ranks on purpose: one benchmark per rank measures the throughput
// of a rank layout (docs/performance.md, "Sweep throughput").
void refuse_several_ranks_except_sweep_and_bench(CLI::App& app) {
  for (CLI::App* command : app.get_subcommands([](CLI::App*) { return true; })) {
    if (command->get_name() == "sweep" || command->get_name() == "bench") continue;
    const std::string name = command->get_name();
    command->preparse_callback([name](std::size_t) {
      int size = 1;
      MPI_Comm_size(MPI_COMM_WORLD, &size);
      v1sysid::run_agreed(MPI_COMM_WORLD, [&] {
        if (size > 1)
          throw v1sysid::ConfigError("'v1sysid " + name + "' runs on one process but was started on " +
                                         std::to_string(size) + " MPI ranks, each of which would do the same work "
                                         "and write the same outputs",
                                     "the launch (mpirun / srun)",
                                     "start it without mpirun or with -np 1; only 'v1sysid sweep' shares work "
                                     "among ranks");
      });
    });
  }
}

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  v1sysid::h5::silence_library_errors();
  int code = 0;
  bool agreed = false;  // every rank failed with the same error (core/collective.hpp): no rank waits for another
  {
    // Kokkos sees only the program name: its own --help would otherwise answer for ours.
    int kokkos_argc = 1;
    Kokkos::ScopeGuard kokkos(kokkos_argc, argv);
    if (rank_of_world() == 0) {
      const std::string warning = v1sysid::openmp_threads_warning();
      if (!warning.empty()) std::cerr << "v1sysid: warning: " << warning << std::endl;
    }

    CLI::App app{"v1sysid: data-driven models of mouse primary visual cortex (Ecker et al. 2019, Lurz et al. 2021)"};
    app.name("v1sysid");
    app.set_version_flag("--version", [] { return v1sysid::version_report(); }, "Print version, git hash, Kokkos backends and BLAS");
    app.require_subcommand(1);
    app.fallthrough(false);
    v1sysid::apps::add_info_command(app);
    v1sysid::apps::add_sweep_command(app);
    v1sysid::apps::add_select_command(app);
    v1sysid::apps::add_images_command(app);
    v1sysid::apps::add_train_command(app);
    v1sysid::apps::add_evaluate_command(app);
    v1sysid::apps::add_predict_command(app);
    v1sysid::apps::add_rf_command(app);
    v1sysid::apps::add_mei_command(app);
    v1sysid::apps::add_ensemble_command(app);
    v1sysid::apps::add_export_command(app);
    v1sysid::apps::add_similarity_command(app);
    v1sysid::apps::add_bench_command(app);
    v1sysid::apps::add_simulate_command(app);
    v1sysid::apps::add_status_command(app);
    refuse_several_ranks_except_sweep_and_bench(app);

    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      if (e.get_exit_code() == 0) {
        code = app.exit(e);  // --help, --version
      } else {
        code = report(std::string(e.what()) + "; see 'v1sysid " +
                          (app.get_subcommands().empty() ? std::string("--help")
                                                         : app.get_subcommands().front()->get_name() + " --help") +
                          "'",
                      2);
      }
    } catch (const v1sysid::StoppedError& e) {
      agreed = v1sysid::is_agreed_error(e.what());
      if (!agreed || rank_of_world() == 0) report(e.what(), e.exit_code(), "stopped");
      code = e.exit_code();
    } catch (const v1sysid::Error& e) {
      // Every rank holds the same agreed error: rank 0 says it once for all.
      agreed = v1sysid::is_agreed_error(e.what());
      if (!agreed || rank_of_world() == 0) report(e.what(), e.exit_code());
      code = e.exit_code();
    } catch (const std::exception& e) {
      code = report(std::string(e.what()) + " (unexpected; please report it with the command line)", 1);
    }
  }
  if (code != 0 && !agreed) {
    int size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size > 1) MPI_Abort(MPI_COMM_WORLD, code);  // never leave another rank waiting in a collective
  }
  MPI_Finalize();
  return code;
}
