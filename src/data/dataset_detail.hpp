// Pieces shared by the StaticImageSet (HDF5) and FileTree readers: length checks, tier parsing, image-id
// derivation and the final validation. Internal to src/data/.
#pragma once

#include "data/dataset.hpp"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace v1sysid::data_detail {

struct NamedLength {
  std::string field;
  int64_t length;
};
// All fields must have the same number of trials (the first one is the reference). DataError otherwise.
void check_lengths(const std::string& where, const std::vector<NamedLength>& fields);

std::vector<Tier> parse_tiers(const std::vector<std::string>& names, const std::string& where,
                              const std::string& field);

// Names of the per-trial image-id fields in the order the SENSORIUM loaders prefer them (data-formats §B.2),
// each with the field holding the matching image class ("" when there is none).
struct IdField {
  const char* id;
  const char* image_class;
};
const std::vector<IdField>& image_id_fields();

// Dense ids 0, 1, ... in order of first appearance of each distinct string.
std::vector<int64_t> ids_from_strings(const std::vector<std::string>& values);
// Makes (class, id) pairs unique the way the Lurz oracle loader does: id + class_index * (max_id + 1), with
// class_index the position of the class among the sorted distinct classes. One class leaves ids unchanged.
std::vector<int64_t> ids_with_class(const std::vector<int64_t>& ids, const std::vector<std::string>& classes);
// Files without image ids: trials showing bit-identical images get the same id (dense, first appearance).
std::vector<int64_t> ids_from_pixels(const std::vector<float>& images, int64_t n_trials, int64_t pixels);

// Test-image ids of the rows of gt/test_rates when the file does not store them: the sorted distinct ids of
// the test tier, which must number `rows`.
void fill_test_image_ids(GroundTruth& gt, int64_t rows, const Dataset& d, const std::string& where,
                         const std::string& field);

// Full validation with file-specific field names for messages (e.g. "data/images/17.npy").
using FieldOfTrial = std::function<std::string(int64_t trial)>;
void validate(const Dataset& d, const FieldOfTrial& image_field, const FieldOfTrial& response_field,
              const std::string& tiers_field, const std::string& gt_prefix);

}  // namespace v1sysid::data_detail
