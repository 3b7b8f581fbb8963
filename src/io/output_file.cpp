#include "io/output_file.hpp"

#include "core/error.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>

namespace v1sysid {

namespace fs = std::filesystem;

namespace {

// Removes a temporary file or folder unless release()d: every failure path, thrown or not, leaves nothing
// named ".partial-<pid>" behind.
class TemporaryGuard {
 public:
  explicit TemporaryGuard(std::string path) : m_path(std::move(path)) {}
  ~TemporaryGuard() {
    if (m_path.empty()) return;
    std::error_code ec;
    fs::remove_all(m_path, ec);
  }
  void release() { m_path.clear(); }
  TemporaryGuard(const TemporaryGuard&) = delete;
  TemporaryGuard& operator=(const TemporaryGuard&) = delete;

 private:
  std::string m_path;
};

std::string file_name(const std::string& path) { return fs::path(path).filename().string(); }

std::string folder_of(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

// Makes a rename in `folder` durable. Best effort: some file systems cannot fsync a folder (EINVAL), and the
// file itself is complete and in place by now.
void sync_folder(const std::string& folder) {
  const int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

fs::path resolved(const std::string& path) {
  std::error_code ec;
  fs::path p = fs::weakly_canonical(fs::absolute(path), ec);
  if (ec) p = fs::absolute(path).lexically_normal();
  // "dir/" and "dir" name the same folder; a trailing separator leaves an empty last element.
  if (!p.empty() && p.filename().empty()) p = p.parent_path();
  return p;
}

// Whether `inner` is `outer` or lies below it (both resolved).
bool is_within(const fs::path& inner, const fs::path& outer) {
  auto i = inner.begin();
  for (auto o = outer.begin(); o != outer.end(); ++o, ++i)
    if (i == inner.end() || *i != *o) return false;
  return true;
}

// A FileTree dataset folder as the reader finds it (src/data/file_tree.cpp): data/ and meta/trials/.
bool is_file_tree_folder(const fs::path& folder) {
  std::error_code ec;
  return fs::is_directory(folder / "data", ec) && fs::is_directory(folder / "meta" / "trials", ec);
}

[[noreturn]] void refuse_inside(const std::string& output, const std::string& folder) {
  throw ConfigError("the output " + output + " lies inside the dataset folder " + folder, "the command line",
                    "write it elsewhere: a file inside a dataset folder changes the dataset (and its checksum, so a "
                    "sweep over it can no longer be resumed)");
}

}  // namespace

std::string partial_path(const std::string& path) { return path + ".partial-" + std::to_string(::getpid()); }

void write_file_atomically(const std::string& path, const void* data, size_t size, Sync sync) {
  const std::string partial = partial_path(path);
  const std::string name = file_name(path);
  const int fd = ::open(partial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) throw_os_error("creating " + name, path, errno);
  TemporaryGuard guard(partial);
  auto fail = [&](const std::string& action) {
    const int err = errno;
    ::close(fd);
    throw_os_error(action + " " + name, path, err);
  };
  const char* p = static_cast<const char*>(data);
  size_t left = size;
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = ENOSPC;  // a regular file accepts no bytes only when there is no room
      fail("writing");
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  // A file system that allocates at write-back (ext4, XFS, NFS) reports a full disk only here or at close.
  if (sync == Sync::file && ::fsync(fd) != 0) fail("writing");
  if (::close(fd) != 0) throw_os_error("writing " + name, path, errno);
  if (::rename(partial.c_str(), path.c_str()) != 0)
    throw_os_error("moving the finished " + name + " into place", path, errno);
  guard.release();
  if (sync == Sync::file) sync_folder(folder_of(path));
}

void commit_folder(const std::string& partial, const std::string& folder) {
  const int fd = ::open(partial.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw_os_error("opening the finished folder", partial, errno);
  // One syncfs for the whole folder instead of an fsync per file: the folder is the unit of completeness.
  if (::syncfs(fd) != 0) {
    const int err = errno;
    ::close(fd);
    throw_os_error("writing " + file_name(folder), folder, err);
  }
  ::close(fd);
  std::error_code ec;
  if (fs::exists(folder, ec)) {
    fs::remove_all(folder, ec);
    if (ec) throw_os_error("removing the old " + file_name(folder) + " (--force)", folder, ec.value());
  }
  if (::rename(partial.c_str(), folder.c_str()) != 0)
    throw_os_error("moving the finished " + file_name(folder) + " into place", folder, errno);
  sync_folder(folder_of(folder));
}

void create_output_folder(const std::string& folder) {
  if (folder.empty()) return;
  std::error_code ec;
  fs::create_directories(folder, ec);
  if (ec) throw_os_error("creating the output folder", folder, ec.value());
  if (!fs::is_directory(folder, ec)) throw_os_error("creating the output folder", folder, ENOTDIR);
  if (::access(folder.c_str(), W_OK | X_OK) != 0) throw_os_error("creating files in the output folder", folder, errno);
}

void prepare_output_file(const std::string& path, bool force, const std::string& option) {
  std::error_code ec;
  if (fs::is_directory(path, ec))
    throw IoError("the output is a folder", path,
                  "give a file name (e.g. " + (fs::path(path) / "out.h5").string() + ")");
  if (fs::exists(path, ec) && !force)
    throw IoError("output file already exists", path, "choose another " + option + " or pass --force to overwrite it");
  const std::string folder = folder_of(path);
  create_output_folder(folder);
}

void refuse_outputs_inside_datasets(const std::vector<std::string>& outputs, const std::vector<std::string>& datasets) {
  for (const auto& output : outputs) {
    if (output.empty()) continue;
    const fs::path out = resolved(output);
    for (const auto& dataset : datasets) {
      if (dataset.empty()) continue;
      const fs::path data = resolved(dataset);
      std::error_code ec;
      if (fs::is_directory(data, ec) && is_within(out, data)) refuse_inside(output, dataset);
      if (out == data)
        throw ConfigError("the output " + output + " is the input " + dataset + " of this command", "the command line",
                          "write the output to another file");
    }
    // Any FileTree folder above the output, whether this command reads it or not.
    for (fs::path folder = out.parent_path(); !folder.empty(); folder = folder.parent_path()) {
      if (is_file_tree_folder(folder)) refuse_inside(output, folder.string());
      if (folder == folder.root_path()) break;
    }
  }
}

}  // namespace v1sysid
