// Typed errors of v1sysid. Every message reads "<what>, <where>, <how to fix>" so that the command line
// can print it on one line as "v1sysid: error: <message>" and exit non-zero.
#pragma once

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace v1sysid {

class Error : public std::runtime_error {
 public:
  Error(const std::string& what, const std::string& where, const std::string& fix)
      : std::runtime_error(compose(what, where, fix)) {}
  explicit Error(const std::string& message) : std::runtime_error(message) {}
  virtual int exit_code() const { return 1; }

 private:
  static std::string compose(const std::string& what, const std::string& where, const std::string& fix) {
    std::string m = what;
    if (!where.empty()) m += ", in " + where;
    if (!fix.empty()) m += "; " + fix;
    return m;
  }
};

// Malformed YAML, unknown keys, wrong types, out-of-range values, impossible combinations.
class ConfigError : public Error {
 public:
  using Error::Error;
  int exit_code() const override { return 2; }
};

// Missing, unreadable, truncated or non-HDF5/npy files; refusing to overwrite without --force.
class IoError : public Error {
 public:
  using Error::Error;
  int exit_code() const override { return 3; }
};

// Data that is readable but wrong: missing fields, shape mismatches, NaN, empty tiers.
class DataError : public Error {
 public:
  using Error::Error;
  int exit_code() const override { return 4; }
};

// Tensors whose shapes do not fit each other (a model that does not fit the data, a foreign checkpoint).
class ShapeError : public Error {
 public:
  using Error::Error;
  int exit_code() const override { return 5; }
};

// A training run whose loss became NaN or infinite.
class DivergedError : public Error {
 public:
  using Error::Error;
  int exit_code() const override { return 6; }
};

// The machine, not the input, failed: a full disk (ENOSPC, EDQUOT), an I/O error, a lost rank. The same command
// can succeed later or elsewhere, so a sweep leaves such a trial pending (retried by the next run) instead of
// recording it as failed.
class EnvironmentError : public Error {
 public:
  using Error::Error;
  int exit_code() const override { return 7; }
};

// Throws the error that fits a failed operating-system call on `path`: a full disk or quota and an I/O error are
// EnvironmentError (retryable), a read-only file system or missing permission an IoError that says so, anything
// else an IoError with the system's message. `action` says what was being done ("writing the checkpoint").
[[noreturn]] inline void throw_os_error(const std::string& action, const std::string& path, int err) {
  const std::string cause = std::strerror(err);
  switch (err) {
    case ENOSPC:
    case EDQUOT:
      throw EnvironmentError("disk full while " + action + " (" + cause + ")", path,
                             "free space on that file system (df -h) or write somewhere else");
    case EIO:
      throw EnvironmentError("I/O error while " + action + " (" + cause + ")", path,
                             "check the file system; the same command can be run again");
    case EACCES:
    case EPERM:
    case EROFS:
      throw IoError("not allowed while " + action + " (" + cause + ")", path,
                    "check the folder's permissions, or write somewhere else");
    default:
      throw IoError("failed while " + action + " (" + cause + ")", path, "check the path and the file system");
  }
}

// Exit status of a command that was stopped by a signal (SIGTERM, SIGINT) before it finished and can be resumed
// by running it again (BSD sysexits' EX_TEMPFAIL). Batch scripts requeue on it.
inline constexpr int kExitStoppedResumable = 75;

}  // namespace v1sysid
