#include "io/h5.hpp"

#include "core/error.hpp"
#include "io/output_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <sstream>

namespace v1sysid::h5 {

namespace fs = std::filesystem;

template <> hid_t native_type<float>() { return H5T_NATIVE_FLOAT; }
template <> hid_t native_type<double>() { return H5T_NATIVE_DOUBLE; }
template <> hid_t native_type<int8_t>() { return H5T_NATIVE_INT8; }
template <> hid_t native_type<uint8_t>() { return H5T_NATIVE_UINT8; }
template <> hid_t native_type<int16_t>() { return H5T_NATIVE_INT16; }
template <> hid_t native_type<uint16_t>() { return H5T_NATIVE_UINT16; }
template <> hid_t native_type<int32_t>() { return H5T_NATIVE_INT32; }
template <> hid_t native_type<uint32_t>() { return H5T_NATIVE_UINT32; }
template <> hid_t native_type<int64_t>() { return H5T_NATIVE_INT64; }
template <> hid_t native_type<uint64_t>() { return H5T_NATIVE_UINT64; }

void silence_library_errors() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

void check(herr_t status, const std::string& what, const std::string& file, const std::string& object) {
  if (status < 0) {
    throw IoError("HDF5 call " + what + " failed on '" + object + "'", file,
                  "check that the file is a complete HDF5 file that is not open for writing elsewhere");
  }
}

hid_t check_id(hid_t id, const std::string& what, const std::string& file, const std::string& object) {
  if (id < 0) check(-1, what, file, object);
  return id;
}

namespace {
// Free bytes on the file system that holds `file` (or its folder, while the file does not exist yet).
bool free_bytes(const std::string& file, unsigned long long& out) {
  struct statvfs s {};
  fs::path p(file.empty() ? "." : file);
  if (statvfs(p.c_str(), &s) != 0) {
    const fs::path parent = p.has_parent_path() ? p.parent_path() : fs::path(".");
    if (statvfs(parent.c_str(), &s) != 0) return false;
  }
  out = static_cast<unsigned long long>(s.f_bavail) * s.f_frsize;
  return true;
}
}  // namespace

void check_write(herr_t status, const std::string& what, const std::string& file, const std::string& object) {
  if (status >= 0) return;
  // HDF5's file drivers leave the failed write's errno set; a driver that does not still leaves a full disk.
  const int err = errno;
  const std::string action = (object == "/" ? std::string("writing the file") : "writing '" + object + "'") + " (" + what + ")";
  if (err == ENOSPC || err == EDQUOT || err == EIO) throw_os_error(action, file, err);
  unsigned long long available = 0;
  if (free_bytes(file, available) && available < kLowSpaceBytes) {
    throw EnvironmentError("disk full while " + action + " (" + std::to_string(available) + " bytes free)", file,
                           "free space on that file system (df -h) or write somewhere else");
  }
  throw IoError("HDF5 call " + what + " failed while writing '" + object + "'", file,
                "check that the folder is writable and that no other process writes the file");
}

hid_t check_write_id(hid_t id, const std::string& what, const std::string& file, const std::string& object) {
  if (id < 0) check_write(-1, what, file, object);
  return id;
}

namespace {

std::string normalise(const std::string& object) {
  if (object.empty() || object == "/") return "/";
  return object.front() == '/' ? object : "/" + object;
}

Handle file_access_plist(MPI_Comm* comm) {
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  if (comm != nullptr) H5Pset_fapl_mpio(fapl.get(), *comm, MPI_INFO_NULL);
  return fapl;
}

}  // namespace

Handle untimed_create_plist(hid_t plist_class) {
  Handle plist(check_id(H5Pcreate(plist_class), "H5Pcreate", "", "creation property list"), H5Pclose);
  check(H5Pset_obj_track_times(plist.get(), false), "H5Pset_obj_track_times", "", "creation property list");
  return plist;
}

File::~File() {
  if (!m_partial.empty()) {
    abandon_partial();  // never committed: leave nothing behind
  } else {
    m_file.reset();
  }
}

void File::abandon_partial() {
  // The disk may be full. HDF5's close writes the cached metadata; when that fails it keeps a half-destroyed
  // file under the id, and the library crashes on it at exit (H5F__close_cb in MPI_Finalize). The partial file
  // is deleted anyway, so its last writes may go anywhere: the file's descriptor is pointed at an in-memory file
  // (emptying the partial file is not enough: on a full disk the lock file or another process takes the space).
  if (m_file) {
    // The core driver hands out its POSIX descriptor, not its memory, only when asked with this property.
    Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
    hbool_t want_posix_fd = true;
    void* handle = nullptr;
    if (fapl && H5Pset(fapl.get(), "want_posix_fd", &want_posix_fd) >= 0 &&
        H5Fget_vfd_handle(m_file.get(), fapl.get(), &handle) >= 0 && handle != nullptr) {
      const int fd = *static_cast<int*>(handle);
      const int sink = memfd_create("v1sysid-abandoned-hdf5", MFD_CLOEXEC);
      if (sink >= 0) {
        dup2(sink, fd);
        ::close(sink);
      } else if (ftruncate(fd, 0) != 0) {
        // Neither worked: the close below may still succeed.
      }
    }
    m_file.reset();
  }
  std::remove(m_partial.c_str());
  m_partial.clear();
}

File File::open(const std::string& path) {
  if (!fs::exists(path)) throw IoError("file not found", path, "check the path");
  if (H5Fis_hdf5(path.c_str()) <= 0) {
    throw IoError("not an HDF5 file (or truncated)", path, "pass an HDF5 file written by v1sysid or h5py");
  }
  hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (id < 0) throw IoError("cannot open HDF5 file (truncated or corrupt?)", path, "re-create the file");
  return File(Handle(id, H5Fclose), path, "");
}

File File::open_rw(const std::string& path) {
  if (!fs::exists(path)) throw IoError("file not found", path, "check the path");
  hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  if (id < 0) throw IoError("cannot open HDF5 file for writing", path, "check permissions and that no other process holds it");
  return File(Handle(id, H5Fclose), path, "");
}

File File::open_parallel(const std::string& path, MPI_Comm comm) {
  Handle fapl = file_access_plist(&comm);
  hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDWR, fapl.get());
  if (id < 0) throw IoError("cannot open HDF5 file with MPI-IO", path, "check that it exists and is a complete HDF5 file");
  return File(Handle(id, H5Fclose), path, "");
}

