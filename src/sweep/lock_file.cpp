#include "sweep/lock_file.hpp"

#include "core/error.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>
#include <utility>

namespace v1sysid {

namespace {

std::string this_host() {
  char buf[256] = {0};
  gethostname(buf, sizeof buf - 1);
  return buf;
}

// How often SLURM has requeued this job (0 for its first run).
long slurm_restart_count() {
  const char* n = std::getenv("SLURM_RESTART_COUNT");
  return n ? std::atol(n) : 0;
}

std::string slurm_job_id() {
  const char* id = std::getenv("SLURM_JOB_ID");
  return id ? id : "";
}

std::string now_utc() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

struct Holder {
  std::string host, job;
  long pid = 0;
  unsigned long long start_ticks = 0;
  long restart_count = 0;
  std::string started;
  bool parsed = false;
};

// The lock file is a few "key: value" lines, readable by a person who finds it.
Holder parse(const std::string& text) {
  Holder h;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    auto colon = line.find(": ");
    if (colon == std::string::npos) continue;
    const std::string key = line.substr(0, colon), value = line.substr(colon + 2);
    if (key == "host") h.host = value;
    if (key == "pid") h.pid = std::atol(value.c_str());
    if (key == "slurm_job_id") h.job = value;
    if (key == "slurm_restart_count") h.restart_count = std::atol(value.c_str());
    if (key == "started") h.started = value;
    if (key == "pid_start_ticks") h.start_ticks = std::strtoull(value.c_str(), nullptr, 10);
  }
  h.parsed = !h.host.empty() && h.pid > 0;
  return h;
}

std::string read_all(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// Fields 3 (state) and 22 (start time in clock ticks since boot) of /proc/<pid>/stat; false when unreadable.
bool proc_stat(long pid, char& state, unsigned long long& start_ticks) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!std::getline(f, text)) return false;
  const auto close = text.rfind(')');  // the command name may contain spaces and parentheses
  if (close == std::string::npos) return false;
  std::istringstream rest(text.substr(close + 1));
  std::string field;
  rest >> state;
  for (int i = 4; i < 22 && rest >> field; ++i) {
  }
  return static_cast<bool>(rest >> start_ticks);
}

unsigned long long own_start_ticks() {
  char state = 0;
  unsigned long long ticks = 0;
  return proc_stat(getpid(), state, ticks) ? ticks : 0;
}

// Whether the lock's holder still runs on this host. A zombie (killed, not yet reaped: SIGKILLed jobs leave them
// where no init reaps) does not count, nor a process that reuses the PID but started at another time.
bool process_runs(long pid, unsigned long long recorded_start_ticks) {
  if (kill(static_cast<pid_t>(pid), 0) != 0 && errno != EPERM) return false;
  char state = 0;
  unsigned long long ticks = 0;
  if (!proc_stat(pid, state, ticks)) return true;  // no /proc: trust kill()
  if (state == 'Z' || state == 'X') return false;
  return recorded_start_ticks == 0 || ticks == recorded_start_ticks;
}

// Creates the lock file; false when it exists.
bool try_create(const std::string& path, const std::string& content) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) {
    if (errno == EEXIST) return false;
    throw_os_error("creating the lock file of the results file", path, errno);
  }
  const ssize_t n = write(fd, content.data(), content.size());
  const int write_errno = errno;
  const bool ok = n == static_cast<ssize_t>(content.size()) && fsync(fd) == 0;
  const int err = n < 0 ? write_errno : errno;
  close(fd);
  if (!ok) {
    unlink(path.c_str());
    throw_os_error("writing the lock file of the results file", path, err == 0 ? ENOSPC : err);
  }
  return true;
}

}  // namespace

std::string lock_path_for(const std::string& results_path) { return results_path + ".lock"; }

ResultsLock::ResultsLock(const std::string& results_path) {
  const std::string path = lock_path_for(results_path);
  std::ostringstream content;
  content << "host: " << this_host() << "\npid: " << getpid() << "\npid_start_ticks: " << own_start_ticks()
          << "\nslurm_job_id: " << slurm_job_id() << "\nslurm_restart_count: " << slurm_restart_count()
          << "\nstarted: " << now_utc() << "\nresults: " << results_path << '\n';
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (try_create(path, content.str())) {
      m_path = path;
      m_content = content.str();
      return;
    }
    const Holder h = parse(read_all(path));
    const std::string holder = h.parsed
                                   ? "PID " + std::to_string(h.pid) + " on host " + h.host +
                                         (h.job.empty() ? "" : " (SLURM job " + h.job + ")") + ", started " + h.started
                                   : "an unreadable holder";
    const bool same_host = h.parsed && h.host == this_host();
    const bool dead_here = same_host && !process_runs(h.pid, h.start_ticks);
    // A requeued job (same id, higher restart count) may run on another node; the run that took the lock was
    // ended by SLURM. Another step of the same job (same restart count) is a concurrent sweep and is refused.
    const bool earlier_run_of_this_job =
        h.parsed && !same_host && !h.job.empty() && h.job == slurm_job_id() && slurm_restart_count() > h.restart_count;
    if (attempt == 0 && (dead_here || earlier_run_of_this_job)) {
      std::fprintf(stderr, "sweep: taking over the stale lock %s (%s, %s)\n", path.c_str(), holder.c_str(),
                   dead_here ? "that process no longer runs" : "an earlier run of this SLURM job");
      std::remove(path.c_str());
      continue;
    }
    if (same_host) {
      throw IoError("another sweep is writing this results file (" + holder + ", lock file " + path + ")", results_path,
                    "wait for it to finish or stop it (kill " + std::to_string(h.pid) + "), or choose another --out");
    }
    throw IoError("another sweep holds the lock on this results file (" + holder + ", lock file " + path + ")",
                  results_path,
                  "wait for it to finish; if no such job runs any more (check squeue or ps on " +
                      (h.parsed ? h.host : std::string("its host")) + "), remove " + path + " and run again");
  }
  throw IoError("cannot take the lock file of the results file", path,
                "remove it if no sweep is running and run again");
}

ResultsLock::ResultsLock(ResultsLock&& o) noexcept
    : m_path(std::exchange(o.m_path, std::string())), m_content(std::move(o.m_content)) {}

ResultsLock& ResultsLock::operator=(ResultsLock&& o) noexcept {
  if (this != &o) {
    release();
    m_path = std::exchange(o.m_path, std::string());
    m_content = std::move(o.m_content);
  }
  return *this;
}

void ResultsLock::release() {
  if (m_path.empty()) return;
  // Only our own lock: a lock that someone removed and re-took by hand is theirs.
  if (read_all(m_path) == m_content) std::remove(m_path.c_str());
  m_path.clear();
}

}  // namespace v1sysid
