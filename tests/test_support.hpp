// Helpers shared by the test files: scratch folders, running the v1sysid executable, reading files.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/mount.h>
#include <unistd.h>

namespace v1sysid::testing {

// A fresh folder under the system temp dir, removed at scope exit.
struct ScratchDir {
  std::filesystem::path path;
  ScratchDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "v1sysid-test-XXXXXX").string();
    path = mkdtemp(tmpl.data());
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

// The test process is an MPI singleton; Open MPI exports variables that would make a child mpiexec or a child
// singleton believe it was launched by this process. This shell prefix removes them for child commands.
inline std::string clean_mpi_environment() {
  return "for v in $(env | sed -n 's/^\\(OMPI_MCA_ess\\|OMPI_MCA_orte_[A-Za-z_]*\\|OMPI_MCA_pmix\\|OMPI_COMMAND\\|"
         "OMPI_APP_CTX_NUM_PROCS\\|OMPI_MCA_initial_wdir\\|PMIX_[A-Z_]*\\)=.*/\\1/p'); do unset $v; done; ";
}

struct CommandResult {
  int exit_code;
  std::string output;  // stdout and stderr together
};

inline std::string source_dir() {
  return V1SYSID_TEST_SOURCE_DIR;
}

inline std::string read_text(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// The command line that runs the v1sysid executable under mpiexec with n ranks (oversubscribed).
inline std::string mpi_command(int ranks, const std::string& args) {
  return std::string(V1SYSID_TEST_MPIEXEC) + " --allow-run-as-root --oversubscribe -np " + std::to_string(ranks) +
         " " + V1SYSID_TEST_EXE + " " + args;
}

// Runs a shell command (with the MPI singleton's variables removed) and returns its exit code and output.
inline CommandResult run_shell(const std::string& command) {
  std::string cmd = clean_mpi_environment() + command + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128, out};
}

// A small tmpfs of `bytes` for disk-full tests, mounted on a fresh folder and unmounted at scope exit. Mounting
// needs root (CI runs as root); elsewhere `mounted` is false and `why_not` says why, for GTEST_SKIP().
struct SmallDisk {
  ScratchDir dir;
  bool mounted = false;
  std::string why_not;
  explicit SmallDisk(size_t bytes) {
    if (geteuid() != 0) {
      why_not = "disk-full tests mount a small tmpfs and need root (CI runs as root)";
      return;
    }
    const std::string options = "size=" + std::to_string(bytes);
    if (mount("tmpfs", dir.path.c_str(), "tmpfs", 0, options.c_str()) != 0) {
      why_not = std::string("cannot mount a tmpfs (") + std::strerror(errno) + ")";
      return;
    }
    mounted = true;
  }
  ~SmallDisk() {
    if (mounted) umount2(dir.path.c_str(), MNT_DETACH);
  }
  SmallDisk(const SmallDisk&) = delete;
  SmallDisk& operator=(const SmallDisk&) = delete;
  std::string operator/(const std::string& name) const { return dir / name; }
  // Fills the disk until at most `leave` bytes are free (a file named .filler).
  void fill(size_t leave) const {
    std::ofstream f(dir / ".filler", std::ios::binary);
    std::string block(512, 'x');
    for (;;) {
      std::error_code ec;
      auto space = std::filesystem::space(dir.path, ec);
      if (ec || space.available <= leave) break;
      f.write(block.data(), static_cast<std::streamsize>(std::min<size_t>(block.size(), space.available - leave)));
      f.flush();
      if (!f) break;
    }
  }
};

inline CommandResult run_v1sysid_mpi(int ranks, const std::string& args) { return run_shell(mpi_command(ranks, args)); }
// Runs the built v1sysid executable as a single process.
inline CommandResult run_v1sysid(const std::string& args) { return run_shell(std::string(V1SYSID_TEST_EXE) + " " + args); }

}  // namespace v1sysid::testing
