// A cheap fingerprint of a dataset path, stored in results files so a resume cannot silently mix datasets.
#pragma once

#include <string>

namespace v1sysid {

// Files: 64-bit FNV-1a of the content (hex). Folders (FileTree): of every file's relative path and content.
std::string dataset_checksum(const std::string& path);

}  // namespace v1sysid
