#include "core/progress.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <sstream>

namespace v1sysid {

namespace {
bool g_enabled = true;
}

void Progress::set_enabled(bool enabled) { g_enabled = enabled; }
bool Progress::stderr_is_tty() { return isatty(fileno(stderr)) != 0; }

std::string format_duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e8) return "?";
  long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, s / 60 % 60);
  else if (s >= 60) std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%lds", s);
  return buf;
}

Progress::Progress(std::string label, long total, double interval_s)
    : m_label(std::move(label)), m_total(total), m_interval_s(interval_s), m_tty(stderr_is_tty()),
      m_start(std::chrono::steady_clock::now()), m_last(m_start) {}

void Progress::update(long done, const std::vector<std::pair<std::string, double>>& values) {
  if (!g_enabled) return;
  auto now = std::chrono::steady_clock::now();
  double since_last = std::chrono::duration<double>(now - m_last).count();
  bool last_step = done >= m_total;
  if (m_printed && !last_step && since_last < (m_tty ? 0.1 : m_interval_s)) return;
  m_last = now;
  m_printed = true;
  const double elapsed = std::chrono::duration<double>(now - m_start).count();  // this process
  const long here = done - m_first;  // steps this process took
  double eta = here > 0 ? elapsed / static_cast<double>(here) * static_cast<double>(m_total - done) : -1;
  std::ostringstream line;
  line << m_label << ' ' << done << '/' << m_total;
  for (const auto& [name, value] : values) {
    line << "  " << name << ' ';
    if (std::isfinite(value)) line << value;
    else line << '-';  // not measured yet (a validation loss before the first check), not a numeric NaN
  }
  line << "  elapsed " << format_duration(m_elapsed_before + elapsed) << "  ETA " << format_duration(eta);
  if (m_tty) std::fprintf(stderr, "\r\033[K%s", line.str().c_str());
  else std::fprintf(stderr, "%s\n", line.str().c_str());
  std::fflush(stderr);
}

void Progress::finish(const std::string& message) {
  if (!g_enabled) return;
  const double elapsed =
      m_elapsed_before + std::chrono::duration<double>(std::chrono::steady_clock::now() - m_start).count();
  if (m_tty && m_printed) std::fprintf(stderr, "\r\033[K");
  std::fprintf(stderr, "%s done in %s%s%s\n", m_label.c_str(), format_duration(elapsed).c_str(),
               message.empty() ? "" : ": ", message.c_str());
  std::fflush(stderr);
}

}  // namespace v1sysid
