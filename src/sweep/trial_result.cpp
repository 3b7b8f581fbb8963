#include "sweep/trial_result.hpp"

#include "core/error.hpp"

#include <array>
#include <utility>

namespace v1sysid {

namespace {

constexpr std::array<std::pair<TrialStatus, std::string_view>, 7> kStatusNames{{
    {TrialStatus::pending, "pending"},
    {TrialStatus::running, "running"},
    {TrialStatus::ok, "ok"},
    {TrialStatus::diverged, "diverged"},
    {TrialStatus::failed, "failed"},
    {TrialStatus::pruned, "pruned"},
    {TrialStatus::damaged, "damaged"},
}};

}  // namespace

std::string_view status_name(TrialStatus status) {
  for (const auto& [s, name] : kStatusNames)
    if (s == status) return name;
  return "unknown";
}

std::optional<TrialStatus> parse_status(std::string_view name) {
  for (const auto& [s, spelled] : kStatusNames)
    if (spelled == name) return s;
  return std::nullopt;
}

TrialStatus stored_status(std::string_view spelled, int64_t row, const std::string& file) {
  if (auto s = parse_status(spelled); s && *s != TrialStatus::damaged) return *s;
  throw DataError("trials/status of row " + std::to_string(row) + " reads '" + std::string(spelled) +
                      "', which is no status v1sysid writes (pending, running, ok, diverged, failed, pruned)",
                  file, "the file was changed outside v1sysid: restore it, or pass --force to start the sweep over");
}

bool is_finished(TrialStatus status) {
  return status == TrialStatus::ok || status == TrialStatus::diverged || status == TrialStatus::failed ||
         status == TrialStatus::pruned;
}

}  // namespace v1sysid
