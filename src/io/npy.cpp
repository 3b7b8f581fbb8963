// .npy reading and writing. The header is a Python dict literal such as
//   {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
// which is parsed by a small tokenizer below (strings, True/False/None, integers, tuples, lists).
#include "io/npy.hpp"

#include "core/error.hpp"
#include "io/output_file.hpp"

#include <unistd.h>

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <type_traits>

namespace v1sysid::npy {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the .npy reader assumes a little-endian host");

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicSize = 6;

const char* kHeaderFix = "the file is not a valid .npy file; re-save it with numpy.save";

[[noreturn]] void header_error(const std::string& what, const std::string& where) {
  throw IoError("bad .npy header: " + what, where, kHeaderFix);
}

// ---- header dict parsing ----------------------------------------------------------------------------

struct Value {
  enum Type { string, boolean, none, integer, tuple } type = none;
  std::string text;
  bool flag = false;
  int64_t number = 0;
  std::vector<int64_t> items;  // tuple of integers
  bool is_list = false;        // a '[...]' value (structured dtype descr)
};

class HeaderParser {
 public:
  HeaderParser(const std::string& text, const std::string& where) : m_s(text), m_where(where) {}

  std::map<std::string, Value> dict() {
    std::map<std::string, Value> out;
    skip_space();
    expect('{');
    while (true) {
      skip_space();
      if (peek() == '}') {
        ++m_pos;
        break;
      }
      std::string key = parse_string();
      skip_space();
      expect(':');
      skip_space();
      out[key] = parse_value();
      skip_space();
      if (peek() == ',') {
        ++m_pos;
        continue;
      }
      skip_space();
      expect('}');
      break;
    }
    return out;
  }

 private:
  char peek() const { return m_pos < m_s.size() ? m_s[m_pos] : '\0'; }
  void skip_space() {
    while (m_pos < m_s.size() && std::isspace(static_cast<unsigned char>(m_s[m_pos]))) ++m_pos;
  }
  void expect(char c) {
    if (peek() != c) header_error(std::string("expected '") + c + "' at offset " + std::to_string(m_pos), m_where);
    ++m_pos;
  }
  std::string parse_string() {
    char quote = peek();
    if (quote != '\'' && quote != '"') header_error("expected a quoted string at offset " + std::to_string(m_pos), m_where);
    ++m_pos;
    std::string s;
    while (m_pos < m_s.size() && m_s[m_pos] != quote) s += m_s[m_pos++];
    if (m_pos >= m_s.size()) header_error("unterminated string", m_where);
    ++m_pos;
    return s;
  }
  int64_t parse_int() {
    size_t start = m_pos;
    if (peek() == '-') ++m_pos;
    while (std::isdigit(static_cast<unsigned char>(peek()))) ++m_pos;
    if (start == m_pos) header_error("expected an integer at offset " + std::to_string(m_pos), m_where);
    int64_t v = std::stoll(m_s.substr(start, m_pos - start));
    if (peek() == 'L') ++m_pos;  // headers written by Python 2 numpy: (3L, 4L)
    return v;
  }
  // Skips a balanced [...] (structured dtypes are refused later; only their presence matters).
  void skip_list() {
    int depth = 0;
    do {
      char c = peek();
      if (c == '\0') header_error("unterminated list", m_where);
      if (c == '[') ++depth;
      if (c == ']') --depth;
      if (c == '\'' || c == '"') {
        parse_string();
        continue;
      }
      ++m_pos;
    } while (depth > 0);
  }
  Value parse_value() {
    Value v;
    char c = peek();
    if (c == '\'' || c == '"') {
      v.type = Value::string;
      v.text = parse_string();
    } else if (c == '(') {
      ++m_pos;
      v.type = Value::tuple;
      while (true) {
        skip_space();
        if (peek() == ')') {
          ++m_pos;
          break;
        }
        v.items.push_back(parse_int());
        skip_space();
        if (peek() == ',') ++m_pos;
      }
    } else if (c == '[') {
      v.is_list = true;
      skip_list();
    } else if (m_s.compare(m_pos, 4, "True") == 0) {
      v.type = Value::boolean;
      v.flag = true;
      m_pos += 4;
    } else if (m_s.compare(m_pos, 5, "False") == 0) {
      v.type = Value::boolean;
      m_pos += 5;
    } else if (m_s.compare(m_pos, 4, "None") == 0) {
      m_pos += 4;
    } else {
      v.type = Value::integer;
      v.number = parse_int();
    }
    return v;
  }

