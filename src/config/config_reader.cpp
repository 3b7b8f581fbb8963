#include "config/config_reader.hpp"

#include <filesystem>
#include <map>
#include <sstream>

namespace v1sysid {

namespace {
std::string mark_text(const std::string& file, const YAML::Mark& m) {
  if (m.is_null()) return file;
  return file + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
}
// yaml-cpp keeps every pair of a mapping but lookups find the first, so a repeated key would silently
// drop the later value (the one a user who appended it meant): refuse repeats anywhere in the document.
void reject_duplicate_keys(const YAML::Node& node, const std::string& origin, const std::string& path) {
  if (node.IsSequence()) {
    for (size_t i = 0; i < node.size(); ++i)
      reject_duplicate_keys(node[i], origin, path + "[" + std::to_string(i) + "]");
    return;
  }
  if (!node.IsMap()) return;
  std::map<std::string, YAML::Mark> first;
  for (auto it = node.begin(); it != node.end(); ++it) {
    if (!it->first.IsScalar()) continue;
    const std::string key = it->first.Scalar();
    const std::string key_path = path.empty() ? key : path + "." + key;
    const auto [seen, inserted] = first.emplace(key, it->first.Mark());
    if (!inserted) {
      throw ConfigError(mark_text(origin, it->first.Mark()) + " " + key_path + ": duplicate key (first given at " +
                            mark_text(origin, seen->second) + ")",
                        "", "keep one of them: YAML allows each key once per mapping");
    }
    reject_duplicate_keys(it->second, origin, key_path);
  }
}
}  // namespace

YAML::Node load_yaml_file(const std::string& path) {
  if (!std::filesystem::exists(path)) throw ConfigError("config file not found", path, "check the path");
  try {
    YAML::Node n = YAML::LoadFile(path);
    if (n.IsNull()) return YAML::Node(YAML::NodeType::Map);
    reject_duplicate_keys(n, path, "");
    return n;
  } catch (const YAML::ParserException& e) {
    throw ConfigError(mark_text(path, e.mark) + " malformed YAML: " + e.msg, "", "fix the YAML syntax at that position");
  } catch (const YAML::BadFile&) {
    throw ConfigError("cannot read config file", path, "check permissions");
  }
}

YAML::Node load_yaml_string(const std::string& text, const std::string& origin) {
  try {
    YAML::Node n = YAML::Load(text);
    if (n.IsNull()) return YAML::Node(YAML::NodeType::Map);
    reject_duplicate_keys(n, origin, "");
    return n;
  } catch (const YAML::ParserException& e) {
    throw ConfigError(mark_text(origin, e.mark) + " malformed YAML: " + e.msg, "", "the stored config is corrupt");
  }
}

ConfigReader::ConfigReader(YAML::Node node, std::string file, std::string path)
    : m_node(std::move(node)), m_file(std::move(file)), m_path(std::move(path)),
      m_seen(std::make_shared<std::set<std::string>>()) {
  if (!m_node.IsDefined() || m_node.IsNull()) m_node = YAML::Node(YAML::NodeType::Map);
  if (!m_node.IsMap()) fail_here("expected a mapping of keys to values");
}

std::string ConfigReader::position(const YAML::Node& node) const { return mark_text(m_file, node.Mark()); }

bool ConfigReader::has(const std::string& key) const { return m_node[key].IsDefined(); }

ConfigReader& ConfigReader::get_choice(const std::string& key, std::string& value,
                                       const std::vector<std::string>& choices) {
  get(key, value);
  for (const auto& c : choices) {
    if (c == value) return *this;
  }
  std::string list;
  for (const auto& c : choices) list += (list.empty() ? "" : ", ") + c;
  fail(key, "expected one of {" + list + "}, got \"" + value + "\"");
}

ConfigReader ConfigReader::child(const std::string& key) {
  m_seen->insert(key);
  YAML::Node n = has(key) ? m_node[key] : YAML::Node(YAML::NodeType::Map);
  if (n.IsDefined() && !n.IsNull() && !n.IsMap()) fail(key, "expected a mapping of keys to values");
  return ConfigReader(n, m_file, key_path(key));
}

YAML::Node ConfigReader::raw(const std::string& key) {
  m_seen->insert(key);
  return m_node[key];
}

void ConfigReader::finish() const {
  for (auto it = m_node.begin(); it != m_node.end(); ++it) {
    const std::string key = it->first.as<std::string>();
    if (!m_seen->count(key)) {
      std::string known;
      for (const auto& k : *m_seen) known += (known.empty() ? "" : ", ") + k;
      throw ConfigError(position(it->first) + " " + key_path(key) + ": unknown key", "",
                        "remove it or fix the spelling (known keys here: " + known + ")");
    }
  }
}

void ConfigReader::fail(const std::string& key, const std::string& message) const {
  YAML::Node n = m_node[key];
  std::string where = n.IsDefined() ? position(n) : position(m_node);
  throw ConfigError(where + " " + key_path(key) + ": " + message, "", "fix the value in the config file");
}

void ConfigReader::fail_here(const std::string& message) const {
  throw ConfigError(position(m_node) + (m_path.empty() ? "" : " " + m_path) + ": " + message, "",
                    "fix the config file");
}

}  // namespace v1sysid