File File::create(const std::string& path, bool force) {
  if (fs::exists(path) && !force) {
    throw IoError("output file already exists", path, "choose another --out or pass --force to overwrite it");
  }
  create_output_folder(fs::path(path).parent_path().string());
  const std::string partial = path + ".partial-" + std::to_string(getpid());
  Handle fcpl = untimed_create_plist(H5P_FILE_CREATE);  // for the root group's header
  // The core driver builds the file in memory and writes it to disk in one pass at flush and close. A full disk
  // then fails in that pass, after the library's own state is complete, and the file can still be closed (see
  // abandon_partial). Writing through the default driver instead, a failed write leaves HDF5's metadata cache
  // wedged, every later close of the file fails, and the library crashes on the half-closed file at exit
  // (H5F__close_cb in MPI_Finalize). The price is memory for the file's size while it is written.
  // The driver grows its image in steps of `increment` and writes the whole image at flush (the file is cut to
  // its real size only at close): one page keeps the disk space a write needs equal to the final file's pages.
  constexpr size_t increment = 4096;
  Handle fapl(check_id(H5Pcreate(H5P_FILE_ACCESS), "H5Pcreate", partial, "file access property list"), H5Pclose);
  check(H5Pset_fapl_core(fapl.get(), increment, /*backing_store=*/true), "H5Pset_fapl_core", partial, "/");
  errno = 0;
  hid_t id = H5Fcreate(partial.c_str(), H5F_ACC_TRUNC, fcpl.get(), fapl.get());
  if (id < 0) {
    const int err = errno;
    std::remove(partial.c_str());
    if (err != 0) throw_os_error("creating the HDF5 file", path, err);
    check_write(-1, "H5Fcreate", path, "/");
  }
  return File(Handle(id, H5Fclose), path, partial);
}