  const std::string& m_s;
  const std::string& m_where;
  size_t m_pos = 0;
};

struct DType {
  Kind kind;
  size_t item_size;
  bool big_endian;
};

DType parse_descr(const std::string& descr, const std::string& where) {
  const std::string fix = "re-save it with a plain dtype: strings as np.array(list_of_str) ('<U'), numbers as "
                          "np.asarray(x, dtype=np.float32) or np.int64";
  if (descr.size() < 2) header_error("descr '" + descr + "' is too short", where);
  char order = descr[0];
  size_t p = 1;
  if (order != '<' && order != '>' && order != '|' && order != '=') {
    order = '=';
    p = 0;
  }
  char code = descr[p];
  std::string count_text = descr.substr(p + 1);
  if (code == 'O') {
    throw DataError("the array has dtype '" + descr + "' (pickled Python objects), which v1sysid never unpickles",
                    where, fix);
  }
  size_t count = 0;
  for (char c : count_text) {
    if (!std::isdigit(static_cast<unsigned char>(c))) {
      throw DataError("unsupported .npy dtype '" + descr + "'", where, fix);
    }
    count = count * 10 + static_cast<size_t>(c - '0');
  }
  DType t{Kind::floating, count, order == '>'};
  switch (code) {
    case 'b': t.kind = Kind::boolean; break;
    case 'i': t.kind = Kind::signed_int; break;
    case 'u': t.kind = Kind::unsigned_int; break;
    case 'f': t.kind = Kind::floating; break;
    case 'U': t.kind = Kind::unicode; t.item_size = 4 * count; break;
    case 'S': t.kind = Kind::bytes; break;
    default: throw DataError("unsupported .npy dtype '" + descr + "'", where, fix);
  }
  bool size_ok = false;
  switch (t.kind) {
    case Kind::boolean: size_ok = count == 1; break;
    case Kind::signed_int:
    case Kind::unsigned_int: size_ok = count == 1 || count == 2 || count == 4 || count == 8; break;
    case Kind::floating: size_ok = count == 4 || count == 8; break;
    case Kind::unicode:
    case Kind::bytes: size_ok = true; break;  // a 0-character string type ('<U0') is legal in numpy
  }
  if (!size_ok) throw DataError("unsupported .npy dtype '" + descr + "'", where, fix);
  return t;
}

uint32_t read_le(const uint8_t* p, int bytes) {
  uint32_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

void swap_elements(std::vector<uint8_t>& data, size_t element_bytes) {
  for (size_t off = 0; off + element_bytes <= data.size(); off += element_bytes) {
    for (size_t i = 0; i < element_bytes / 2; ++i) std::swap(data[off + i], data[off + element_bytes - 1 - i]);
  }
}

template <class S>
S load(const uint8_t* p) {
  S v;
  std::memcpy(&v, p, sizeof(S));
  return v;
}

// Element i as double (exact for every integer up to 2^53 and for both float widths).
double element_as_double(const Array& a, int64_t i) {
  const uint8_t* p = a.data.data() + static_cast<size_t>(i) * a.item_size;
  switch (a.kind) {
    case Kind::boolean: return p[0] ? 1.0 : 0.0;
    case Kind::floating: return a.item_size == 4 ? static_cast<double>(load<float>(p)) : load<double>(p);
    case Kind::signed_int:
      switch (a.item_size) {
        case 1: return load<int8_t>(p);
        case 2: return load<int16_t>(p);
        case 4: return load<int32_t>(p);
        default: return static_cast<double>(load<int64_t>(p));
      }
    case Kind::unsigned_int:
      switch (a.item_size) {
        case 1: return p[0];
        case 2: return load<uint16_t>(p);
        case 4: return load<uint32_t>(p);
        default: return static_cast<double>(load<uint64_t>(p));
      }
    default: return 0.0;
  }
}

int64_t element_as_int64(const Array& a, int64_t i) {
  const uint8_t* p = a.data.data() + static_cast<size_t>(i) * a.item_size;
  if (a.kind == Kind::signed_int && a.item_size == 8) return load<int64_t>(p);
  if (a.kind == Kind::unsigned_int && a.item_size == 8) {
    uint64_t u = load<uint64_t>(p);
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      throw DataError("value " + std::to_string(u) + " at element " + std::to_string(i) + " does not fit int64",
                      a.where, "store ids below 2^63");
    }
    return static_cast<int64_t>(u);
  }
  double v = element_as_double(a, i);
  if (a.kind == Kind::floating && (!std::isfinite(v) || v != std::floor(v) || std::fabs(v) > 9.0e15)) {
    throw DataError("element " + std::to_string(i) + " is " + std::to_string(v) + ", not a whole number", a.where,
                    "store identifiers as integers");
  }
  return static_cast<int64_t>(v);
}

void append_utf8(std::string& out, uint32_t cp, const std::string& where) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x110000) {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    throw DataError("invalid unicode code point " + std::to_string(cp) + " in a '<U' string", where,
                    "re-save the strings with numpy");
  }
}

