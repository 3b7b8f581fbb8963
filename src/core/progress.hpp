// Progress lines for long commands: step, named values (losses, lr), rate and ETA, on stderr.
// On a terminal the line is redrawn in place at most 10 times a second; otherwise a line is printed at most
// every `interval_s` seconds, so logs of batch jobs stay readable.
#pragma once

#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace v1sysid {

class Progress {
 public:
  Progress(std::string label, long total, double interval_s = 10.0);
  // Reports that `done` of `total` steps are finished, with optional named values.
  void update(long done, const std::vector<std::pair<std::string, double>>& values = {});
  // A run resumed at `done` steps after `elapsed_before_s` seconds of earlier processes: the rate and ETA count
  // only the steps from here on; the elapsed time shown is the whole run's.
  void resumed_at(long done, double elapsed_before_s = 0) {
    m_first = done;
    m_elapsed_before = elapsed_before_s;
  }
  // Prints a final line with the elapsed time.
  void finish(const std::string& message = "");
  // Whether stderr is a terminal (tests and batch jobs get plain lines).
  static bool stderr_is_tty();
  // Silences all progress output (used by quiet modes and by ranks other than 0).
  static void set_enabled(bool enabled);

 private:
  std::string m_label;
  long m_total;
  long m_first = 0;             // steps done before this process started (resumed runs)
  double m_elapsed_before = 0;  // seconds those steps took
  double m_interval_s;
  bool m_tty;
  std::chrono::steady_clock::time_point m_start, m_last;
  bool m_printed = false;
};

std::string format_duration(double seconds);

}  // namespace v1sysid
