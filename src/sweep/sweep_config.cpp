#include "sweep/sweep_config.hpp"

#include "core/random.hpp"
#include "model/model_config.hpp"
#include "sweep/checksum.hpp"
#include "train/pipeline.hpp"  // kRandomCore

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <set>
#include <sstream>

namespace v1sysid {

namespace fs = std::filesystem;

uint64_t hash_string(const std::string& s, uint64_t seed) {
  uint64_t h = 0xcbf29ce484222325ull ^ splitmix64_mix(seed + kSplitMix64Gamma);
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return splitmix64_mix(h + kSplitMix64Gamma);
}

double unit_interval(uint64_t bits) { return static_cast<double>(bits >> 11) * 0x1.0p-53; }

double Distribution::sample(double u) const {
  switch (kind) {
    case Kind::fixed: return choices.at(0);
    case Kind::log_uniform: return std::exp(std::log(lo) + u * (std::log(hi) - std::log(lo)));
    case Kind::uniform: return lo + u * (hi - lo);
    case Kind::choice: {
      auto i = static_cast<size_t>(u * static_cast<double>(choices.size()));
      return choices[std::min(i, choices.size() - 1)];
    }
  }
  return 0;
}

namespace {

std::string resolve(const std::string& file, const std::string& relative) {
  fs::path p(relative);
  if (p.is_absolute()) return p.string();
  fs::path candidate = fs::path(file).parent_path() / p;
  return candidate.lexically_normal().string();
}

Distribution decode_distribution(ConfigReader& parent, const std::string& key) {
  YAML::Node n = parent.raw(key);
  Distribution d;
  if (n.IsScalar()) {
    double v = 0;
    if (!YAML::convert<double>::decode(n, v) || !std::isfinite(v)) parent.fail(key, "expected a number or a distribution");
    d.kind = Distribution::Kind::fixed;
    d.choices = {v};
    return d;
  }
  ConfigReader r(n, parent.file(), parent.key_path(key));
  int given = r.has("log_uniform") + r.has("uniform") + r.has("choice") + r.has("fixed");
  if (given != 1) r.fail_here("expected exactly one of log_uniform: [lo, hi], uniform: [lo, hi], choice: [...], fixed: v");
  std::vector<double> range;
  if (r.has("log_uniform") || r.has("uniform")) {
    const std::string k = r.has("log_uniform") ? "log_uniform" : "uniform";
    r.get(k, range);
    if (range.size() != 2 || !(range[0] <= range[1])) r.fail(k, "expected [lo, hi] with lo <= hi");
    if (k == "log_uniform" && !(range[0] > 0)) r.fail(k, "expected a positive lower bound for log_uniform");
    d.kind = k == "log_uniform" ? Distribution::Kind::log_uniform : Distribution::Kind::uniform;
    d.lo = range[0];
    d.hi = range[1];
  } else if (r.has("choice")) {
    r.get("choice", d.choices);
    if (d.choices.empty()) r.fail("choice", "expected a non-empty list");
    d.kind = Distribution::Kind::choice;
  } else {
    double v = 0;
    r.get("fixed", v);
    d.kind = Distribution::Kind::fixed;
    d.choices = {v};
  }
  r.finish();
  return d;
}

YAML::Node encode_distribution(const Distribution& d) {
  YAML::Node n;
  switch (d.kind) {
    case Distribution::Kind::fixed: n["fixed"] = d.choices[0]; break;
    case Distribution::Kind::log_uniform: n["log_uniform"].push_back(d.lo); n["log_uniform"].push_back(d.hi); break;
    case Distribution::Kind::uniform: n["uniform"].push_back(d.lo); n["uniform"].push_back(d.hi); break;
    case Distribution::Kind::choice: for (double c : d.choices) n["choice"].push_back(c); break;
  }
  return n;
}

}  // namespace

SweepConfig SweepConfig::load(const std::string& path) {
  SweepConfig s;
  s.file = path;
  ConfigReader r(load_yaml_file(path), path);
  r.require("name", s.name);
  int64_t seed = 0;
  r.get_in_range("seed", seed, int64_t{0}, std::numeric_limits<int64_t>::max());
  s.seed = static_cast<uint64_t>(seed);
  r.get_choice("trial_kind", s.trial_kind, {"train", "dry_run"});
  if (r.has("base_model")) {
    r.get("base_model", s.base_model);
    s.base_model = resolve(path, s.base_model);
  }
  YAML::Node archs = r.raw("architectures");
  if (!archs.IsDefined() || !archs.IsSequence() || archs.size() == 0) {
    r.fail("architectures", "expected a non-empty list of {name, model?, overrides?}");
  }
  for (size_t i = 0; i < archs.size(); ++i) {
    ConfigReader a(archs[i], path, "architectures[" + std::to_string(i) + "]");
    ArchitectureSpec spec;
    a.require("name", spec.name);
    if (a.has("model")) {
      a.get("model", spec.model_file);
      spec.model_file = resolve(path, spec.model_file);
    }
    spec.overrides = YAML::Clone(a.raw("overrides"));
    if (a.has("hyperparameters")) {
      ConfigReader hp = a.child("hyperparameters");
      std::map<std::string, Distribution> own;
      for (auto it = hp.node().begin(); it != hp.node().end(); ++it) {
        const std::string name = it->first.as<std::string>();
        own[name] = decode_distribution(hp, name);
      }
      hp.finish();
      spec.hyperparameters = std::move(own);
    }
    if (a.has("init_core")) {
      a.get("init_core", spec.init_core);
      spec.random_core = spec.init_core == kRandomCore;
      spec.init_core = spec.random_core ? std::string() : resolve(path, spec.init_core);
    }
    a.get("freeze_core", spec.freeze_core);
    if (spec.freeze_core && spec.init_core.empty() && !spec.random_core)
      a.fail("freeze_core", "would freeze a random core: name the checkpoint whose core to freeze in init_core "
                            "(or write init_core: random for a random core on purpose)");
    if (spec.random_core && !spec.freeze_core)
      a.fail("init_core", "random without freeze_core: true is training from scratch; add freeze_core: true (the "
                          "random-core null of a transfer) or drop init_core");
    if (spec.overrides.IsDefined() && !spec.overrides.IsNull() && !spec.overrides.IsMap()) {
      a.fail("overrides", "expected a mapping merged into the model config");
    }
    a.finish();
    if (spec.model_file.empty() && s.base_model.empty() && s.trial_kind == "train") {
      a.fail_here("has no model and the sweep has no base_model");
    }
    for (const auto& other : s.architectures) {
      if (other.name == spec.name) a.fail("name", "duplicate architecture name \"" + spec.name + "\"");
    }
    s.architectures.push_back(std::move(spec));
  }
  {
    ConfigReader search = r.child("search");
    search.get_in_range("draws", s.draws, int64_t{1}, int64_t{1000000});
    ConfigReader hp = search.child("hyperparameters");
    for (auto it = hp.node().begin(); it != hp.node().end(); ++it) {
      const std::string name = it->first.as<std::string>();
      s.hyperparameters[name] = decode_distribution(hp, name);
    }
    hp.finish();
    search.finish();
  }
  {
    ConfigReader grid = r.child("grid");
    grid.get("data_fraction", s.data_fractions).get("seed", s.seeds);
    if (s.data_fractions.empty()) grid.fail("data_fraction", "expected a non-empty list");
    for (double f : s.data_fractions) {
      if (!(f > 0 && f <= 1)) grid.fail("data_fraction", "expected fractions in (0, 1]");
    }
    if (s.seeds.empty()) grid.fail("seed", "expected a non-empty list");
    grid.finish();
  }
  r.get_in_range("max_checks", s.max_checks, int64_t{0}, int64_t{100000});
  {
    ConfigReader dr = r.child("dry_run");
    dr.get_in_range("min_seconds", s.dry_run.min_seconds, 0.0, 3600.0)
        .get_in_range("max_seconds", s.dry_run.max_seconds, 0.0, 3600.0)
        .get_in_range("neurons", s.dry_run.neurons, int64_t{1}, int64_t{1000000})
        .get_in_range("fail_fraction", s.dry_run.fail_fraction, 0.0, 1.0);
    if (s.dry_run.max_seconds < s.dry_run.min_seconds) dr.fail("max_seconds", "expected max_seconds >= min_seconds");
    dr.finish();
  }
  if (r.has("pruning")) {
    ConfigReader pr = r.child("pruning");
    std::string rule;
    pr.get_choice("rule", rule, {"median"});
    if (rule.empty()) pr.fail("rule", "expected rule: median");
    s.pruning.enabled = true;
    pr.get_in_range("min_checks", s.pruning.min_checks, int64_t{1}, int64_t{100000})
        .get_in_range("min_trials", s.pruning.min_trials, int64_t{1}, int64_t{100000});
    pr.finish();
  }
  r.finish();
  if (s.trial_kind == "train") {
    // Each architecture's model (its file with the overrides merged in) must describe a core and a readout, as
    // `train` requires of a model file: an empty base model would otherwise train the defaults in every trial.
    for (const ArchitectureSpec& arch : s.architectures) {
      const std::string& file = arch.model_file.empty() ? s.base_model : arch.model_file;
      YAML::Node model = YAML::Clone(load_yaml_file(file));
      if (model.IsNull()) model = YAML::Node(YAML::NodeType::Map);
      merge_yaml(model, arch.overrides);
      require_model_sections(model, file + " (model of architecture '" + arch.name + "' of " + path + ")");
      if (!arch.init_core.empty() && !fs::exists(arch.init_core))
        throw ConfigError(
            "the init_core checkpoint " + arch.init_core + " of architecture '" + arch.name + "' does not exist", path,
            "train the core first (v1sysid train, or a sweep with --save-checkpoints) or fix the path");
    }
  }
  return s;
}

namespace {
// The content of a YAML tree, independent of comments, layout (block or flow), quoting and key order.
void canonical_text(const YAML::Node& n, std::string& out) {
  switch (n.Type()) {
    case YAML::NodeType::Map: {
      std::map<std::string, YAML::Node> sorted;
      for (auto it = n.begin(); it != n.end(); ++it) sorted.emplace(it->first.as<std::string>(), it->second);
      out += '{';
      for (const auto& [key, value] : sorted) {
        out += std::to_string(key.size()) + ':' + key + '=';
        canonical_text(value, out);
        out += ',';
      }
      out += '}';
      break;
    }
    case YAML::NodeType::Sequence:
      out += '[';
      for (const auto& item : n) {
        canonical_text(item, out);
        out += ',';
      }
      out += ']';
      break;
    case YAML::NodeType::Scalar: out += std::to_string(n.Scalar().size()) + ':' + n.Scalar(); break;
    default: out += '~'; break;
  }
}

std::string model_file_checksum(const std::string& path) {
  if (!fs::exists(path)) return "missing";
  std::string text;
  canonical_text(load_yaml_file(path), text);
  char out[17];
  std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(hash_string(text)));
  return out;
}
}  // namespace

