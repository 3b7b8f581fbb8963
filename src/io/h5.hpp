// RAII wrappers over the HDF5 C API. Every call is checked; a failure throws IoError/DataError naming the
// file, the object inside it and a likely fix. HDF5's own error stack printing is silenced once, globally.
#pragma once

#include <hdf5.h>
#include <mpi.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace v1sysid::h5 {

using Shape = std::vector<hsize_t>;

// Owns one hid_t and closes it with the matching H5?close.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) : m_id(id), m_close(closer) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& o) noexcept : m_id(std::exchange(o.m_id, H5I_INVALID_HID)), m_close(o.m_close) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      m_id = std::exchange(o.m_id, H5I_INVALID_HID);
      m_close = o.m_close;
    }
    return *this;
  }
  ~Handle() { reset(); }
  void reset() {
    if (m_id >= 0 && m_close) m_close(m_id);
    m_id = H5I_INVALID_HID;
  }
  // Gives up ownership without closing (the caller closes it and checks the result).
  hid_t release() { return std::exchange(m_id, H5I_INVALID_HID); }
  hid_t get() const { return m_id; }
  explicit operator bool() const { return m_id >= 0; }

 private:
  hid_t m_id = H5I_INVALID_HID;
  Closer m_close = nullptr;
};

// Scalar element types that read<T>/write<T> accept; HDF5 converts from the stored numeric type.
template <class T>
hid_t native_type();

class File {
 public:
  // Opens an existing file read-only. Missing, truncated or non-HDF5 files throw IoError.
  static File open(const std::string& path);
  // Opens an existing file for reading and writing (serial).
  static File open_rw(const std::string& path);
  // Opens an existing file collectively with MPI-IO for reading and writing.
  static File open_parallel(const std::string& path, MPI_Comm comm);
  // Creates a new file. It is written under "<path>.partial" and only renamed to <path> by commit(), so an
  // interrupted command never leaves a half-written result under the final name. An existing <path> is an
  // error unless force is set.
  static File create(const std::string& path, bool force);

  File() = default;
  File(File&&) = default;
  File& operator=(File&&) = default;
  ~File();

  // Flushes, closes, fsyncs and renames a file made by create() to its final name. Any failure (a full disk
  // included) throws, and the partial file is removed.
  void commit();
  void flush();
  // Closes the file and checks the result (HDF5 writes its cached metadata here). A create()d file that was not
  // committed is removed.
  void close();

  const std::string& path() const { return m_path; }
  hid_t id() const { return m_file.get(); }

  bool exists(const std::string& object) const;  // any depth: "a/b/c"; false when a parent is missing
  bool is_group(const std::string& object) const;
  void create_group(const std::string& group);   // creates missing parents too
  std::vector<std::string> list(const std::string& group) const;  // names of the group's members

  Shape shape(const std::string& dataset) const;
  bool is_string(const std::string& dataset) const;

  // Reads a numeric dataset of any stored integer or float type, converting to T. Strings throw DataError.
  template <class T>
  std::vector<T> read(const std::string& dataset, Shape* shape = nullptr) const;
  // Reads a scalar (0-d) or one-element numeric dataset.
  template <class T>
  T read_scalar(const std::string& dataset) const;
  // Reads fixed- or variable-length string datasets (h5py's 'S' arrays and str arrays), trailing NULs cut.
  std::vector<std::string> read_strings(const std::string& dataset, Shape* shape = nullptr) const;

  // Writes a new dataset (parents created); shape {} writes a scalar. chunk_rows > 0 makes it chunked and
  // gzip-compressed with chunks of that many rows.
  template <class T>
  void write(const std::string& dataset, const T* data, const Shape& shape, hsize_t chunk_rows = 0);
  template <class T>
  void write(const std::string& dataset, const std::vector<T>& data, const Shape& shape,
             hsize_t chunk_rows = 0) {
    write(dataset, data.data(), shape, chunk_rows);
  }
  template <class T>
  void write_scalar(const std::string& dataset, T value) { write(dataset, &value, Shape{}); }
  // Writes strings as one fixed-length, NUL-padded ASCII type, as h5py writes numpy 'S' arrays.
  void write_strings(const std::string& dataset, const std::vector<std::string>& values);

  // Attributes on a group or dataset ("/" for the root).
  bool has_attribute(const std::string& object, const std::string& name) const;
  void write_attribute(const std::string& object, const std::string& name, const std::string& value);
  void write_attribute(const std::string& object, const std::string& name, double value);
  void write_attribute(const std::string& object, const std::string& name, int64_t value);
  std::string read_attribute_string(const std::string& object, const std::string& name) const;
  double read_attribute_double(const std::string& object, const std::string& name) const;
  int64_t read_attribute_int(const std::string& object, const std::string& name) const;

  // Raw access for the parallel results writer.
  Handle open_dataset(const std::string& dataset) const;

 private:
  File(Handle h, std::string path, std::string partial)
      : m_file(std::move(h)), m_path(std::move(path)), m_partial(std::move(partial)) {}
  Handle open_object(const std::string& object) const;
  void ensure_parents(const std::string& object);
  void abandon_partial();
  Handle m_file;
  std::string m_path;     // final name
  std::string m_partial;  // non-empty while a create()d file has not been committed
};

// Throws IoError when an HDF5 call failed (negative return); `what` names the call.
void check(herr_t status, const std::string& what, const std::string& file, const std::string& object);
hid_t check_id(hid_t id, const std::string& what, const std::string& file, const std::string& object);
// The same for calls that write (create, write, flush, close). A failure caused by the machine, a full disk or
// quota (errno, or less than kLowSpaceBytes free on the file's file system) or an I/O error, throws
// EnvironmentError ("disk full while writing ..."); any other failure an IoError that does not blame the file.
inline constexpr unsigned long long kLowSpaceBytes = 1ull << 20;
void check_write(herr_t status, const std::string& what, const std::string& file, const std::string& object);
hid_t check_write_id(hid_t id, const std::string& what, const std::string& file, const std::string& object);

// A new creation property list of `plist_class` (H5P_FILE_CREATE, H5P_GROUP_CREATE, H5P_DATASET_CREATE) that
// does not stamp object headers with their creation time. HDF5 records it by default, so two runs with the
// same config and seed would write files that differ in a few bytes; without the stamps, equal results are
// byte-identical files that `cmp` or a checksum can compare. Every file, group and dataset v1sysid creates
// uses one.
Handle untimed_create_plist(hid_t plist_class);

// Silences HDF5's default error printing; called once by the command line and test mains.
void silence_library_errors();

}  // namespace v1sysid::h5
