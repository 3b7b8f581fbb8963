// A cheap fingerprint of a file or folder: the content identity of model files and init-core checkpoints in a
// results file, and of the datasets of files started before the SHA-256 digests (data/digest.hpp).
#pragma once

#include <string>

namespace v1sysid {

// Files: 64-bit FNV-1a of the content (hex). Folders (FileTree): of every file's relative path and content.
std::string dataset_checksum(const std::string& path);

}  // namespace v1sysid