void File::flush() {
  errno = 0;
  check_write(H5Fflush(m_file.get(), H5F_SCOPE_GLOBAL), "H5Fflush", m_path, "/");
}

void File::close() {
  if (!m_partial.empty()) {
    abandon_partial();
    return;
  }
  if (!m_file) return;
  errno = 0;
  check_write(H5Fclose(m_file.release()), "H5Fclose", m_path, "/");
}

void File::commit() {
  if (m_partial.empty()) {
    close();
    return;
  }
  flush();  // a full disk fails here, while the file can still be closed cleanly (see abandon_partial)
  errno = 0;
  check_write(H5Fclose(m_file.release()), "H5Fclose", m_path, "/");
  // The bytes must be on disk before the rename makes the file count as complete.
  const int fd = ::open(m_partial.c_str(), O_RDONLY);
  if (fd < 0 || fsync(fd) != 0) {
    const int err = errno;
    if (fd >= 0) ::close(fd);
    std::remove(m_partial.c_str());
    m_partial.clear();
    throw_os_error("writing the output file to disk", m_path, err);
  }
  ::close(fd);
  std::error_code ec;
  fs::rename(m_partial, m_path, ec);
  if (ec) {
    std::remove(m_partial.c_str());
    m_partial.clear();
    throw_os_error("moving the finished output into place", m_path, ec.value());
  }
  m_partial.clear();
}

bool File::exists(const std::string& object) const {
  const std::string p = normalise(object);
  if (p == "/") return true;
  // H5Lexists fails when an intermediate group is missing, so walk the path.
  size_t pos = 1;
  while (true) {
    size_t next = p.find('/', pos);
    std::string prefix = p.substr(0, next);
    if (H5Lexists(m_file.get(), prefix.c_str(), H5P_DEFAULT) <= 0) return false;
    if (next == std::string::npos) break;
    pos = next + 1;
  }
  return H5Oexists_by_name(m_file.get(), p.c_str(), H5P_DEFAULT) > 0;
}

bool File::is_group(const std::string& object) const {
  if (!exists(object)) return false;
  H5O_info_t info;
  if (H5Oget_info_by_name(m_file.get(), normalise(object).c_str(), &info, H5P_DEFAULT) < 0) return false;
  return info.type == H5O_TYPE_GROUP;
}

void File::ensure_parents(const std::string& object) {
  errno = 0;  // check_write reads the errno of the failed write
  const std::string p = normalise(object);
  size_t pos = 1;
  while (true) {
    size_t next = p.find('/', pos);
    if (next == std::string::npos) break;
    std::string prefix = p.substr(0, next);
    if (H5Lexists(m_file.get(), prefix.c_str(), H5P_DEFAULT) <= 0) {
      Handle gcpl = untimed_create_plist(H5P_GROUP_CREATE);
      Handle g(check_write_id(H5Gcreate2(m_file.get(), prefix.c_str(), H5P_DEFAULT, gcpl.get(), H5P_DEFAULT),
                        "H5Gcreate2", m_path, prefix),
               H5Gclose);
    }
    pos = next + 1;
  }
}

void File::create_group(const std::string& group) {
  ensure_parents(normalise(group) + "/x");
}

std::vector<std::string> File::list(const std::string& group) const {
  std::vector<std::string> names;
  Handle g = open_object(group);
  H5G_info_t info;
  check(H5Gget_info(g.get(), &info), "H5Gget_info", m_path, group);
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    ssize_t n = H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    std::string name(static_cast<size_t>(n), '\0');
    H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), static_cast<size_t>(n) + 1, H5P_DEFAULT);
    names.push_back(name);
  }
  return names;
}

