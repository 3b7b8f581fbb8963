#include "sweep/checksum.hpp"

#include "core/error.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <vector>

namespace v1sysid {

namespace fs = std::filesystem;

namespace {
void hash_bytes(uint64_t& h, const char* data, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    h ^= static_cast<unsigned char>(data[i]);
    h *= 0x100000001b3ull;
  }
}
void hash_file(uint64_t& h, const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw IoError("cannot read file", p.string(), "check permissions");
  std::vector<char> buf(1 << 20);
  while (f) {
    f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    hash_bytes(h, buf.data(), static_cast<size_t>(f.gcount()));
  }
}
}  // namespace

std::string dataset_checksum(const std::string& path) {
  if (!fs::exists(path)) throw IoError("dataset not found", path, "check --data");
  uint64_t h = 0xcbf29ce484222325ull;
  if (fs::is_directory(path)) {
    std::vector<fs::path> files;
    for (const auto& e : fs::recursive_directory_iterator(path)) {
      if (e.is_regular_file()) files.push_back(fs::relative(e.path(), path));
    }
    std::sort(files.begin(), files.end());
    for (const auto& rel : files) {
      std::string name = rel.generic_string();
      hash_bytes(h, name.data(), name.size() + 1);
      hash_file(h, fs::path(path) / rel);
    }
  } else {
    hash_file(h, path);
  }
  char out[17];
  std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(h));
  return out;
}

}  // namespace v1sysid