std::vector<ModelFileChecksum> SweepConfig::model_file_checksums() const {
  std::vector<ModelFileChecksum> out;
  if (!base_model.empty()) out.push_back({"base_model", base_model, model_file_checksum(base_model)});
  for (size_t i = 0; i < architectures.size(); ++i) {
    const std::string& file = architectures[i].model_file;
    if (!file.empty()) out.push_back({"architectures[" + std::to_string(i) + "].model", file, model_file_checksum(file)});
  }
  for (size_t i = 0; i < architectures.size(); ++i) {
    const std::string& core = architectures[i].init_core;
    if (!core.empty())
      out.push_back({"architectures[" + std::to_string(i) + "].init_core", core,
                     fs::exists(core) ? dataset_checksum(core) : "missing"});
  }
  return out;
}

std::string SweepConfig::resolved_yaml() const { return emit(/*identity=*/false); }
std::string SweepConfig::identity_yaml() const { return emit(/*identity=*/true); }

std::string SweepConfig::emit(bool identity) const {
  auto model = [&](const std::string& path) { return identity ? "content " + model_file_checksum(path) : path; };
  YAML::Node n;
  n["name"] = name;
  n["seed"] = seed;
  n["trial_kind"] = trial_kind;
  if (!base_model.empty()) n["base_model"] = model(base_model);
  for (const auto& a : architectures) {
    YAML::Node an;
    an["name"] = a.name;
    if (!a.model_file.empty()) an["model"] = model(a.model_file);
    if (a.overrides.IsDefined() && !a.overrides.IsNull()) an["overrides"] = a.overrides;
    if (!a.init_core.empty())
      an["init_core"] =
          identity ? "content " + (fs::exists(a.init_core) ? dataset_checksum(a.init_core) : "missing") : a.init_core;
    if (a.random_core) an["init_core"] = kRandomCore;
    if (a.freeze_core) an["freeze_core"] = true;
    if (a.hyperparameters) {
      an["hyperparameters"] = YAML::Node(YAML::NodeType::Map);
      for (const auto& [k, d] : *a.hyperparameters) an["hyperparameters"][k] = encode_distribution(d);
    }
    n["architectures"].push_back(an);
  }
  n["search"]["draws"] = draws;
  for (const auto& [k, d] : hyperparameters) n["search"]["hyperparameters"][k] = encode_distribution(d);
  for (double f : data_fractions) n["grid"]["data_fraction"].push_back(f);
  for (int64_t v : seeds) n["grid"]["seed"].push_back(v);
  n["max_checks"] = max_checks;
  n["dry_run"]["min_seconds"] = dry_run.min_seconds;
  n["dry_run"]["max_seconds"] = dry_run.max_seconds;
  n["dry_run"]["neurons"] = dry_run.neurons;
  n["dry_run"]["fail_fraction"] = dry_run.fail_fraction;
  if (pruning.enabled) {  // only then: the identity of every sweep without pruning stays as it was
    n["pruning"]["rule"] = "median";
    n["pruning"]["min_checks"] = pruning.min_checks;
    n["pruning"]["min_trials"] = pruning.min_trials;
  }
  YAML::Emitter e;
  e << n;
  return e.c_str();
}