Handle File::open_object(const std::string& object) const {
  if (!exists(object)) {
    throw DataError("missing field '" + normalise(object) + "'", m_path,
                    "the file does not have the layout v1sysid expects (see docs/formats.md)");
  }
  hid_t id = H5Oopen(m_file.get(), normalise(object).c_str(), H5P_DEFAULT);
  return Handle(check_id(id, "H5Oopen", m_path, object), H5Oclose);
}

Handle File::open_dataset(const std::string& dataset) const {
  if (!exists(dataset)) {
    throw DataError("missing dataset '" + normalise(dataset) + "'", m_path,
                    "the file does not have the layout v1sysid expects (see docs/formats.md)");
  }
  hid_t id = H5Dopen2(m_file.get(), normalise(dataset).c_str(), H5P_DEFAULT);
  if (id < 0) {
    throw DataError("'" + normalise(dataset) + "' is not a dataset", m_path, "it must be an array, not a group");
  }
  return Handle(id, H5Dclose);
}

Shape File::shape(const std::string& dataset) const {
  Handle d = open_dataset(dataset);
  Handle space(check_id(H5Dget_space(d.get()), "H5Dget_space", m_path, dataset), H5Sclose);
  int rank = H5Sget_simple_extent_ndims(space.get());
  Shape dims(static_cast<size_t>(std::max(rank, 0)));
  if (rank > 0) H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  return dims;
}

bool File::is_string(const std::string& dataset) const {
  Handle d = open_dataset(dataset);
  Handle type(H5Dget_type(d.get()), H5Tclose);
  return H5Tget_class(type.get()) == H5T_STRING;
}

template <class T>
std::vector<T> File::read(const std::string& dataset, Shape* shape_out) const {
  Handle d = open_dataset(dataset);
  Handle type(check_id(H5Dget_type(d.get()), "H5Dget_type", m_path, dataset), H5Tclose);
  H5T_class_t cls = H5Tget_class(type.get());
  if (cls != H5T_INTEGER && cls != H5T_FLOAT) {
    throw DataError("field '" + normalise(dataset) + "' is not numeric", m_path,
                    "store it as an integer or floating-point array");
  }
  Shape dims = shape(dataset);
  hsize_t n = 1;
  for (auto v : dims) n *= v;
  std::vector<T> out(n);
  if (n > 0) {
    check(H5Dread(d.get(), native_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()),
          "H5Dread (file truncated?)", m_path, dataset);
  }
  if (shape_out) *shape_out = dims;
  return out;
}

template <class T>
T File::read_scalar(const std::string& dataset) const {
  auto v = read<T>(dataset);
  if (v.size() != 1) {
    throw DataError("field '" + normalise(dataset) + "' must hold exactly one value, has " +
                        std::to_string(v.size()), m_path, "store a scalar");
  }
  return v[0];
}

std::vector<std::string> File::read_strings(const std::string& dataset, Shape* shape_out) const {
  Handle d = open_dataset(dataset);
  Handle type(check_id(H5Dget_type(d.get()), "H5Dget_type", m_path, dataset), H5Tclose);
  if (H5Tget_class(type.get()) != H5T_STRING) {
    throw DataError("field '" + normalise(dataset) + "' is not a string array", m_path,
                    "store it as byte strings (numpy 'S') or str");
  }
  Shape dims = shape(dataset);
  hsize_t n = 1;
  for (auto v : dims) n *= v;
  std::vector<std::string> out;
  out.reserve(n);
  if (H5Tis_variable_str(type.get()) > 0) {
    Handle mem(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mem.get(), H5T_VARIABLE);
    H5Tset_cset(mem.get(), H5Tget_cset(type.get()));
    std::vector<char*> raw(n, nullptr);
    if (n > 0) check(H5Dread(d.get(), mem.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, raw.data()), "H5Dread", m_path, dataset);
    for (auto* s : raw) out.emplace_back(s ? s : "");
    Handle space(H5Dget_space(d.get()), H5Sclose);
    if (n > 0) H5Dvlen_reclaim(mem.get(), space.get(), H5P_DEFAULT, raw.data());
  } else {
    size_t len = H5Tget_size(type.get());
    Handle mem(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mem.get(), len);
    H5Tset_strpad(mem.get(), H5T_STR_NULLPAD);
    std::vector<char> raw(n * len);
    if (n > 0) check(H5Dread(d.get(), mem.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, raw.data()), "H5Dread", m_path, dataset);
    for (hsize_t i = 0; i < n; ++i) {
      std::string s(raw.data() + i * len, len);
      s.erase(s.find_last_not_of('\0') + 1);
      out.push_back(std::move(s));
    }
  }
  if (shape_out) *shape_out = dims;
  return out;
}

