#include "sweep/status.hpp"

#include "core/error.hpp"
#include "core/progress.hpp"
#include "io/h5.hpp"
#include "io/png.hpp"
#include "sweep/results_file.hpp"

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>
#include <thread>
#include <utility>

namespace v1sysid {

namespace {

SweepStatus read_once(const std::string& path, int stall_checks) {
  const h5::File f = h5::File::open(path);
  if (!f.has_attribute("/", "format_version") || !f.exists("trials/status"))
    throw IoError("not a v1sysid results file (no format_version or trials/status)", path,
                  "give the --out file of `v1sysid sweep`");
  SweepStatus s;
  s.path = path;
  s.now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  const auto status = f.read_strings("trials/status");
  const auto arch = f.read_strings("trials/architecture");
  const auto host = f.read_strings("trials/host");
  const auto fraction = f.read<double>("trials/data_fraction");
  const auto val = f.read<double>("trials/best_val_loss");
  const auto corr = f.read<double>("trials/test_correlation");
  const std::vector<double> val_corr = read_val_correlations(f, status.size());
  const auto wall = f.read<double>("trials/wall_seconds");
  const auto iterations = f.read<int64_t>("trials/iterations");
  const auto steps = f.read<int64_t>("trials/steps");
  const auto rank = f.read<int32_t>("trials/rank");
  const std::vector<double> heartbeat = f.exists("trials/heartbeat") ? f.read<double>("trials/heartbeat")
                                                                     : std::vector<double>(status.size(), std::nan(""));
  h5::Shape curve_shape;
  const auto curves = f.read<double>("trials/val_curve", &curve_shape);
  const std::vector<std::string> configs =
      f.exists("trials/config") ? f.read_strings("trials/config") : std::vector<std::string>(status.size());
  const size_t n = status.size();
  if (arch.size() != n || fraction.size() != n || val.size() != n || val_corr.size() != n || iterations.size() != n ||
      heartbeat.size() != n ||
      curve_shape.size() != 2 || curve_shape[0] != n)
    throw DataError("the columns of trials/ differ in length", path, "is this file being created? try again");
  const size_t width = curve_shape[1];
  s.total = static_cast<int64_t>(n);
  std::set<std::pair<std::string, int32_t>> working;
  for (size_t i = 0; i < n; ++i) {
    StatusRow r;
    r.trial = static_cast<int64_t>(i);
    r.architecture = arch[i];
    r.status = stored_status(status[i], static_cast<int64_t>(i), path);
    r.host = host[i];
    r.data_fraction = fraction[i];
    r.best_val_loss = val[i];
    r.best_val_correlation = val_corr[i];
    r.test_correlation = corr[i];
    r.wall_seconds = wall[i];
    r.heartbeat = heartbeat[i];
    r.iterations = iterations[i];
    r.steps = steps[i];
    r.rank = rank[i];
    for (size_t c = 0; c < width && std::isfinite(curves[i * width + c]); ++c) r.curve.push_back(curves[i * width + c]);
    if (!configs[i].empty()) {
      try {
        const YAML::Node train = YAML::Load(configs[i])["train"];
        if (train && train["max_iterations"]) r.max_iterations = train["max_iterations"].as<int64_t>();
        if (train && train["schedule"] && train["schedule"].as<std::string>() == "lurz" && train["max_epochs"])
          r.max_iterations = train["max_epochs"].as<int64_t>();
      } catch (const YAML::Exception&) {
        // trials/config is informative here; a row without it has no max_iterations
      }
    }
    if (r.status == TrialStatus::ok)
      ++s.ok;
    else if (r.status == TrialStatus::diverged)
      ++s.diverged;
    else if (r.status == TrialStatus::failed)
      ++s.failed;
    else if (r.status == TrialStatus::pruned)
      ++s.pruned;
    else if (r.status == TrialStatus::running) {
      ++s.running;
      working.insert({r.host, r.rank});
      const double per_check = r.wall_seconds / static_cast<double>(std::max<size_t>(1, r.curve.size()));
      if (std::isfinite(r.heartbeat) && s.now - r.heartbeat > std::max(60.0, stall_checks * per_check))
        s.stalled.push_back(r.trial);
    } else
      ++s.pending;
    s.rows.push_back(std::move(r));
  }
  s.ranks_working = static_cast<int64_t>(working.size());
  // ETA.
  double finished_time = 0;
  int64_t finished_n = 0;
  for (const auto& r : s.rows)
    if (is_finished(r.status) && r.wall_seconds > 0) {
      finished_time += r.wall_seconds;
      ++finished_n;
    }
  const int64_t ranks = std::max<int64_t>(
      1, s.ranks_working > 0
             ? s.ranks_working
             : (f.has_attribute("/", "ranks_at_creation") ? f.read_attribute_int("/", "ranks_at_creation") : 1));
  s.ranks_for_eta = ranks;
  double remaining = 0;
  bool known = false;
  if (finished_n > 0) {
    const double mean = finished_time / static_cast<double>(finished_n);
    remaining = static_cast<double>(s.pending) * mean;
    for (const auto& r : s.rows)
      if (r.status == TrialStatus::running) remaining += std::max(0.0, mean - r.wall_seconds);
    known = true;
  } else {
    double mean = 0;
    int64_t counted = 0;
    for (const auto& r : s.rows)
      if (r.status == TrialStatus::running && r.iterations > 0 && r.max_iterations > 0) {
        const double whole = r.wall_seconds / static_cast<double>(r.iterations) * static_cast<double>(r.max_iterations);
        remaining += std::max(0.0, whole - r.wall_seconds);
        mean += whole;
        ++counted;
      }
    if (counted > 0) {
      remaining += static_cast<double>(s.pending) * mean / static_cast<double>(counted);
      known = true;
    }
  }
  if (known) s.eta_seconds = remaining / static_cast<double>(ranks);
  if (s.pending == 0 && s.running == 0) s.eta_seconds = 0;
  // Best per (architecture, data fraction), in order of first appearance, by select's rule.
  std::map<std::pair<std::string, double>, size_t> index;
  std::vector<std::vector<size_t>> members;
  for (size_t i = 0; i < s.rows.size(); ++i) {
    const StatusRow& r = s.rows[i];
    if (r.status != TrialStatus::ok || !std::isfinite(r.best_val_loss)) continue;
    auto [it, added] = index.emplace(std::make_pair(r.architecture, r.data_fraction), s.best.size());
    if (added) {
      s.best.push_back({r.architecture, r.data_fraction});
      members.emplace_back();
    }
    members[it->second].push_back(i);
  }
  for (size_t g = 0; g < s.best.size(); ++g) {
    SweepBest& b = s.best[g];
    b.ok_trials = static_cast<int64_t>(members[g].size());
    b.ranked_by = ranking_of(members[g], val_corr);
    rank_trials(members[g], b.ranked_by, val, val_corr);
    const StatusRow& r = s.rows[members[g].front()];
    b.trial = r.trial;
    b.best_val_loss = r.best_val_loss;
    b.best_val_correlation = r.best_val_correlation;
    b.test_correlation = r.test_correlation;
  }
  return s;
}

std::string number(double x, const char* format = "%.4g") {
  if (!std::isfinite(x)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, format, x);
  return buf;
}

// The extent of the curves to plot: loss range and longest curve; a plot needs two checks and a non-zero range.
struct CurveRange {
  double lo = INFINITY, hi = -INFINITY;
  size_t longest = 0;
  bool plottable() const { return longest >= 2 && hi > lo; }
};
CurveRange curve_range(const std::vector<const StatusRow*>& rows) {
  CurveRange r;
  for (const auto* row : rows) {
    for (double v : row->curve) r.lo = std::min(r.lo, v), r.hi = std::max(r.hi, v);
    r.longest = std::max(r.longest, row->curve.size());
  }
  return r;
}

// Up to three curves in one character grid: x = check index, y = validation loss (linear, the curves' range).
std::string plot_curves(const std::vector<const StatusRow*>& rows, int width, int height) {
  const char marks[] = {'*', 'o', '+'};
  const CurveRange range = curve_range(rows);
  if (!range.plottable()) return "";
  const double lo = range.lo, hi = range.hi;
  const size_t longest = range.longest;
  std::vector<std::string> grid(static_cast<size_t>(height), std::string(static_cast<size_t>(width), ' '));
  for (size_t k = 0; k < rows.size(); ++k)
    for (size_t c = 0; c < rows[k]->curve.size(); ++c) {
      const auto x =
          static_cast<size_t>(std::lround(static_cast<double>(c) / static_cast<double>(longest - 1) * (width - 1)));
      const auto y = static_cast<size_t>(std::lround((hi - rows[k]->curve[c]) / (hi - lo) * (height - 1)));
      grid[y][x] = marks[k];
    }
  std::ostringstream out;
  out << "validation loss by check (" << longest << " checks)\n";
  for (int y = 0; y < height; ++y) {
    const double level = hi - (hi - lo) * y / (height - 1);
    out << (y == 0 || y == height - 1 ? number(level, "%10.4g") : std::string(10, ' ')) << " |"
        << grid[static_cast<size_t>(y)] << "\n";
  }
  out << std::string(11, ' ') << '+' << std::string(static_cast<size_t>(width), '-') << "\n";
  for (size_t k = 0; k < rows.size(); ++k)
    out << "  " << marks[k] << " trial " << rows[k]->trial << " (" << rows[k]->architecture << ", " << status_name(rows[k]->status)
        << ", best " << number(rows[k]->best_val_loss) << ")\n";
  return out.str();
}

}  // namespace

SweepStatus read_sweep_status(const std::string& path, int stall_checks) {
  for (int attempt = 0;; ++attempt) {
    try {
      return read_once(path, stall_checks);
    } catch (const Error&) {
      if (attempt >= 9) throw;  // not a transient state of a file being written
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
  }
}

std::string sweep_status_json(const SweepStatus& s) {
  nlohmann::json j;
  j["results"] = s.path;
  j["time"] = s.now;
  j["trials"] = {{"total", s.total},       {"finished", s.finished()}, {"ok", s.ok},
                 {"diverged", s.diverged}, {"failed", s.failed},       {"pruned", s.pruned},
                 {"running", s.running},   {"pending", s.pending},     {"stalled", s.stalled.size()}};
  j["ranks_working"] = s.ranks_working;
  j["eta_seconds"] = s.eta_seconds >= 0 ? nlohmann::json(s.eta_seconds) : nlohmann::json(nullptr);
  j["best"] = nlohmann::json::array();
  for (const auto& b : s.best)
    j["best"].push_back({{"architecture", b.architecture},
                         {"data_fraction", b.data_fraction},
                         {"trial", b.trial},
                         {"ranked_by", ranked_by_name(b.ranked_by)},
                         {"best_val_loss", b.best_val_loss},
                         {"best_val_correlation", std::isfinite(b.best_val_correlation)
                                                      ? nlohmann::json(b.best_val_correlation)
                                                      : nlohmann::json(nullptr)},
                         {"test_correlation", b.test_correlation},
                         {"ok_trials", b.ok_trials}});
  j["stalled"] = s.stalled;
  j["running"] = nlohmann::json::array();
  for (const auto& r : s.rows)
    if (r.status == TrialStatus::running)
      j["running"].push_back({{"trial", r.trial},
                              {"architecture", r.architecture},
                              {"iterations", r.iterations},
                              {"steps", r.steps},
                              {"max_iterations", r.max_iterations},
                              {"best_val_loss", std::isfinite(r.best_val_loss) ? nlohmann::json(r.best_val_loss)
                                                                               : nlohmann::json(nullptr)},
                              {"best_val_correlation", std::isfinite(r.best_val_correlation)
                                                           ? nlohmann::json(r.best_val_correlation)
                                                           : nlohmann::json(nullptr)},
                              {"checks", r.curve.size()},
                              {"wall_seconds", r.wall_seconds},
                              {"heartbeat_age_seconds", s.now - r.heartbeat},
                              {"rank", r.rank},
                              {"host", r.host}});
  return j.dump();
}

namespace {
// The up to three best trials with a curve (finished ok ones and running ones), lowest validation loss first.
std::vector<const StatusRow*> best_curves(const SweepStatus& s) {
  std::vector<const StatusRow*> rows;
  for (const auto& r : s.rows)
    if ((r.status == TrialStatus::ok || r.status == TrialStatus::running) && r.curve.size() >= 2 && std::isfinite(r.best_val_loss))
      rows.push_back(&r);
  std::sort(rows.begin(), rows.end(),
            [](const StatusRow* a, const StatusRow* b) { return a->best_val_loss < b->best_val_loss; });
  if (rows.size() > 3) rows.resize(3);
  return rows;
}
}  // namespace

std::string sweep_status_png(const SweepStatus& s) {
  const auto rows = best_curves(s);
  const CurveRange range = curve_range(rows);
  if (!range.plottable()) return "";
  const double lo = range.lo, hi = range.hi;
  const size_t longest = range.longest;
  const int W = 800, H = 500, margin = 40;
  std::vector<uint8_t> rgb(static_cast<size_t>(W * H * 3), 255);
  auto put = [&](int x, int y, const uint8_t* c) {
    if (x < 0 || y < 0 || x >= W || y >= H) return;
    std::copy_n(c, 3, rgb.begin() + (static_cast<ptrdiff_t>(y) * W + x) * 3);
  };
  auto line = [&](int x0, int y0, int x1, int y1, const uint8_t* c, int thick) {  // Bresenham
    const int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    for (int err = dx + dy;;) {
      for (int t = -thick / 2; t <= thick / 2; ++t) put(x0, y0 + t, c), put(x0 + t, y0, c);
      if (x0 == x1 && y0 == y1) break;
      const int e2 = 2 * err;
      if (e2 >= dy) err += dy, x0 += sx;
      if (e2 <= dx) err += dx, y0 += sy;
    }
  };
  const uint8_t grey[3] = {150, 150, 150};
  const uint8_t colours[3][3] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44}};
  line(margin, H - margin, W - margin, H - margin, grey, 1);
  line(margin, margin, margin, H - margin, grey, 1);
  auto px = [&](size_t c) {
    return margin +
           static_cast<int>(std::lround(static_cast<double>(c) / static_cast<double>(longest - 1) * (W - 2 * margin)));
  };
  auto py = [&](double v) { return margin + static_cast<int>(std::lround((hi - v) / (hi - lo) * (H - 2 * margin))); };
  for (size_t k = 0; k < rows.size(); ++k)
    for (size_t c = 1; c < rows[k]->curve.size(); ++c)
      line(px(c - 1), py(rows[k]->curve[c - 1]), px(c), py(rows[k]->curve[c]), colours[k], 3);
  return encode_png_rgb(W, H, rgb);
}

