// Helpers shared by the test files: scratch folders, running the v1sysid executable, reading files.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
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

struct CommandResult {
  int exit_code;
  std::string output;  // stdout and stderr together
};

// Runs the built v1sysid executable (path from the V1SYSID_EXE environment variable set by ctest).
inline CommandResult run_v1sysid(const std::string& args) {
  const char* exe = std::getenv("V1SYSID_EXE");
  std::string cmd = std::string(exe ? exe : "v1sysid") + " " + args + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128, out};
}

inline std::string source_dir() {
  const char* s = std::getenv("V1SYSID_SOURCE_DIR");
  return s ? s : ".";
}

inline std::string read_text(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

}  // namespace v1sysid::testing
