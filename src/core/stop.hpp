// Cooperative stop on SIGTERM / SIGINT (SLURM preemption and time limits send SIGTERM first): the handler
// only sets a flag; long loops (trainer iterations, the sweep scheduler) poll stop_requested() and wind down,
// so results already computed are written and files are closed cleanly.
#pragma once

namespace v1sysid {

void install_stop_handlers();  // SIGTERM and SIGINT set the flag; a second SIGINT kills as usual
bool stop_requested();
void request_stop();           // for tests
void clear_stop_request();     // for tests

}  // namespace v1sysid
