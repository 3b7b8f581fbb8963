// Failures that every rank of a communicator agrees on. A step that can fail on some ranks and not on others
// (a full disk seen by the rank that writes, a file only rank 0 reads) must not let the ranks drift into
// different collectives, where they would wait for each other forever. run_agreed() runs the step on each rank,
// then decides collectively: when any rank threw, every rank throws the same typed error (the lowest failing
// rank's message and exit code), so all of them unwind, print once and exit with the same status.
#pragma once

#include <mpi.h>

#include <functional>
#include <string>

namespace v1sysid {

// Collective over comm. Runs `step` here; throws on every rank when it threw on any (a v1sysid::Error keeps its
// exit code, any other exception becomes exit 1).
void run_agreed(MPI_Comm comm, const std::function<void()>& step);

// True when `what` is the message of an error that run_agreed() threw on every rank: the command line then
// lets the ranks finish normally (only rank 0 prints it) instead of calling MPI_Abort.
bool is_agreed_error(const std::string& what);

}  // namespace v1sysid
