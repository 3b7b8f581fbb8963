// Cooperative stop on SIGTERM / SIGINT (SLURM preemption and time limits send SIGTERM first): the handler
// only sets a flag; long loops (trainer iterations, the sweep scheduler) poll stop_requested() and wind down,
// so results already computed are written and files are closed cleanly.
#pragma once

#include "core/error.hpp"

namespace v1sysid {

void install_stop_handlers();  // SIGTERM and SIGINT set the flag; a second SIGINT kills as usual
bool stop_requested();
void request_stop();           // for tests
void clear_stop_request();     // for tests

// A command that a stop signal ended before it finished; running it again resumes it. The command line prints
// it as "stopped" (not as an error) and exits with kExitStoppedResumable (75), on which batch scripts requeue.
class StoppedError : public Error {
 public:
  using Error::Error;
  int exit_code() const override { return kExitStoppedResumable; }
};

// Throws the typed error whose exit_code() is `code` (1 and unknown codes: Error), for an error that crossed a
// process boundary as an exit status: another rank's (core/collective.cpp), a child process's (apps/cmd_export).
[[noreturn]] void throw_for_exit_code(int code, const std::string& message);

}  // namespace v1sysid
