// An exclusive lock on a sweep's results file: "<results>.lock", created with O_CREAT | O_EXCL by rank 0 and
// holding the host, PID, SLURM job id and start time of the job that writes the file. A second sweep on the same
// --out finds it and refuses to start (both would run every pending trial and overwrite each other's rows).
//
// A lock whose holder is gone (the job was SIGKILLed, or lost its node) is stale. On the same host a lock whose
// PID no longer runs is taken over with a message, as is a lock left on another host by an earlier run of the
// same SLURM job (a requeued job keeps its id, raises SLURM_RESTART_COUNT and may land on another node). Any
// other lock from another host cannot be checked from here: the message names the lock file, its holder and
// how to remove it if that job is not running.
#pragma once

#include <string>

namespace v1sysid {

class ResultsLock {
 public:
  // Takes the lock for `results_path` or throws IoError naming the holder. Not collective: rank 0 calls it.
  explicit ResultsLock(const std::string& results_path);
  ResultsLock() = default;
  ResultsLock(ResultsLock&& o) noexcept;
  ResultsLock& operator=(ResultsLock&& o) noexcept;
  ResultsLock(const ResultsLock&) = delete;
  ResultsLock& operator=(const ResultsLock&) = delete;
  ~ResultsLock() { release(); }
  // Removes the lock file (if this process still owns it).
  void release();
  const std::string& path() const { return m_path; }

 private:
  std::string m_path;     // empty: holds nothing
  std::string m_content;  // what this process wrote, to remove only our own lock
};

std::string lock_path_for(const std::string& results_path);

}  // namespace v1sysid
