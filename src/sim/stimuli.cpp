#include "sim/stimuli.hpp"

#include "core/error.hpp"
#include "io/h5.hpp"

#include <cmath>
#include <filesystem>

namespace v1sysid::sim {

std::vector<int64_t> StimulusSet::indices(bool test) const {
  std::vector<int64_t> out;
  for (int64_t i = 0; i < count; ++i) {
    if ((is_test[static_cast<size_t>(i)] != 0) == test) out.push_back(i);
  }
  return out;
}

StimulusSet read_stimuli(const std::string& path) {
  if (!std::filesystem::exists(path)) {
    throw IoError("stimulus file not found", path,
                  "make it with 'v1sysid images --out " + path + "' or pass another with --stimuli");
  }
  h5::File f = h5::File::open(path);
  const std::string fix = "the file must come from 'v1sysid images' (layout in src/sim/stimuli.hpp)";
  if (!f.has_attribute("/", "format_version")) {
    throw DataError("missing root attribute 'format_version'", path, fix);
  }
  const int64_t version = f.read_attribute_int("/", "format_version");
  if (version != 1) {
    throw DataError("unsupported format_version " + std::to_string(version) + " (this build reads 1)", path,
                    "regenerate the stimuli with this version of 'v1sysid images'");
  }
  StimulusSet s;
  s.path = path;
  s.generator = f.has_attribute("/", "generator") ? f.read_attribute_string("/", "generator") : "unknown";

  h5::Shape shape;
  s.images = f.read<float>("images", &shape);
  if (shape.size() != 3 || shape[0] == 0) {
    throw DataError("'images' must have shape [N, H, W] with N > 0", path, fix);
  }
  s.count = static_cast<int64_t>(shape[0]);
  s.height = static_cast<int64_t>(shape[1]);
  s.width = static_cast<int64_t>(shape[2]);
  for (size_t i = 0; i < s.images.size(); ++i) {
    if (!std::isfinite(s.images[i])) {
      throw DataError("'images' has a non-finite pixel in image " + std::to_string(i / (shape[1] * shape[2])), path,
                      "regenerate the stimuli");
    }
  }

  h5::Shape split_shape;
  const std::vector<std::string> split = f.read_strings("split", &split_shape);
  if (static_cast<int64_t>(split.size()) != s.count) {
    throw DataError("'split' has " + std::to_string(split.size()) + " entries for " + std::to_string(s.count) +
                        " images",
                    path, fix);
  }
  s.is_test.resize(split.size());
  for (size_t i = 0; i < split.size(); ++i) {
    if (split[i] == "test") s.is_test[i] = 1;
    else if (split[i] == "trainval") s.is_test[i] = 0;
    else throw DataError("'split' entry " + std::to_string(i) + " is \"" + split[i] + "\"", path,
                         "expected \"trainval\" or \"test\"");
  }
  if (f.exists("photo_index")) {
    s.photo_index = f.read<int32_t>("photo_index");
    if (static_cast<int64_t>(s.photo_index.size()) != s.count) {
      throw DataError("'photo_index' has " + std::to_string(s.photo_index.size()) + " entries for " +
                          std::to_string(s.count) + " images",
                      path, fix);
    }
  } else {
    s.photo_index.assign(static_cast<size_t>(s.count), -1);
  }
  return s;
}

}  // namespace v1sysid::sim