template <class T>
void File::write(const std::string& dataset, const T* data, const Shape& dims, hsize_t chunk_rows) {
  ensure_parents(dataset);  // also clears errno
  Handle space(dims.empty() ? H5Screate(H5S_SCALAR)
                            : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
               H5Sclose);
  Handle dcpl = untimed_create_plist(H5P_DATASET_CREATE);
  hsize_t total = 1;
  for (auto v : dims) total *= v;
  if (chunk_rows > 0 && !dims.empty() && total > 0) {
    Shape chunk = dims;
    chunk[0] = std::min<hsize_t>(chunk_rows, dims[0]);
    H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data());
    H5Pset_deflate(dcpl.get(), 4);
  }
  Handle d(check_write_id(H5Dcreate2(m_file.get(), normalise(dataset).c_str(), native_type<T>(), space.get(),
                               H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
                    "H5Dcreate2", m_path, dataset),
           H5Dclose);
  if (total > 0) {
    check_write(H5Dwrite(d.get(), native_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "H5Dwrite", m_path, dataset);
  }
}

void File::write_strings(const std::string& dataset, const std::vector<std::string>& values) {
  ensure_parents(dataset);
  size_t len = 1;
  for (const auto& s : values) len = std::max(len, s.size());
  std::vector<char> raw(values.size() * len, '\0');
  for (size_t i = 0; i < values.size(); ++i) std::copy(values[i].begin(), values[i].end(), raw.begin() + i * len);
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), len);
  H5Tset_strpad(type.get(), H5T_STR_NULLPAD);
  hsize_t n = values.size();
  Handle space(H5Screate_simple(1, &n, nullptr), H5Sclose);
  Handle dcpl = untimed_create_plist(H5P_DATASET_CREATE);
  Handle d(check_write_id(H5Dcreate2(m_file.get(), normalise(dataset).c_str(), type.get(), space.get(), H5P_DEFAULT,
                               dcpl.get(), H5P_DEFAULT),
                    "H5Dcreate2", m_path, dataset),
           H5Dclose);
  if (n > 0) check_write(H5Dwrite(d.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, raw.data()), "H5Dwrite", m_path, dataset);
}

bool File::has_attribute(const std::string& object, const std::string& name) const {
  if (!exists(object)) return false;
  return H5Aexists_by_name(m_file.get(), normalise(object).c_str(), name.c_str(), H5P_DEFAULT) > 0;
}

namespace {
void write_attribute_raw(const File& f, Handle obj, const std::string& object, const std::string& name, hid_t type,
                         const void* value) {
  errno = 0;
  if (H5Aexists(obj.get(), name.c_str()) > 0) H5Adelete(obj.get(), name.c_str());
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle a(check_write_id(H5Acreate2(obj.get(), name.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT), "H5Acreate2",
                    f.path(), object + "@" + name),
           H5Aclose);
  check_write(H5Awrite(a.get(), type, value), "H5Awrite", f.path(), object + "@" + name);
}
}  // namespace