std::vector<uint32_t> decode_utf8(const std::string& s) {
  std::vector<uint32_t> cps;
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    int extra = c < 0x80 ? 0 : c < 0xE0 ? 1 : c < 0xF0 ? 2 : 3;
    uint32_t cp = extra == 0 ? c : extra == 1 ? (c & 0x1F) : extra == 2 ? (c & 0x0F) : (c & 0x07);
    for (int k = 1; k <= extra && i + static_cast<size_t>(k) < s.size(); ++k) {
      cp = (cp << 6) | (static_cast<unsigned char>(s[i + static_cast<size_t>(k)]) & 0x3F);
    }
    cps.push_back(cp);
    i += static_cast<size_t>(extra) + 1;
  }
  return cps;
}

int64_t product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

void check_shape(size_t n_values, const std::vector<int64_t>& shape) {
  for (auto d : shape) {
    if (d < 0) throw ShapeError("negative extent in an .npy shape", "npy writer", "pass non-negative extents");
  }
  if (static_cast<int64_t>(n_values) != product(shape)) {
    throw ShapeError(std::to_string(n_values) + " values do not fill an .npy shape of " +
                         std::to_string(product(shape)) + " elements",
                     "npy writer", "pass a shape whose product is the number of values");
  }
}

template <class S>
Array numeric_array(Kind kind, const std::vector<S>& values, const std::vector<int64_t>& shape) {
  check_shape(values.size(), shape);
  Array a;
  a.kind = kind;
  a.item_size = sizeof(S);
  a.shape = shape;
  a.data.resize(values.size() * sizeof(S));
  if (!values.empty()) std::memcpy(a.data.data(), values.data(), a.data.size());
  return a;
}

}  // namespace

int64_t Array::size() const { return product(shape); }

std::string Array::descr() const {
  switch (kind) {
    case Kind::boolean: return "|b1";
    case Kind::signed_int: return (item_size == 1 ? "|i" : "<i") + std::to_string(item_size);
    case Kind::unsigned_int: return (item_size == 1 ? "|u" : "<u") + std::to_string(item_size);
    case Kind::floating: return "<f" + std::to_string(item_size);
    case Kind::unicode: return "<U" + std::to_string(item_size / 4);
    case Kind::bytes: return "|S" + std::to_string(item_size);
  }
  return "?";
}

template <class T>
std::vector<T> Array::values() const {
  if (!is_numeric()) {
    throw DataError("expected numbers but the array holds strings (dtype '" + descr() + "')", where,
                    "store this field as a numeric array");
  }
  std::vector<T> out(static_cast<size_t>(size()));
  const int64_t n = size();
  if constexpr (std::is_same_v<T, int64_t>) {
    for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = element_as_int64(*this, i);
  } else {
    if (kind == Kind::floating && item_size == sizeof(T)) {  // same type: plain copy
      if (n > 0) std::memcpy(out.data(), data.data(), data.size());
    } else {
      for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = static_cast<T>(element_as_double(*this, i));
    }
  }
  return out;
}

template std::vector<float> Array::values<float>() const;
template std::vector<double> Array::values<double>() const;
template std::vector<int64_t> Array::values<int64_t>() const;