std::vector<Trial> expand_trials(const SweepConfig& sweep) {
  std::vector<Trial> trials;
  for (size_t a = 0; a < sweep.architectures.size(); ++a) {
    const std::string& arch = sweep.architectures[a].name;
    for (double fraction : sweep.data_fractions) {
      for (int64_t seed : sweep.seeds) {
        for (int64_t d = 0; d < sweep.draws; ++d) {
          Trial t;
          t.id = static_cast<int64_t>(trials.size());
          t.architecture_index = static_cast<int64_t>(a);
          t.architecture = arch;
          t.draw = d;
          t.data_fraction = fraction;
          t.seed = seed;
          for (const auto& [name, dist] : hyperparameters_of(sweep, sweep.architectures[a])) {
            uint64_t bits = hash_string(arch + '\x1f' + name + '\x1f' + std::to_string(d), sweep.seed);
            t.hyperparameters[name] = dist.sample(unit_interval(bits));
          }
          trials.push_back(std::move(t));
        }
      }
    }
  }
  return trials;
}

const std::map<std::string, Distribution>& hyperparameters_of(const SweepConfig& sweep, const ArchitectureSpec& a) {
  return a.hyperparameters ? *a.hyperparameters : sweep.hyperparameters;
}

std::vector<std::string> all_hyperparameter_names(const SweepConfig& sweep) {
  std::set<std::string> names;
  for (const auto& a : sweep.architectures) {
    for (const auto& [name, d] : hyperparameters_of(sweep, a)) names.insert(name);
  }
  return {names.begin(), names.end()};
}