void File::write_attribute(const std::string& object, const std::string& name, const std::string& value) {
  if (!exists(object)) create_group(object);
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), std::max<size_t>(1, value.size()));
  H5Tset_strpad(type.get(), H5T_STR_NULLPAD);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  std::string padded = value.empty() ? std::string(1, '\0') : value;
  write_attribute_raw(*this, open_object(object), object, name, type.get(), padded.data());
}

void File::write_attribute(const std::string& object, const std::string& name, double value) {
  if (!exists(object)) create_group(object);
  write_attribute_raw(*this, open_object(object), object, name, H5T_NATIVE_DOUBLE, &value);
}

void File::write_attribute(const std::string& object, const std::string& name, int64_t value) {
  if (!exists(object)) create_group(object);
  write_attribute_raw(*this, open_object(object), object, name, H5T_NATIVE_INT64, &value);
}

namespace {
Handle open_attribute(const File& f, const std::string& object, const std::string& name) {
  if (!f.has_attribute(object, name)) {
    throw DataError("missing attribute '" + name + "' on '" + object + "'", f.path(),
                    "the file was not written by this version of v1sysid or is incomplete");
  }
  hid_t a = H5Aopen_by_name(f.id(), object.empty() ? "/" : object.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT);
  return Handle(check_id(a, "H5Aopen_by_name", f.path(), object + "@" + name), H5Aclose);
}
}  // namespace

std::string File::read_attribute_string(const std::string& object, const std::string& name) const {
  Handle a = open_attribute(*this, normalise(object), name);
  Handle type(H5Aget_type(a.get()), H5Tclose);
  if (H5Tget_class(type.get()) != H5T_STRING) {
    throw DataError("attribute '" + name + "' on '" + object + "' is not a string", m_path, "re-create the file");
  }
  if (H5Tis_variable_str(type.get()) > 0) {
    char* raw = nullptr;
    Handle mem(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mem.get(), H5T_VARIABLE);
    H5Tset_cset(mem.get(), H5Tget_cset(type.get()));
    check(H5Aread(a.get(), mem.get(), &raw), "H5Aread", m_path, object + "@" + name);
    std::string s = raw ? raw : "";
    H5free_memory(raw);
    return s;
  }
  size_t len = H5Tget_size(type.get());
  std::string s(len, '\0');
  check(H5Aread(a.get(), type.get(), s.data()), "H5Aread", m_path, object + "@" + name);
  s.erase(s.find_last_not_of('\0') + 1);
  return s;
}

double File::read_attribute_double(const std::string& object, const std::string& name) const {
  Handle a = open_attribute(*this, normalise(object), name);
  double v = 0;
  check(H5Aread(a.get(), H5T_NATIVE_DOUBLE, &v), "H5Aread", m_path, object + "@" + name);
  return v;
}

int64_t File::read_attribute_int(const std::string& object, const std::string& name) const {
  Handle a = open_attribute(*this, normalise(object), name);
  int64_t v = 0;
  check(H5Aread(a.get(), H5T_NATIVE_INT64, &v), "H5Aread", m_path, object + "@" + name);
  return v;
}

#define V1SYSID_H5_INSTANTIATE(T)                                                                \
  template std::vector<T> File::read<T>(const std::string&, Shape*) const;                       \
  template T File::read_scalar<T>(const std::string&) const;                                     \
  template void File::write<T>(const std::string&, const T*, const Shape&, hsize_t);
V1SYSID_H5_INSTANTIATE(float)
V1SYSID_H5_INSTANTIATE(double)
V1SYSID_H5_INSTANTIATE(int8_t)
V1SYSID_H5_INSTANTIATE(uint8_t)
V1SYSID_H5_INSTANTIATE(int16_t)
V1SYSID_H5_INSTANTIATE(uint16_t)
V1SYSID_H5_INSTANTIATE(int32_t)
V1SYSID_H5_INSTANTIATE(uint32_t)
V1SYSID_H5_INSTANTIATE(int64_t)
V1SYSID_H5_INSTANTIATE(uint64_t)
#undef V1SYSID_H5_INSTANTIATE

}  // namespace v1sysid::h5
