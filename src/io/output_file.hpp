// Output files of every command: written under a temporary name and renamed only when complete (so no
// half-written or empty file ever carries the final name), never over an existing file without --force,
// never inside a dataset folder, and checked before any long work. Failures of the operating system become
// typed errors through throw_os_error (a full disk reads "disk full while writing <file>").
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace v1sysid {

// Whether write_file_atomically fsyncs the file (and its folder) before and after the rename. Small files
// that record a result (metrics.json, CSV tables) are synced; files that are part of a folder committed as a
// whole (a FileTree dataset's .npy files) are not: commit_folder syncs the folder's file system once.
enum class Sync { file, none };

// The temporary name of an output being written: "<path>.partial-<pid>", in the same folder as `path` so
// that the rename is atomic.
std::string partial_path(const std::string& path);

// Writes `size` bytes to `path`: to partial_path(path), checked after every write, fsynced (Sync::file),
// closed, then renamed over `path`. On any failure the temporary is removed, `path` is left as it was, and
// the error names `path` and the cause (EnvironmentError for a full disk or an I/O error, else IoError).
void write_file_atomically(const std::string& path, const void* data, size_t size, Sync sync = Sync::file);
inline void write_file_atomically(const std::string& path, const std::string& text, Sync sync = Sync::file) {
  write_file_atomically(path, text.data(), text.size(), sync);
}

// Renames a folder built under a temporary name (`partial`) to `folder`, after syncing its file system so
// that a write error that only shows at write-back fails here rather than after the commit. An existing
// `folder` is replaced. Errors as write_file_atomically; the caller removes `partial` on failure.
void commit_folder(const std::string& partial, const std::string& folder);

// Creates `folder` and its parents and checks that files can be created in it. A failure (a read-only file
// system, a missing permission, a file in the way) is an ordinary IoError or EnvironmentError that names the
// folder, not an unexpected exception.
void create_output_folder(const std::string& folder);

// Checks an output file before any work: refuses an existing `path` unless `force` (IoError), creates its
// folder and checks that the folder is writable, so that a command fails in a second rather than after
// minutes of work. `option` names the command-line option that gives the path, for the message.
void prepare_output_file(const std::string& path, bool force, const std::string& option = "--out");

// Refuses (ConfigError) every non-empty output that lies inside, or is, one of the command's non-empty
// `datasets` (FileTree folders, dataset files, or other inputs such as a checkpoint), and every output inside
// any FileTree dataset folder (one with data/ and meta/trials/), given or not: a file written there changes
// the dataset (its checksum, which a sweep's resume compares, or its trial files). Paths are compared after
// resolving symbolic links and "..".
void refuse_outputs_inside_datasets(const std::vector<std::string>& outputs, const std::vector<std::string>& datasets);

}  // namespace v1sysid
