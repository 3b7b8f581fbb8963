// Dataset identity: SHA-256 digests (OpenSSL) that users can reproduce without v1sysid.
//   a file (.h5, .zip)       SHA-256 of its bytes: `sha256sum FILE` prints the same hex;
//   a FileTree folder        SHA-256 of its manifest, the `sha256sum` lines "<hex>  <relative path>\n" of every
//                            regular file under it, sorted by path in byte order:
//                              cd DIR && find . -type f -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum |
//                              sha256sum
//                            (file names without newlines or backslashes, which sha256sum would escape).
// Digests are cached by absolute path, size and modification time in digests.tsv of the cache folder
// ($V1SYSID_CACHE_DIR, else $XDG_CACHE_HOME/v1sysid, else ~/.cache/v1sysid), so a dataset is read once per change
// and not once per run; a cache that cannot be read or written costs only the time (one warning). Files over
// 256 MiB show progress while they are read.
#pragma once

#include <string>

namespace v1sysid {

// SHA-256 of `path` (a file or a FileTree folder) as 64 lowercase hex digits. IoError when it cannot be read.
std::string dataset_digest(const std::string& path);

// SHA-256 of a byte string (hex), for tests and manifests.
std::string sha256_hex(const std::string& bytes);

}  // namespace v1sysid
