#include "data/digest.hpp"

#include "core/error.hpp"
#include "core/progress.hpp"

#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <tuple>
#include <vector>

namespace v1sysid {

namespace fs = std::filesystem;

namespace {

constexpr uintmax_t kProgressBytes = uintmax_t{256} << 20;

class Sha256 {
 public:
  Sha256() : m_ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free) {
    if (!m_ctx || EVP_DigestInit_ex(m_ctx.get(), EVP_sha256(), nullptr) != 1)
      throw Error("OpenSSL could not start a SHA-256 digest", "libcrypto", "check the OpenSSL installation");
  }
  void update(const void* data, size_t n) {
    if (EVP_DigestUpdate(m_ctx.get(), data, n) != 1)
      throw Error("OpenSSL SHA-256 update failed", "libcrypto", "check the OpenSSL installation");
  }
  std::string hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(m_ctx.get(), md, &len) != 1)
      throw Error("OpenSSL SHA-256 final failed", "libcrypto", "check the OpenSSL installation");
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < len; ++i) {
      out += digits[md[i] >> 4];
      out += digits[md[i] & 15];
    }
    return out;
  }

 private:
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> m_ctx;
};

std::string sha256_of_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw IoError("cannot read file", p.string(), "check that it exists and is readable");
  const uintmax_t size = fs::file_size(p);
  std::unique_ptr<Progress> progress;
  if (size >= kProgressBytes)
    progress = std::make_unique<Progress>("sha256 " + p.string() + " (MiB)", static_cast<long>(size >> 20), 10.0);
  Sha256 sha;
  std::vector<char> buf(size_t{4} << 20);
  uintmax_t done = 0;
  while (f) {
    f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto n = static_cast<size_t>(f.gcount());
    sha.update(buf.data(), n);
    done += n;
    if (progress) progress->update(static_cast<long>(done >> 20));
  }
  if (f.bad()) throw IoError("read error", p.string(), "check the file system");
  if (progress) progress->finish();
  return sha.hex();
}

// The cache: one line per file, "<sha256>\t<size>\t<mtime ns>\t<absolute path>".
struct CacheKey {
  std::string path;
  uintmax_t size;
  long long mtime_ns;
  bool operator<(const CacheKey& o) const {
    return std::tie(path, size, mtime_ns) < std::tie(o.path, o.size, o.mtime_ns);
  }
};

fs::path cache_folder() {
  if (const char* d = std::getenv("V1SYSID_CACHE_DIR"); d && *d) return d;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return fs::path(x) / "v1sysid";
  if (const char* h = std::getenv("HOME"); h && *h) return fs::path(h) / ".cache" / "v1sysid";
  return {};
}

void warn_once(const std::string& what) {
  static bool warned = false;
  if (warned) return;
  warned = true;
  std::fprintf(stderr, "v1sysid: the digest cache is not used (%s); datasets are read in full each run\n",
               what.c_str());
}

std::map<CacheKey, std::string> read_cache(const fs::path& file) {
  std::map<CacheKey, std::string> cache;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream s(line);
    std::string digest, path;
    CacheKey k{};
    if (!std::getline(s, digest, '\t') || !(s >> k.size) || s.get() != '\t' || !(s >> k.mtime_ns) || s.get() != '\t' ||
        !std::getline(s, path) || digest.size() != 64)
      continue;  // a damaged line is recomputed, not trusted
    k.path = path;
    cache[k] = digest;
  }
  return cache;
}

void write_cache(const fs::path& file, const std::map<CacheKey, std::string>& cache) {
  std::error_code ec;
  fs::create_directories(file.parent_path(), ec);
  const fs::path partial = file.string() + ".partial-" + std::to_string(::getpid());
  {
    std::ofstream out(partial);
    for (const auto& [k, digest] : cache)
      out << digest << '\t' << k.size << '\t' << k.mtime_ns << '\t' << k.path << '\n';
    if (!out) {
      fs::remove(partial, ec);
      warn_once("cannot write " + file.string());
      return;
    }
  }
  fs::rename(partial, file, ec);
  if (ec) {
    fs::remove(partial, ec);
    warn_once("cannot write " + file.string());
  }
}

CacheKey key_of(const fs::path& p) {
  const auto mtime = fs::last_write_time(p).time_since_epoch();
  return CacheKey{fs::absolute(p).lexically_normal().string(), fs::file_size(p),
                  static_cast<long long>(std::chrono::duration_cast<std::chrono::nanoseconds>(mtime).count())};
}

}  // namespace

std::string sha256_hex(const std::string& bytes) {
  Sha256 sha;
  sha.update(bytes.data(), bytes.size());
  return sha.hex();
}

std::string dataset_digest(const std::string& path) {
  if (!fs::exists(path)) throw IoError("dataset not found", path, "check --data");
  const fs::path folder = cache_folder();
  const fs::path cache_file = folder.empty() ? fs::path() : folder / "digests.tsv";
  std::map<CacheKey, std::string> cache;
  if (!cache_file.empty()) cache = read_cache(cache_file);
  bool changed = false;
  auto file_digest = [&](const fs::path& p) {
    const CacheKey k = key_of(p);
    if (auto it = cache.find(k); it != cache.end()) return it->second;
    std::string d = sha256_of_file(p);
    // The entries of an earlier version of this file go: the cache holds one line per path.
    for (auto it = cache.lower_bound(CacheKey{k.path, 0, LLONG_MIN}); it != cache.end() && it->first.path == k.path;)
      it = cache.erase(it);
    cache[k] = d;
    changed = true;
    return d;
  };
  std::string digest;
  if (fs::is_directory(path)) {
    std::vector<std::string> files;
    for (const auto& e : fs::recursive_directory_iterator(path))
      if (e.is_regular_file()) files.push_back(fs::relative(e.path(), path).generic_string());
    std::sort(files.begin(), files.end());
    std::string manifest;
    for (const auto& rel : files) manifest += file_digest(fs::path(path) / rel) + "  " + rel + "\n";
    digest = sha256_hex(manifest);
  } else {
    digest = file_digest(path);
  }
  if (changed && !cache_file.empty()) write_cache(cache_file, cache);
  return digest;
}

}  // namespace v1sysid