std::string sweep_status_text(const SweepStatus& s, int plot_width) {
  std::ostringstream out;
  out << s.path << ": " << s.finished() << " of " << s.total << " trials finished (" << s.ok << " ok, " << s.diverged
      << " diverged, " << s.failed << " failed, " << s.pruned << " pruned), " << s.running << " running, " << s.pending
      << " pending";
  if (s.pending + s.running > 0)
    out << "; ETA " << (s.eta_seconds >= 0 ? format_duration(s.eta_seconds) : std::string("unknown")) << " on "
        << s.ranks_for_eta << " rank(s)";
  out << "\n";
  if (!s.best.empty()) {
    out << "\nbest so far among ok trials (lowest validation loss; Lurz schedule: highest validation correlation):\n"
        << "  architecture                     fraction  trial  val loss    val corr   test corr  ok trials\n";
    for (const auto& b : s.best) {
      char line[256];
      std::snprintf(line, sizeof line, "  %-32s %8.3g  %5lld  %-10s  %-9s  %-9s  %lld\n", b.architecture.c_str(),
                    b.data_fraction, static_cast<long long>(b.trial), number(b.best_val_loss).c_str(),
                    number(b.best_val_correlation, "%.4f").c_str(), number(b.test_correlation, "%.4f").c_str(),
                    static_cast<long long>(b.ok_trials));
      out << line;
    }
  }
  if (s.running > 0) {
    out << "\nrunning:\n";
    for (const auto& r : s.rows) {
      if (r.status != TrialStatus::running) continue;
      const bool stalled = std::find(s.stalled.begin(), s.stalled.end(), r.trial) != s.stalled.end();
      out << "  trial " << r.trial << " (" << r.architecture << ") iteration " << r.iterations;
      if (r.max_iterations > 0) out << "/" << r.max_iterations;
      out << ", best val " << number(r.best_val_loss);
      if (std::isfinite(r.best_val_correlation)) out << " (val corr " << number(r.best_val_correlation, "%.4f") << ")";
      out << ", " << format_duration(r.wall_seconds) << " on " << r.host
          << " rank " << r.rank << ", last heard " << format_duration(s.now - r.heartbeat) << " ago"
          << (stalled ? "  STALLED: its job died or hangs; the next run of the sweep redoes it" : "") << "\n";
    }
  }
  const std::string plot = plot_curves(best_curves(s), plot_width, 12);
  if (!plot.empty()) out << "\n" << plot;
  return out.str();
}

}  // namespace v1sysid
