// Strict YAML decoding: unknown keys, wrong types, ranges, positions in messages.
#include "config/config_reader.hpp"
#include "test_support.hpp"

#include <gtest/gtest.h>

#include <fstream>

namespace {

using v1sysid::ConfigError;
using v1sysid::ConfigReader;

struct Inner {
  int size = 3;
  std::vector<double> weights{1.0, 0.5};
  void decode(ConfigReader r) {
    r.get_in_range("size", size, 1, 99).get("weights", weights);
    r.finish();
  }
};

struct Outer {
  std::string name = "default";
  double lr = 0.002;
  bool flag = false;
  std::string kind = "a";
  Inner inner;
  void decode(ConfigReader r) {
    r.require("name", name).get_in_range("lr", lr, 0.0, 1.0).get("flag", flag);
    r.get_choice("kind", kind, {"a", "b"});
    inner.decode(r.child("inner"));
    r.finish();
  }
};

Outer decode_text(const std::string& text) {
  Outer o;
  o.decode(ConfigReader(v1sysid::load_yaml_string(text, "cfg.yaml"), "cfg.yaml"));
  return o;
}

std::string error_of(const std::string& text) {
  try {
    decode_text(text);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(Config, DecodesValuesAndKeepsDefaults) {
  Outer o = decode_text("name: x\nlr: 0.01\ninner:\n  size: 5\n");
  EXPECT_EQ(o.name, "x");
  EXPECT_DOUBLE_EQ(o.lr, 0.01);
  EXPECT_FALSE(o.flag);
  EXPECT_EQ(o.inner.size, 5);
  ASSERT_EQ(o.inner.weights.size(), 2u);
  EXPECT_DOUBLE_EQ(o.inner.weights[1], 0.5);
}

TEST(Config, UnknownKeyNamesPathAndPosition) {
  std::string e = error_of("name: x\ninner:\n  sise: 5\n");
  EXPECT_NE(e.find("cfg.yaml:3:3"), std::string::npos) << e;
  EXPECT_NE(e.find("inner.sise: unknown key"), std::string::npos) << e;
  EXPECT_NE(e.find("size"), std::string::npos) << e;  // the known keys are suggested
}

TEST(Config, WrongTypeIsAnError) {
  std::string e = error_of("name: x\nlr: fast\n");
  EXPECT_NE(e.find("cfg.yaml:2:5 lr: expected a number, got \"fast\""), std::string::npos) << e;
  e = error_of("name: x\ninner:\n  size: 2.5\n");
  EXPECT_NE(e.find("inner.size: expected an integer"), std::string::npos) << e;
  e = error_of("name: x\ninner:\n  weights: 3\n");
  EXPECT_NE(e.find("inner.weights: expected a list"), std::string::npos) << e;
  e = error_of("name: x\nflag: maybe\n");
  EXPECT_NE(e.find("flag: expected true or false"), std::string::npos) << e;
}

TEST(Config, OutOfRangeAndChoices) {
  std::string e = error_of("name: x\ninner:\n  size: -3\n");
  EXPECT_NE(e.find("inner.size: expected a value in [1, 99], got \"-3\""), std::string::npos) << e;
  e = error_of("name: x\nkind: c\n");
  EXPECT_NE(e.find("kind: expected one of {a, b}, got \"c\""), std::string::npos) << e;
  e = error_of("name: x\nlr: .nan\n");
  EXPECT_NE(e.find("lr: expected a number"), std::string::npos) << e;
}

TEST(Config, MissingRequiredKey) {
  std::string e = error_of("lr: 0.1\n");
  EXPECT_NE(e.find("missing required key 'name'"), std::string::npos) << e;
}

TEST(Config, MalformedYamlHasPosition) {
  v1sysid::testing::ScratchDir dir;
  std::string path = dir / "bad.yaml";
  std::ofstream(path) << "name: x\ninner: [1, 2\n";
  try {
    v1sysid::load_yaml_file(path);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(path + ":"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("malformed YAML"), std::string::npos) << e.what();
  }
  EXPECT_THROW(v1sysid::load_yaml_file(dir / "missing.yaml"), ConfigError);
}

// yaml-cpp's lookups return the first of two equal keys, so the second (usually the intended edit) was
// dropped without a word: every mapping of every YAML the project reads is checked, nested ones and those
// inside lists too, and the error points at the repeat and at the first occurrence.
TEST(Config, DuplicateKeysAreRejectedWithBothPositions) {
  v1sysid::testing::ScratchDir dir;
  const std::string path = dir / "dup.yaml";
  std::ofstream(path) << "name: x\ninner:\n  size: 4\n  weights: [1]\n  size: 5\n";
  try {
    v1sysid::load_yaml_file(path);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(path + ":5:3 inner.size: duplicate key (first given at " + path + ":3:3)"),
              std::string::npos)
        << e.what();
  }
  EXPECT_NE(error_of("name: x\nlr: 0.1\nname: y\n").find("cfg.yaml:3:1 name: duplicate key"), std::string::npos);
  EXPECT_NE(error_of("name: x\nlist:\n  - {a: 1, a: 2}\n").find("cfg.yaml:3:12 list[0].a: duplicate key"),
            std::string::npos)
      << error_of("name: x\nlist:\n  - {a: 1, a: 2}\n");
  // Equal values under different parents are not repeats.
  EXPECT_NO_THROW(v1sysid::load_yaml_string("a: {size: 4}\nb: {size: 4}\nc: [{size: 1}, {size: 1}]\n", "ok.yaml"));
}

TEST(Config, NonMappingRootIsAnError) {
  std::string e = error_of("- a\n- b\n");
  EXPECT_NE(e.find("expected a mapping"), std::string::npos) << e;
}

}  // namespace
