// NumPy .npy files (format versions 1.0, 2.0 and 3.0), read from disk or from a byte buffer (zip entries),
// and written for tests and for the simulator's FileTree output.
//
// The element type comes from the header's 'descr': booleans (|b1), signed and unsigned integers of 1, 2, 4
// and 8 bytes, float32/float64, numpy unicode ('<U7': UTF-32, 4 bytes per character, NUL-padded) and byte
// strings ('|S7'). 0-d arrays (shape ()) hold one element. Pickled object arrays ('|O'), structured dtypes
// and Fortran-ordered arrays are refused with a DataError; a wrong magic, an unparsable header or truncated
// data throw IoError. Nothing here ever writes next to a file it reads.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace v1sysid::npy {

enum class Kind : uint8_t { boolean, signed_int, unsigned_int, floating, unicode, bytes };

struct Array {
  Kind kind = Kind::floating;
  size_t item_size = 4;         // bytes per element; unicode: 4 * characters, bytes: characters
  std::vector<int64_t> shape;   // empty for a 0-d array
  std::vector<uint8_t> data;    // element bytes, little-endian, row-major (converted on read if stored '>')
  std::string where;            // file (or "archive.zip:entry") it was read from, for error messages

  // Number of elements: the product of shape, 1 for a 0-d array.
  int64_t size() const;
  // The numpy dtype string of the elements, e.g. "<f4", "|u1", "<U7", "|S5".
  std::string descr() const;
  bool is_numeric() const { return kind != Kind::unicode && kind != Kind::bytes; }
  bool is_string() const { return !is_numeric(); }

  // Numeric values converted to T (float, double or int64_t). Strings throw DataError naming `where`;
  // int64_t from floating point requires whole, finite numbers.
  template <class T>
  std::vector<T> values() const;
  // String elements ('U' decoded from UTF-32 to UTF-8, 'S' as bytes), trailing NULs removed.
  std::vector<std::string> strings() const;
};

// Parses a whole .npy image held in memory. `where` names it in error messages.
Array parse(const uint8_t* bytes, size_t n_bytes, const std::string& where);
// Reads a .npy file. A missing or unreadable file throws IoError.
Array read(const std::string& path);

// Arrays to write. Shapes are checked against the number of values (ShapeError otherwise).
Array from_float32(const std::vector<float>& values, const std::vector<int64_t>& shape);
Array from_float64(const std::vector<double>& values, const std::vector<int64_t>& shape);
Array from_int64(const std::vector<int64_t>& values, const std::vector<int64_t>& shape);
Array from_uint8(const std::vector<uint8_t>& values, const std::vector<int64_t>& shape);
// numpy unicode ('<U<max length in code points>'), as np.save writes str arrays. Input is UTF-8.
Array from_unicode(const std::vector<std::string>& values, const std::vector<int64_t>& shape);
// numpy byte strings ('|S<max length>').
Array from_bytes(const std::vector<std::string>& values, const std::vector<int64_t>& shape);

// The complete .npy image of an array (version 1.0 header, or 2.0 when the header needs it), padded so
// the data starts at a multiple of 64 bytes as numpy does.
std::vector<uint8_t> serialize(const Array& array);
// Writes an array to `path` (write_file_atomically: through "<path>.partial-<pid>" and a rename, so no
// half-written file remains). Not fsynced: the FileTree writer syncs the folder once when it commits it.
void save(const std::string& path, const Array& array);

}  // namespace v1sysid::npy
