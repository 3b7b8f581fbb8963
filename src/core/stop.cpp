#include "core/stop.hpp"

#include <csignal>

namespace v1sysid {

namespace {
volatile std::sig_atomic_t g_stop = 0;

extern "C" void on_stop_signal(int sig) {
  if (sig == SIGINT && g_stop) {
    std::signal(SIGINT, SIG_DFL);
    std::raise(SIGINT);
  }
  g_stop = 1;
}
}  // namespace

void install_stop_handlers() {
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGINT, on_stop_signal);
}
bool stop_requested() { return g_stop != 0; }
void request_stop() { g_stop = 1; }
void clear_stop_request() { g_stop = 0; }

[[noreturn]] void throw_for_exit_code(int code, const std::string& message) {
  switch (code) {
    case 2:
      throw ConfigError(message);
    case 3:
      throw IoError(message);
    case 4:
      throw DataError(message);
    case 5:
      throw ShapeError(message);
    case 6:
      throw DivergedError(message);
    case 7:
      throw EnvironmentError(message);
    case kExitStoppedResumable:
      throw StoppedError(message);
    default:
      throw Error(message);
  }
}

}  // namespace v1sysid