void set_yaml_path(YAML::Node& root, const std::string& dotted, const YAML::Node& value) {
  std::vector<std::string> parts;
  std::stringstream ss(dotted);
  for (std::string p; std::getline(ss, p, '.');) parts.push_back(p);
  // yaml-cpp nodes are references: walk with explicit re-assignment so the tree is modified in place.
  std::vector<YAML::Node> chain{root};
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    YAML::Node next = chain.back()[parts[i]];
    if (!next.IsDefined() || !next.IsMap()) {
      chain.back()[parts[i]] = YAML::Node(YAML::NodeType::Map);
      next = chain.back()[parts[i]];
    }
    chain.push_back(next);
  }
  chain.back()[parts.back()] = value;
}

void merge_yaml(YAML::Node& base, const YAML::Node& overrides) {
  if (!overrides.IsDefined() || overrides.IsNull()) return;
  for (auto it = overrides.begin(); it != overrides.end(); ++it) {
    const std::string key = it->first.as<std::string>();
    YAML::Node target = base[key];
    if (it->second.IsMap() && target.IsDefined() && target.IsMap()) {
      merge_yaml(target, it->second);
    } else {
      base[key] = YAML::Clone(it->second);
    }
  }
}

YAML::Node trial_model_yaml(const SweepConfig& sweep, const Trial& trial) {
  const ArchitectureSpec& arch = sweep.architectures.at(static_cast<size_t>(trial.architecture_index));
  const std::string& file = arch.model_file.empty() ? sweep.base_model : arch.model_file;
  YAML::Node model = file.empty() ? YAML::Node(YAML::NodeType::Map) : YAML::Clone(load_yaml_file(file));
  merge_yaml(model, arch.overrides);
  for (const auto& [name, value] : trial.hyperparameters) set_yaml_path(model, name, YAML::Node(value));
  set_yaml_path(model, "train.data_fraction", YAML::Node(trial.data_fraction));
  set_yaml_path(model, "train.seed", YAML::Node(trial.seed));
  return model;
}

}  // namespace v1sysid
