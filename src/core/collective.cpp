#include "core/collective.hpp"

#include "core/error.hpp"
#include "core/stop.hpp"

#include <exception>

namespace v1sysid {

namespace {

std::string g_agreed_message;

}  // namespace

void run_agreed(MPI_Comm comm, const std::function<void()>& step) {
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int code = 0;
  std::string message;
  try {
    step();
  } catch (const Error& e) {
    code = e.exit_code();
    message = e.what();
  } catch (const std::exception& e) {
    code = 1;
    message = std::string(e.what()) + " (unexpected; please report it with the command line)";
  }
  int failing = code != 0 ? rank : size;
  MPI_Allreduce(MPI_IN_PLACE, &failing, 1, MPI_INT, MPI_MIN, comm);
  if (failing == size) return;
  MPI_Bcast(&code, 1, MPI_INT, failing, comm);
  int length = static_cast<int>(message.size());
  MPI_Bcast(&length, 1, MPI_INT, failing, comm);
  message.resize(static_cast<size_t>(length));
  MPI_Bcast(message.data(), length, MPI_CHAR, failing, comm);
  g_agreed_message = message;
  throw_for_exit_code(code, message);
}

bool is_agreed_error(const std::string& what) { return !g_agreed_message.empty() && what == g_agreed_message; }

}  // namespace v1sysid
