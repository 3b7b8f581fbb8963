// The stimulus file written by `v1sysid images` and read by `v1sysid simulate`.
//
// Layout (format_version 1):
//   images       [N, H, W] float32, 0..255, grayscale crops
//   split        [N] byte strings "trainval" or "test" (test crops come from photos used for nothing else)
//   photo_index  [N] int32, source photo of each crop (row of photos/)
//   scale        [N] float32, downsampling factor of each crop
//   photos/      name, package, author, licence of each photo
//   root attributes: format_version = 1, generator ("photographs" or a procedural fallback label), seed
// The simulator needs images and split; it records the generator label in its output.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace v1sysid::sim {

struct StimulusSet {
  std::string path;
  std::string generator;              // root attribute "generator"
  int64_t count = 0;
  int64_t height = 0;
  int64_t width = 0;
  std::vector<float> images;          // [count, height, width], 0..255
  std::vector<uint8_t> is_test;       // [count], 1 for split "test"
  std::vector<int32_t> photo_index;   // [count]

  std::vector<int64_t> indices(bool test) const;  // rows of one split, ascending
};

// Reads and checks a stimulus file: missing file -> IoError; missing fields, wrong shapes, unknown split
// names, non-finite pixels or an unsupported format_version -> DataError naming the field.
StimulusSet read_stimuli(const std::string& path);

}  // namespace v1sysid::sim
