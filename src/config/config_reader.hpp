// Strict YAML decoding into plain config structs (style.md §2.5).
//
// Each config struct has defaults in its declaration and a `decode(ConfigReader&)` that names every key it
// accepts. ConfigReader records which keys were read; finish() rejects the rest, so a typo in a sweep file
// is an error with its position instead of a silently ignored setting. Every error reads
//   <file>:<line>:<col> <key.path>: expected <what>, got "<value>"
#pragma once

#include "core/error.hpp"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <limits>
#include <sstream>
#include <memory>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

namespace v1sysid {

// Parses a YAML file; syntax errors become ConfigError with file:line:col. An empty file is an empty map.
YAML::Node load_yaml_file(const std::string& path);
// Parses YAML text (configs stored as HDF5 attributes); `origin` names it in errors.
YAML::Node load_yaml_string(const std::string& text, const std::string& origin);

class ConfigReader {
 public:
  // `node` must be a mapping (or null, treated as empty). `path` is the dotted key path of `node`.
  ConfigReader(YAML::Node node, std::string file, std::string path = "");

  bool has(const std::string& key) const;

  // Reads an optional key into `value`, keeping the default when absent.
  template <class T>
  ConfigReader& get(const std::string& key, T& value);
  // Reads a key that must be present.
  template <class T>
  ConfigReader& require(const std::string& key, T& value);
  // Optional numeric key with an inclusive range check.
  template <class T>
  ConfigReader& get_in_range(const std::string& key, T& value, T lo, T hi);
  // Optional string key restricted to a set of names.
  ConfigReader& get_choice(const std::string& key, std::string& value, const std::vector<std::string>& choices);

  // A nested mapping; absent keys give an empty reader (so nested defaults apply).
  ConfigReader child(const std::string& key);
  // The raw node of a key (marked as read), for structures decoded elsewhere (e.g. sweep distributions).
  YAML::Node raw(const std::string& key);

  // Throws ConfigError for any key of this mapping that no get/require/child/raw asked for.
  void finish() const;

  [[noreturn]] void fail(const std::string& key, const std::string& message) const;
  [[noreturn]] void fail_here(const std::string& message) const;  // error about the mapping itself

  const std::string& file() const { return m_file; }
  const YAML::Node& node() const { return m_node; }  // to iterate user-named keys (then mark them via raw/get)
  std::string key_path(const std::string& key) const { return m_path.empty() ? key : m_path + "." + key; }

 private:
  std::string position(const YAML::Node& node) const;
  template <class T>
  T convert(const std::string& key, const YAML::Node& node) const;
  YAML::Node m_node;
  std::string m_file;
  std::string m_path;
  std::shared_ptr<std::set<std::string>> m_seen;
};

// ---- implementation of the templates ------------------------------------------------------------------

namespace detail {
template <class T> struct is_vector : std::false_type {};
template <class T> struct is_vector<std::vector<T>> : std::true_type {};
template <class T> const char* type_name() {
  if constexpr (std::is_same_v<T, bool>) return "true or false";
  else if constexpr (std::is_integral_v<T>) return std::is_unsigned_v<T> ? "a non-negative integer" : "an integer";
  else if constexpr (std::is_floating_point_v<T>) return "a number";
  else return "a string";
}
}  // namespace detail

template <class T>
T ConfigReader::convert(const std::string& key, const YAML::Node& node) const {
  if constexpr (detail::is_vector<T>::value) {
    using E = typename T::value_type;
    if (!node.IsSequence()) fail(key, std::string("expected a list of ") + detail::type_name<E>());
    T out;
    for (size_t i = 0; i < node.size(); ++i) out.push_back(convert<E>(key + "[" + std::to_string(i) + "]", node[i]));
    return out;
  } else {
    if (!node.IsScalar()) fail(key, std::string("expected ") + detail::type_name<T>() + ", got a " +
                                        (node.IsSequence() ? "list" : node.IsMap() ? "mapping" : "null value"));
    if constexpr (std::is_same_v<T, std::string>) {
      return node.Scalar();
    } else {
      T v{};
      bool ok = YAML::convert<T>::decode(node, v);
      if constexpr (std::is_floating_point_v<T>) ok = ok && std::isfinite(v);
      if (!ok) fail(key, std::string("expected ") + detail::type_name<T>() + ", got \"" + node.Scalar() + "\"");
      return v;
    }
  }
}

template <class T>
ConfigReader& ConfigReader::get(const std::string& key, T& value) {
  m_seen->insert(key);
  if (!has(key)) return *this;
  YAML::Node n = m_node[key];
  if (n.IsNull()) fail(key, std::string("expected ") + detail::type_name<T>() + ", got an empty value");
  value = convert<T>(key, n);
  return *this;
}

template <class T>
ConfigReader& ConfigReader::require(const std::string& key, T& value) {
  if (!has(key)) fail_here("missing required key '" + key_path(key) + "'");
  return get(key, value);
}

template <class T>
ConfigReader& ConfigReader::get_in_range(const std::string& key, T& value, T lo, T hi) {
  get(key, value);
  if (has(key) && (value < lo || value > hi)) {
    auto fmt = [](T x) {
      if (x == std::numeric_limits<T>::max()) return std::string("inf");
      std::ostringstream s;
      s << x;
      return s.str();
    };
    fail(key, "expected a value in [" + fmt(lo) + ", " + fmt(hi) + "], got \"" + m_node[key].Scalar() + "\"");
  }
  return *this;
}

}  // namespace v1sysid