std::vector<std::string> Array::strings() const {
  if (!is_string()) {
    throw DataError("expected strings but the array holds numbers (dtype '" + descr() + "')", where,
                    "store this field as a str or bytes array");
  }
  const int64_t n = size();
  std::vector<std::string> out;
  out.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* p = data.data() + static_cast<size_t>(i) * item_size;
    std::string s;
    if (kind == Kind::bytes) {
      s.assign(reinterpret_cast<const char*>(p), item_size);
      s.erase(s.find_last_not_of('\0') + 1);
    } else {
      size_t chars = item_size / 4;
      while (chars > 0 && load<uint32_t>(p + 4 * (chars - 1)) == 0) --chars;  // NUL padding
      for (size_t k = 0; k < chars; ++k) append_utf8(s, load<uint32_t>(p + 4 * k), where);
    }
    out.push_back(std::move(s));
  }
  return out;
}

Array parse(const uint8_t* bytes, size_t n_bytes, const std::string& where) {
  if (n_bytes < kMagicSize + 2 || std::memcmp(bytes, kMagic, kMagicSize) != 0) {
    throw IoError("not an .npy file (the magic string \\x93NUMPY is missing)", where, kHeaderFix);
  }
  const int major = bytes[6];
  const int minor = bytes[7];
  size_t len_bytes = 0;
  if (major == 1) {
    len_bytes = 2;
  } else if (major == 2 || major == 3) {
    len_bytes = 4;
  } else {
    throw IoError(".npy format version " + std::to_string(major) + "." + std::to_string(minor) +
                      " is not supported (1.0, 2.0 and 3.0 are)",
                  where, "re-save the array with numpy.save");
  }
  const size_t prefix = kMagicSize + 2 + len_bytes;
  if (n_bytes < prefix) throw IoError("truncated .npy header", where, kHeaderFix);
  const size_t header_len = read_le(bytes + kMagicSize + 2, static_cast<int>(len_bytes));
  if (n_bytes < prefix + header_len) {
    throw IoError("truncated .npy header (" + std::to_string(n_bytes) + " bytes in the file, header needs " +
                      std::to_string(prefix + header_len) + ")",
                  where, kHeaderFix);
  }
  const std::string header(reinterpret_cast<const char*>(bytes + prefix), header_len);
  auto dict = HeaderParser(header, where).dict();

  auto descr_it = dict.find("descr");
  auto order_it = dict.find("fortran_order");
  auto shape_it = dict.find("shape");
  if (descr_it == dict.end() || order_it == dict.end() || shape_it == dict.end()) {
    header_error("the header lacks one of 'descr', 'fortran_order', 'shape'", where);
  }
  if (descr_it->second.is_list) {
    throw DataError("structured (record) .npy dtypes are not supported", where,
                    "save each field as its own plain array");
  }
  if (descr_it->second.type != Value::string) header_error("'descr' is not a string", where);
  if (order_it->second.type != Value::boolean) header_error("'fortran_order' is not True or False", where);
  if (shape_it->second.type != Value::tuple) header_error("'shape' is not a tuple", where);
  if (order_it->second.flag) {
    throw DataError("the array is stored in Fortran (column-major) order", where,
                    "re-save it in C order: np.save(path, np.ascontiguousarray(x))");
  }

  DType dtype = parse_descr(descr_it->second.text, where);
  Array a;
  a.kind = dtype.kind;
  a.item_size = dtype.item_size;
  a.shape = shape_it->second.items;
  a.where = where;
  const size_t available = n_bytes - prefix - header_len;
  // Multiply extents with an overflow guard: a corrupt header must not wrap around to a small size.
  size_t elements = 1;
  for (auto d : a.shape) {
    if (d < 0) header_error("negative extent in 'shape'", where);
    const auto extent = static_cast<size_t>(d);
    if (extent > 0 && elements > (std::numeric_limits<size_t>::max() / 2) / extent / std::max<size_t>(1, a.item_size)) {
      header_error("'shape' is implausibly large", where);
    }
    elements *= extent;
  }
  const size_t expected = elements * a.item_size;
  if (available < expected) {
    throw IoError("truncated .npy data: " + std::to_string(available) + " bytes where shape and dtype need " +
                      std::to_string(expected),
                  where, "the file was cut short (interrupted copy or download?); copy it again");
  }
  if (available > expected) {
    throw IoError(".npy data has " + std::to_string(available - expected) + " bytes more than shape and dtype "
                      "describe", where, kHeaderFix);
  }
  a.data.assign(bytes + prefix + header_len, bytes + prefix + header_len + expected);
  if (dtype.big_endian) {
    // Unicode elements are arrays of 4-byte code points; numbers swap as whole elements.
    size_t unit = a.kind == Kind::unicode ? 4 : a.kind == Kind::bytes ? 1 : a.item_size;
    if (unit > 1) swap_elements(a.data, unit);
  }
  return a;
}

Array read(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw IoError("file not found", path, "check the path");
  std::ifstream f(path, std::ios::binary);
  if (!f) throw IoError("cannot open file", path, "check permissions");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (f.bad()) throw IoError("read error", path, "check the storage");
  return parse(bytes.data(), bytes.size(), path);
}

Array from_float32(const std::vector<float>& values, const std::vector<int64_t>& shape) {
  return numeric_array(Kind::floating, values, shape);
}
Array from_float64(const std::vector<double>& values, const std::vector<int64_t>& shape) {
  return numeric_array(Kind::floating, values, shape);
}
Array from_int64(const std::vector<int64_t>& values, const std::vector<int64_t>& shape) {
  return numeric_array(Kind::signed_int, values, shape);
}
Array from_uint8(const std::vector<uint8_t>& values, const std::vector<int64_t>& shape) {
  return numeric_array(Kind::unsigned_int, values, shape);
}

Array from_unicode(const std::vector<std::string>& values, const std::vector<int64_t>& shape) {
  check_shape(values.size(), shape);
  std::vector<std::vector<uint32_t>> decoded;
  size_t chars = 1;  // numpy never writes '<U0' for non-empty arrays of empty strings either
  for (const auto& v : values) {
    decoded.push_back(decode_utf8(v));
    chars = std::max(chars, decoded.back().size());
  }
  Array a;
  a.kind = Kind::unicode;
  a.item_size = 4 * chars;
  a.shape = shape;
  a.data.assign(values.size() * a.item_size, 0);
  for (size_t i = 0; i < decoded.size(); ++i) {
    std::memcpy(a.data.data() + i * a.item_size, decoded[i].data(), decoded[i].size() * 4);
  }
  return a;
}

Array from_bytes(const std::vector<std::string>& values, const std::vector<int64_t>& shape) {
  check_shape(values.size(), shape);
  size_t chars = 1;
  for (const auto& v : values) chars = std::max(chars, v.size());
  Array a;
  a.kind = Kind::bytes;
  a.item_size = chars;
  a.shape = shape;
  a.data.assign(values.size() * chars, 0);
  for (size_t i = 0; i < values.size(); ++i) std::memcpy(a.data.data() + i * chars, values[i].data(), values[i].size());
  return a;
}

std::vector<uint8_t> serialize(const Array& array) {
  std::string shape = "(";
  for (size_t i = 0; i < array.shape.size(); ++i) {
    shape += std::to_string(array.shape[i]);
    shape += array.shape.size() == 1 ? "," : (i + 1 < array.shape.size() ? ", " : "");
  }
  shape += ")";
  std::string header = "{'descr': '" + array.descr() + "', 'fortran_order': False, 'shape': " + shape + ", }";
  // Pad with spaces and end in '\n' so that magic + version + length + header is a multiple of 64.
  size_t len_bytes = 2;
  int major = 1;
  if (header.size() + 1 + kMagicSize + 2 + 2 > 65535) {
    len_bytes = 4;
    major = 2;
  }
  const size_t prefix = kMagicSize + 2 + len_bytes;
  size_t total = prefix + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::vector<uint8_t> out(kMagic, kMagic + kMagicSize);
  out.push_back(static_cast<uint8_t>(major));
  out.push_back(0);
  for (size_t i = 0; i < len_bytes; ++i) out.push_back(static_cast<uint8_t>((header.size() >> (8 * i)) & 0xFF));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), array.data.begin(), array.data.end());
  return out;
}

void save(const std::string& path, const Array& array) {
  const auto bytes = serialize(array);
  write_file_atomically(path, bytes.data(), bytes.size(), Sync::none);
}

}  // namespace v1sysid::npy
