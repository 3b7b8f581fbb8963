// Tests of the optimisation area: ParamArena (slot layout, alignment, zero_grad, snapshot/restore), Adam (TF
// formulation, closed form) and the regularisers (finite differences in double, naive host references,
// hand-computed values). Everything runs on the host execution space in double.
#include "core/error.hpp"
#include "core/param_arena.hpp"
#include "optim/adam.hpp"
#include "layers/regularizers.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace {

using namespace v1sysid;
using Host = HostExecSpace;
using HostMem = Host::memory_space;
template <class T>
using Arena = ParamArena<T, HostMem>;
using W4 = View4<double, HostMem>;
using W3 = View3<double, HostMem>;
using W2 = View2<double, HostMem>;
using W1 = View1<double, HostMem>;

// ---------------------------------------------------------------------------------------------------------
// helpers

template <class View>
void fill_normal(View const& v, std::uint32_t seed, double sd = 1.0) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> dist(0.0, sd);
  for (std::size_t i = 0; i < v.size(); ++i) v.data()[i] = dist(rng);
}

// |x| in [0.1, 1] with a random sign: keeps finite differences of |x| away from the kink at 0.
template <class View>
void fill_away_from_zero(View const& v, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> mag(0.1, 1.0);
  std::bernoulli_distribution neg(0.5);
  for (std::size_t i = 0; i < v.size(); ++i) v.data()[i] = neg(rng) ? -mag(rng) : mag(rng);
}

template <class View>
View clone_shape(View const& v, std::string const& label) {
  View out(label, v.layout());
  return out;
}

// Finite differences of `value` with respect to every element of x, against `analytic`. Fourth-order
// central stencil (ggml's grad_precise), f' = [8 (f(x+h) - f(x-h)) - (f(x+2h) - f(x-2h))] / 12h with
// h = 1e-4 max(1, |x|): truncation O(h^4) and rounding O(1e-16 |f| / h) both stay near 1e-12, so the
// comparison can be tight: |fd - an| <= 1e-6 (|fd| + |an|) + 1e-10 (the floor covers gradients that are 0
// up to rounding, e.g. a zero group). Inputs of |x| terms are kept >= 0.1 away from the kink.
template <class View>
void expect_gradient_matches_fd(std::string const& what, View const& x, View const& analytic,
                                std::function<double()> const& value) {
  ASSERT_EQ(x.size(), analytic.size());
  double worst = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double orig = x.data()[i];
    const double h = 1e-4 * std::max(1.0, std::fabs(orig));
    auto at = [&](double shift) {
      x.data()[i] = orig + shift;
      return value();
    };
    const double fd = (8.0 * (at(h) - at(-h)) - (at(2 * h) - at(-2 * h))) / (12.0 * h);
    x.data()[i] = orig;
    const double an = analytic.data()[i];
    const double err = std::fabs(fd - an);
    if (std::fabs(fd) + std::fabs(an) > 1e-6) worst = std::max(worst, err / (std::fabs(fd) + std::fabs(an)));
    EXPECT_LE(err, 1e-6 * (std::fabs(fd) + std::fabs(an)) + 1e-10)
        << what << ": element " << i << " of " << x.size() << " (x = " << orig << "), finite difference " << fd
        << ", analytic " << an;
  }
  char text[32];
  std::snprintf(text, sizeof text, "%.2e", worst);
  ::testing::Test::RecordProperty(what + "_worst_relative_error", text);
}

// Runs grad on top of a random prefilled gradient and returns the increment (tests the += contract).
template <class View, class GradCall>
View gradient_increment(View const& like, std::uint32_t seed, GradCall const& call, double* returned_value) {
  View d = clone_shape(like, "d");
  fill_normal(d, seed);
  View before = clone_shape(like, "before");
  Kokkos::deep_copy(before, d);
  *returned_value = call(d);
  for (std::size_t i = 0; i < d.size(); ++i) d.data()[i] -= before.data()[i];
  return d;
}

// ---------------------------------------------------------------------------------------------------------
// naive host references (explicit zero padding, plain loops; independent of the kernels)

double stencil_naive(double const (&s)[3][3], W4 const& w, int o, int c, int y, int x) {
  const int h = int(w.extent(2)), wd = int(w.extent(3));
  double sum = 0;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      const int yy = y + i - 1, xx = x + j - 1;
      const double v = (yy >= 0 && yy < h && xx >= 0 && xx < wd) ? w(o, c, yy, xx) : 0.0;
      sum += s[i][j] * v;
    }
  return sum;
}
constexpr double kEcker[3][3] = {{0.25, 0.5, 0.25}, {0.5, -3.0, 0.5}, {0.25, 0.5, 0.25}};
constexpr double kLurz[3][3] = {{0, -1, 0}, {-1, 4, -1}, {0, -1, 0}};

double smoothness_naive(W4 const& w, double weight) {
  double total = 0;
  for (std::size_t o = 0; o < w.extent(0); ++o) {
    double num = 0, den = 1e-8;
    for (std::size_t c = 0; c < w.extent(1); ++c)
      for (std::size_t y = 0; y < w.extent(2); ++y)
        for (std::size_t x = 0; x < w.extent(3); ++x) {
          const double l = stencil_naive(kEcker, w, int(o), int(c), int(y), int(x));
          num += l * l;
          den += w(o, c, y, x) * w(o, c, y, x);
        }
    total += num / den;
  }
  return weight * total;
}

double group_sparsity_naive(W4 const& w, double weight) {
  double total = 0;
  for (std::size_t o = 0; o < w.extent(0); ++o) {
    double groups = 0, all = 1e-8;
    for (std::size_t c = 0; c < w.extent(1); ++c) {
      double g = 0;
      for (std::size_t y = 0; y < w.extent(2); ++y)
        for (std::size_t x = 0; x < w.extent(3); ++x) g += w(o, c, y, x) * w(o, c, y, x);
      groups += std::sqrt(g);
      all += g;
    }
    total += groups / std::sqrt(all);
  }
  return weight * total;
}

double laplace_l2_naive(W4 const& w, double weight) {
  double num = 0, den = 0;
  for (std::size_t o = 0; o < w.extent(0); ++o)
    for (std::size_t c = 0; c < w.extent(1); ++c)
      for (std::size_t y = 0; y < w.extent(2); ++y)
        for (std::size_t x = 0; x < w.extent(3); ++x) {
          const double l = stencil_naive(kLurz, w, int(o), int(c), int(y), int(x));
          num += l * l;
          den += w(o, c, y, x) * w(o, c, y, x);
        }
  return weight * num / den;
}

double joint_l1_naive(W3 const& m, W2 const& f, double weight) {
  double total = 0;
  for (std::size_t n = 0; n < m.extent(0); ++n) {
    double sm = 0, sf = 0;
    for (std::size_t y = 0; y < m.extent(1); ++y)
      for (std::size_t x = 0; x < m.extent(2); ++x) sm += std::fabs(m(n, y, x));
    for (std::size_t c = 0; c < f.extent(1); ++c) sf += std::fabs(f(n, c));
    total += sm * sf;
  }
  return weight * total;
}

template <class View>
double sum_abs(View const& v) {
  double s = 0;
  for (std::size_t i = 0; i < v.size(); ++i) s += std::fabs(v.data()[i]);
  return s;
}
template <class View>
double sum_sq(View const& v) {
  double s = 0;
  for (std::size_t i = 0; i < v.size(); ++i) s += v.data()[i] * v.data()[i];
  return s;
}

// ---------------------------------------------------------------------------------------------------------
// ParamArena

template <class T>
void check_arena_layout() {
  Arena<T> arena("test_arena");
  const int a = arena.add("core/layer0/weight", 3, 1, 5, 5);  // 75 elements: forces padding
  const int b = arena.add("core/layer0/bn_beta", 3);
  const int c = arena.add_buffer("core/layer0/bn_mean", 3);
  const int d = arena.add("readout/mask", 7, 4, 5);
  const int e = arena.add("readout/features", std::size_t(7), 6u);
  const int z = arena.add("empty", 0);
  arena.allocate();

  ASSERT_EQ(arena.num_slots(), 6);
  EXPECT_EQ(arena.index_of("readout/mask"), d);
  EXPECT_EQ(arena.find("nope"), -1);
  EXPECT_FALSE(arena.slot(c).trainable);
  EXPECT_TRUE(arena.slot(a).trainable);
  EXPECT_EQ(arena.num_trainable_elements(), std::size_t(75 + 3 + 140 + 42));

  const std::size_t align = 64 / sizeof(T);
  std::size_t end = 0;
  for (ParamSlot const& s : arena.slots()) {
    EXPECT_EQ(s.offset % align, 0u) << s.name;
    EXPECT_GE(s.offset, end) << s.name << " overlaps the previous slot";
    std::size_t prod = 1;
    for (int r = 0; r < s.rank; ++r) prod *= s.extents[std::size_t(r)];
    EXPECT_EQ(prod, s.size) << s.name;
    end = s.offset + s.size;
  }
  EXPECT_GE(arena.size(), end);
  EXPECT_EQ(arena.size() % align, 0u);
  EXPECT_EQ(arena.slot(z).size, 0u);

  // Every slot view starts on a 64-byte boundary in all four buffers and has the registered extents.
  for (int s : {a, b, c, d, e}) {
    for (T* p : {arena.params().data() + arena.slot(s).offset, arena.grads().data() + arena.slot(s).offset,
                 arena.adam_m().data() + arena.slot(s).offset, arena.adam_v().data() + arena.slot(s).offset})
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 64, 0u) << arena.slot(s).name;
  }
  auto w = arena.template param<4>(a);
  EXPECT_EQ(w.extent(0), 3u);
  EXPECT_EQ(w.extent(3), 5u);
  auto mask = arena.template grad<3>(d);
  EXPECT_EQ(mask.extent(1), 4u);
  auto feat = arena.template adam_m<2>(e);
  EXPECT_EQ(feat.extent(1), 6u);
  EXPECT_EQ(arena.template adam_v<1>(b).extent(0), 3u);
  EXPECT_FALSE(w.use_count() > 1) << "slot views must be unmanaged";

  // LayoutRight mapping: element (i, j, k, l) of a slot is flat[offset + ((i*e1 + j)*e2 + k)*e3 + l].
  auto flat = arena.params();
  for (std::size_t i = 0; i < flat.size(); ++i) flat(i) = T(i);
  const std::size_t off = arena.slot(a).offset;
  EXPECT_EQ(w(2, 0, 3, 4), T(off + ((2 * 1 + 0) * 5 + 3) * 5 + 4));
  auto m = arena.template param<3>(d);
  EXPECT_EQ(m(6, 3, 1), T(arena.slot(d).offset + (6 * 4 + 3) * 5 + 1));
  auto mf = arena.param_flat(d);
  EXPECT_EQ(mf.extent(0), 140u);
  EXPECT_EQ(mf(0), T(arena.slot(d).offset));
  EXPECT_EQ(arena.grad_flat(e).data(), arena.grads().data() + arena.slot(e).offset);
}

TEST(ParamArena, SlotLayoutAlignmentAndViewsDouble) { check_arena_layout<double>(); }
TEST(ParamArena, SlotLayoutAlignmentAndViewsFloat) { check_arena_layout<float>(); }

TEST(ParamArena, AllocationZeroFillsEveryBuffer) {
  Arena<double> arena;
  arena.add("a", 5);
  arena.add("b", 3, 3);
  arena.allocate();
  for (auto v : {arena.params(), arena.grads(), arena.adam_m(), arena.adam_v()})
    for (std::size_t i = 0; i < v.size(); ++i) ASSERT_EQ(v(i), 0.0);
  EXPECT_EQ(arena.adam_step(), 0);
}

TEST(ParamArena, MisuseGivesTypedErrors) {
  Arena<double> arena("model");
  const int a = arena.add("a", 2, 3);
  EXPECT_THROW(arena.add("a", 4), ShapeError);
  EXPECT_THROW(arena.add("", 4), ShapeError);
  EXPECT_THROW(arena.add("neg", 2, -1), ShapeError);
  EXPECT_THROW(arena.add_slot("rank5", {1, 1, 1, 1, 1}), ShapeError);
  EXPECT_THROW(arena.params(), Error);
  arena.allocate();
  EXPECT_THROW(arena.add("late", 1), Error);
  EXPECT_THROW(arena.allocate(), Error);
  EXPECT_THROW(arena.param<3>(a), ShapeError);
  EXPECT_THROW(arena.param<2>(7), ShapeError);
  EXPECT_THROW(arena.set_adam_step(-1), Error);
  try {
    arena.index_of("core/missing");
    FAIL() << "index_of of an unknown name must throw";
  } catch (ShapeError const& e) {
    EXPECT_NE(std::string(e.what()).find("core/missing"), std::string::npos) << e.what();
  }
  Arena<double> fresh;
  fresh.add("x", 1);
  fresh.allocate();
  EXPECT_THROW(fresh.restore(Host()), Error);
}

TEST(ParamArena, ZeroGradClearsAllGradientsOnly) {
  Arena<double> arena;
  arena.add("a", 3, 5);
  arena.add_buffer("b", 4);
  arena.allocate();
  Kokkos::deep_copy(arena.grads(), 1.5);
  Kokkos::deep_copy(arena.params(), 2.0);
  arena.zero_grad(Host());
  Host().fence();
  for (std::size_t i = 0; i < arena.size(); ++i) {
    ASSERT_EQ(arena.grads()(i), 0.0);
    ASSERT_EQ(arena.params()(i), 2.0);
  }
}

TEST(ParamArena, SnapshotRestoreRoundTripWithoutReallocation) {
  Arena<double> arena;
  arena.add("a", 4, 3);
  arena.add_buffer("running_mean", 3);
  arena.add("b", 9);
  arena.allocate();
  fill_normal(arena.params(), 1);
  fill_normal(arena.adam_m(), 2);
  fill_normal(arena.adam_v(), 3);
  arena.set_adam_step(7);
  std::vector<double> p0(arena.params().data(), arena.params().data() + arena.size());
  std::vector<double> m0(arena.adam_m().data(), arena.adam_m().data() + arena.size());
  std::vector<double> v0(arena.adam_v().data(), arena.adam_v().data() + arena.size());

  arena.snapshot(Host());
  ASSERT_TRUE(arena.has_snapshot());
  EXPECT_EQ(arena.last_snapshot().adam_step, 7);
  const double* storage = arena.last_snapshot().params.data();
  EXPECT_NE(storage, arena.params().data()) << "a snapshot must not alias the arena";

  fill_normal(arena.params(), 4);
  fill_normal(arena.adam_m(), 5);
  fill_normal(arena.adam_v(), 6);
  arena.set_adam_step(12);
  arena.restore(Host());
  EXPECT_EQ(arena.adam_step(), 7);
  for (std::size_t i = 0; i < arena.size(); ++i) {
    ASSERT_EQ(arena.params()(i), p0[i]) << i;
    ASSERT_EQ(arena.adam_m()(i), m0[i]) << i;
    ASSERT_EQ(arena.adam_v()(i), v0[i]) << i;
  }

  // A second snapshot reuses the host buffers of the first one and then holds the newer state.
  arena.params()(0) = 42.0;
  arena.set_adam_step(8);
  arena.snapshot(Host());
  EXPECT_EQ(arena.last_snapshot().params.data(), storage);
  arena.params()(0) = -1.0;
  arena.restore(Host());
  EXPECT_EQ(arena.params()(0), 42.0);
  EXPECT_EQ(arena.adam_step(), 8);
}

TEST(ParamArena, SlotMaskWithPrefix) {
  Arena<double> arena;
  arena.add("core/layer0/weight", 2, 1, 3, 3);
  arena.add("readout/mask", 2, 3, 3);
  arena.add("core/layer1/weight", 2, 2, 3, 3);
  const std::vector<bool> mask = slot_mask_with_prefix(arena.slots(), "core/");
  EXPECT_EQ(mask, (std::vector<bool>{true, false, true}));
}

// ---------------------------------------------------------------------------------------------------------
// Adam

TEST(Adam, OneStepMatchesClosedForm) {
  Arena<double> arena;
  const int a = arena.add("a", 2, 3);
  const int b = arena.add("b", 4);
  arena.allocate();
  fill_normal(arena.params(), 10);
  fill_normal(arena.grads(), 11);
  // Padding is not a parameter: keep it zero, as the arena guarantees after allocation.
  std::vector<double> p0(arena.size()), g(arena.size());
  for (int s : {a, b})
    for (std::size_t i = arena.slot(s).offset; i < arena.slot(s).offset + arena.slot(s).size; ++i) {
      p0[i] = arena.params()(i);
      g[i] = arena.grads()(i);
    }
  for (std::size_t i = 0; i < arena.size(); ++i) {
    arena.params()(i) = p0[i];
    arena.grads()(i) = g[i];
  }
  AdamConfig cfg;  // lr 0.002, TF defaults
  adam_step(Host(), arena, cfg);
  Host().fence();
  EXPECT_EQ(arena.adam_step(), 1);
  const double lr1 = 0.002 * std::sqrt(1 - 0.999) / (1 - 0.9);
  EXPECT_NEAR(adam_step_size(cfg, 1), lr1, 1e-18);
  for (std::size_t i = 0; i < arena.size(); ++i) {
    const double m1 = 0.1 * g[i];
    const double v1 = 0.001 * g[i] * g[i];
    const double p1 = p0[i] - lr1 * m1 / (std::sqrt(v1) + 1e-8);
    EXPECT_NEAR(arena.adam_m()(i), m1, 1e-15 * (1 + std::fabs(m1))) << i;
    EXPECT_NEAR(arena.adam_v()(i), v1, 1e-15 * (1 + std::fabs(v1))) << i;
    EXPECT_NEAR(arena.params()(i), p1, 1e-14) << i;
  }
}

TEST(Adam, SeveralStepsWithConstantGradientMatchClosedForm) {
  // With a constant gradient g: m_t = (1 - b1^t) g, v_t = (1 - b2^t) g^2, and
  // p_t = p_0 - sum_s lr sqrt(1-b2^s)/(1-b1^s) * (1-b1^s) g / (sqrt(1-b2^s) |g| + eps).
  Arena<double> arena;
  arena.add("x", 5);
  arena.allocate();
  const double g[5] = {0.3, -2.0, 1e-3, 5.0, -0.07};
  const double p0[5] = {1.0, -0.5, 0.25, 0.0, 3.0};
  for (int i = 0; i < 5; ++i) arena.params()(i) = p0[i];
  AdamConfig cfg;
  cfg.learning_rate = 0.01;
  cfg.beta1 = 0.8;
  cfg.beta2 = 0.99;
  cfg.epsilon = 1e-3;  // large, so that the epsilon placement (TF's) matters for the small gradient
  const int steps = 6;
  for (int t = 1; t <= steps; ++t) {
    for (int i = 0; i < 5; ++i) arena.grads()(i) = g[i];
    adam_step(Host(), arena, cfg);
  }
  Host().fence();
  EXPECT_EQ(arena.adam_step(), steps);
  for (int i = 0; i < 5; ++i) {
    double p = p0[i];
    for (int s = 1; s <= steps; ++s) {
      const double c1 = 1 - std::pow(cfg.beta1, s), c2 = 1 - std::pow(cfg.beta2, s);
      p -= cfg.learning_rate * std::sqrt(c2) / c1 * (c1 * g[i]) / (std::sqrt(c2) * std::fabs(g[i]) + cfg.epsilon);
    }
    const double mt = (1 - std::pow(cfg.beta1, steps)) * g[i];
    const double vt = (1 - std::pow(cfg.beta2, steps)) * g[i] * g[i];
    EXPECT_NEAR(arena.adam_m()(i), mt, 1e-14 * (1 + std::fabs(mt))) << i;
    EXPECT_NEAR(arena.adam_v()(i), vt, 1e-14 * (1 + vt)) << i;
    EXPECT_NEAR(arena.params()(i), p, 1e-13) << i;
  }
}

TEST(Adam, FrozenAndBufferSlotsAreUntouchedAndPaddingStaysZero) {
  Arena<double> arena;
  const int core = arena.add("core/w", 3);
  const int buffer = arena.add_buffer("core/bn_mean", 3);
  const int readout = arena.add("readout/f", 3);
  arena.allocate();
  for (int s : {core, buffer, readout}) {
    auto p = arena.param<1>(s);
    auto gr = arena.grad<1>(s);
    for (std::size_t i = 0; i < 3; ++i) {
      p(i) = 1.0 + double(i);
      gr(i) = 0.5 - double(i);
    }
  }
  const std::vector<bool> frozen = slot_mask_with_prefix(arena.slots(), "core/");
  adam_step(Host(), arena, AdamConfig{}, frozen);
  Host().fence();
  for (int s : {core, buffer}) {
    for (std::size_t i = 0; i < 3; ++i) {
      EXPECT_EQ(arena.param<1>(s)(i), 1.0 + double(i)) << arena.slot(s).name;
      EXPECT_EQ(arena.adam_m<1>(s)(i), 0.0) << arena.slot(s).name;
      EXPECT_EQ(arena.adam_v<1>(s)(i), 0.0) << arena.slot(s).name;
    }
  }
  for (std::size_t i = 0; i < 3; ++i) EXPECT_NE(arena.param<1>(readout)(i), 1.0 + double(i));
  // Without the mask the buffer is still never updated, the core is.
  adam_step(Host(), arena, AdamConfig{});
  Host().fence();
  EXPECT_NE(arena.param<1>(core)(0), 1.0);
  EXPECT_EQ(arena.param<1>(buffer)(0), 1.0);
  EXPECT_EQ(arena.adam_step(), 2);
  // Padding between slots (3 doubles per slot, 8 per alignment unit) stays exactly zero.
  std::vector<bool> is_slot(arena.size(), false);
  for (ParamSlot const& s : arena.slots())
    for (std::size_t i = s.offset; i < s.offset + s.size; ++i) is_slot[i] = true;
  for (std::size_t i = 0; i < arena.size(); ++i)
    if (!is_slot[i]) EXPECT_EQ(arena.params()(i), 0.0) << "padding element " << i;
}

TEST(Adam, BadArgumentsGiveTypedErrors) {
  Arena<double> arena;
  arena.add("x", 2);
  arena.add("y", 2);
  arena.allocate();
  EXPECT_THROW(adam_step(Host(), arena, AdamConfig{}, std::vector<bool>{true}), ShapeError);
  AdamConfig bad;
  bad.learning_rate = 0;
  EXPECT_THROW(adam_step(Host(), arena, bad), ConfigError);
  bad = AdamConfig{};
  bad.beta2 = 1.0;
  EXPECT_THROW(adam_step(Host(), arena, bad), ConfigError);
  EXPECT_EQ(arena.adam_step(), 0) << "a rejected step must not advance the counter";
}

// ---------------------------------------------------------------------------------------------------------
// Regularisers: hand-computed values

TEST(Regularizers, HandComputedValues) {
  // A centred delta in a 3x3 filter: L*W is L itself, so sum (L*W)^2 = sum L^2.
  W4 delta("delta", 1, 1, 3, 3);
  delta(0, 0, 1, 1) = 1.0;
  EXPECT_NEAR(layers::conv_smoothness_value(Host(), delta, 1.0), (4 * 0.0625 + 4 * 0.25 + 9.0) / (1 + 1e-8), 1e-12);
  EXPECT_NEAR(layers::laplace_l2_value(Host(), delta, 2.0), 2.0 * (16.0 + 4.0), 1e-12);
  // Two input-channel groups with norms 3 and 4: (3 + 4) / sqrt(25).
  W4 groups("groups", 1, 2, 2, 2);
  groups(0, 0, 1, 0) = 3.0;
  groups(0, 1, 0, 1) = -4.0;
  EXPECT_NEAR(layers::conv_group_sparsity_value(Host(), groups, 0.5), 0.5 * 7.0 / std::sqrt(25 + 1e-8), 1e-12);
  // Readout: one neuron, mask [1, -2], features [3, -1]: (1 + 2) (3 + 1) = 12.
  W3 m("m", 1, 1, 2);
  W2 f("f", 1, 2);
  m(0, 0, 0) = 1;
  m(0, 0, 1) = -2;
  f(0, 0) = 3;
  f(0, 1) = -1;
  EXPECT_NEAR(layers::readout_joint_l1_value(Host(), m, f, 0.1), 1.2, 1e-12);
  EXPECT_NEAR(layers::readout_separate_l1_value(Host(), m, f, 0.1, 0.01), 0.1 * 3 + 0.01 * 4, 1e-12);
  EXPECT_NEAR(layers::readout_l1_mask_l2_features_value(Host(), m, f, 0.1, 0.01), 0.1 * 3 + 0.01 * 10, 1e-12);
  // Zero weight: nothing is computed and nothing added.
  W2 df("df", 1, 2);
  W3 dm("dm", 1, 1, 2);
  EXPECT_EQ(layers::readout_joint_l1_grad(Host(), m, f, 0.0, dm, df), 0.0);
  EXPECT_EQ(sum_abs(df) + sum_abs(dm), 0.0);
  // All-zero weights: the reference's 0/0 is defined as 0 here, and no gradient.
  W4 zero("zero", 2, 1, 3, 3), dzero("dzero", 2, 1, 3, 3);
  EXPECT_EQ(layers::laplace_l2_grad(Host(), zero, 1.0, dzero), 0.0);
  EXPECT_EQ(layers::conv_group_sparsity_grad(Host(), zero, 1.0, dzero), 0.0);
  EXPECT_EQ(layers::conv_smoothness_grad(Host(), zero, 1.0, dzero), 0.0);
  EXPECT_EQ(sum_abs(dzero), 0.0);
}

// ---------------------------------------------------------------------------------------------------------
// Regularisers: naive references on random tensors and finite differences

TEST(Regularizers, ConvSmoothnessMatchesNaiveAndFiniteDifferences) {
  for (int k : {3, 5}) {
    W4 w("w", 3, 2, k, k);
    fill_normal(w, 20 + std::uint32_t(k));
    const double weight = 0.7;
    EXPECT_NEAR(layers::conv_smoothness_value(Host(), w, weight), smoothness_naive(w, weight),
                1e-12 * smoothness_naive(w, weight));
    double returned = 0;
    W4 g = gradient_increment(w, 21, [&](W4 const& d) { return layers::conv_smoothness_grad(Host(), w, weight, d); },
                              &returned);
    EXPECT_NEAR(returned, smoothness_naive(w, weight), 1e-12 * returned);
    expect_gradient_matches_fd("conv_smoothness_k" + std::to_string(k), w, g,
                               [&]() { return layers::conv_smoothness_value(Host(), w, weight); });
  }
}

TEST(Regularizers, ConvSmoothnessNonSquareKernel) {
  W4 w("w", 2, 3, 4, 6);
  fill_normal(w, 25);
  EXPECT_NEAR(layers::conv_smoothness_value(Host(), w, 1.0), smoothness_naive(w, 1.0), 1e-12 * smoothness_naive(w, 1.0));
  double returned = 0;
  W4 g = gradient_increment(w, 26, [&](W4 const& d) { return layers::conv_smoothness_grad(Host(), w, 1.0, d); }, &returned);
  expect_gradient_matches_fd("conv_smoothness_4x6", w, g, [&]() { return layers::conv_smoothness_value(Host(), w, 1.0); });
}

TEST(Regularizers, ConvGroupSparsityMatchesNaiveAndFiniteDifferences) {
  W4 w("w", 3, 4, 5, 5);
  fill_normal(w, 30);
  // One input group of filter 1 exactly zero: its gradient is defined as 0, which is also what the
  // symmetric central difference gives there.
  for (int y = 0; y < 5; ++y)
    for (int x = 0; x < 5; ++x) w(1, 2, y, x) = 0.0;
  const double weight = 1.3;
  EXPECT_NEAR(layers::conv_group_sparsity_value(Host(), w, weight), group_sparsity_naive(w, weight),
              1e-12 * group_sparsity_naive(w, weight));
  double returned = 0;
  W4 g = gradient_increment(w, 31, [&](W4 const& d) { return layers::conv_group_sparsity_grad(Host(), w, weight, d); },
                            &returned);
  EXPECT_NEAR(returned, group_sparsity_naive(w, weight), 1e-12 * returned);
  for (int y = 0; y < 5; ++y)
    for (int x = 0; x < 5; ++x) EXPECT_EQ(g(1, 2, y, x), 0.0);
  expect_gradient_matches_fd("conv_group_sparsity", w, g,
                             [&]() { return layers::conv_group_sparsity_value(Host(), w, weight); });
}

TEST(Regularizers, LaplaceL2MatchesNaiveAndFiniteDifferences) {
  W4 w("w", 4, 1, 7, 7);  // Lurz: first layer, one input channel
  fill_normal(w, 40);
  const double gamma_input = 1.0;
  EXPECT_NEAR(layers::laplace_l2_value(Host(), w, gamma_input), laplace_l2_naive(w, gamma_input),
              1e-12 * laplace_l2_naive(w, gamma_input));
  double returned = 0;
  W4 g = gradient_increment(w, 41, [&](W4 const& d) { return layers::laplace_l2_grad(Host(), w, gamma_input, d); },
                            &returned);
  EXPECT_NEAR(returned, laplace_l2_naive(w, gamma_input), 1e-12 * returned);
  expect_gradient_matches_fd("laplace_l2", w, g, [&]() { return layers::laplace_l2_value(Host(), w, gamma_input); });
}

TEST(Regularizers, ReadoutJointL1MatchesNaiveAndFiniteDifferences) {
  W3 m("m", 5, 4, 3);
  W2 f("f", 5, 6);
  fill_away_from_zero(m, 50);
  fill_away_from_zero(f, 51);
  const double weight = 0.02;
  EXPECT_NEAR(layers::readout_joint_l1_value(Host(), m, f, weight), joint_l1_naive(m, f, weight),
              1e-12 * joint_l1_naive(m, f, weight));
  W3 dm("dm", 5, 4, 3);
  W2 df("df", 5, 6);
  fill_normal(dm, 52);
  fill_normal(df, 53);
  W3 dm0("dm0", 5, 4, 3);
  W2 df0("df0", 5, 6);
  Kokkos::deep_copy(dm0, dm);
  Kokkos::deep_copy(df0, df);
  const double returned = layers::readout_joint_l1_grad(Host(), m, f, weight, dm, df);
  EXPECT_NEAR(returned, joint_l1_naive(m, f, weight), 1e-12 * returned);
  for (std::size_t i = 0; i < dm.size(); ++i) dm.data()[i] -= dm0.data()[i];
  for (std::size_t i = 0; i < df.size(); ++i) df.data()[i] -= df0.data()[i];
  auto value = [&]() { return layers::readout_joint_l1_value(Host(), m, f, weight); };
  expect_gradient_matches_fd("readout_joint_l1_mask", m, dm, value);
  expect_gradient_matches_fd("readout_joint_l1_features", f, df, value);
}

TEST(Regularizers, ReadoutTable1ControlsMatchNaiveAndFiniteDifferences) {
  W3 m("m", 4, 3, 3);
  W2 f("f", 4, 5);
  fill_away_from_zero(m, 60);
  fill_away_from_zero(f, 61);
  const double mw = 0.03, fw = 0.2;
  struct Case {
    std::string name;
    std::function<double()> value;
    std::function<double(W3 const&, W2 const&)> grad;
    double naive;
  };
  const std::vector<Case> cases = {
      {"separate_l1", [&]() { return layers::readout_separate_l1_value(Host(), m, f, mw, fw); },
       [&](W3 const& dm, W2 const& df) { return layers::readout_separate_l1_grad(Host(), m, f, mw, fw, dm, df); },
       mw * sum_abs(m) + fw * sum_abs(f)},
      {"l1_mask_l2_features", [&]() { return layers::readout_l1_mask_l2_features_value(Host(), m, f, mw, fw); },
       [&](W3 const& dm, W2 const& df) { return layers::readout_l1_mask_l2_features_grad(Host(), m, f, mw, fw, dm, df); },
       mw * sum_abs(m) + fw * sum_sq(f)},
  };
  for (Case const& c : cases) {
    EXPECT_NEAR(c.value(), c.naive, 1e-12 * c.naive) << c.name;
    // Prefilled gradients: the increment is checked, so "=" instead of "+=" would fail.
    W3 dm("dm", 4, 3, 3), dm0("dm0", 4, 3, 3);
    W2 df("df", 4, 5), df0("df0", 4, 5);
    fill_normal(dm, 62);
    fill_normal(df, 63);
    Kokkos::deep_copy(dm0, dm);
    Kokkos::deep_copy(df0, df);
    EXPECT_NEAR(c.grad(dm, df), c.naive, 1e-12 * c.naive) << c.name;
    for (std::size_t i = 0; i < dm.size(); ++i) dm.data()[i] -= dm0.data()[i];
    for (std::size_t i = 0; i < df.size(); ++i) df.data()[i] -= df0.data()[i];
    expect_gradient_matches_fd(c.name + "_mask", m, dm, c.value);
    expect_gradient_matches_fd(c.name + "_features", f, df, c.value);
  }
}

TEST(Regularizers, ElementwiseL1AndL2OnAnArenaSlot) {
  // Lurz's gamma_readout * sum |features| on a feature slot of an arena, through param_flat/grad_flat.
  Arena<double> arena;
  const int feat = arena.add("readout/features", 6, 4);
  arena.allocate();
  fill_away_from_zero(arena.param<2>(feat), 70);
  const double gamma_readout = 2.439;
  W1 x = arena.param_flat(feat);
  W1 dx = arena.grad_flat(feat);
  double returned = 0;
  W1 g = gradient_increment(dx, 71, [&](W1 const& d) { return layers::l1_grad(Host(), x, gamma_readout, d); }, &returned);
  EXPECT_NEAR(returned, gamma_readout * sum_abs(x), 1e-12);
  expect_gradient_matches_fd("l1", x, g, [&]() { return layers::l1_value(Host(), x, gamma_readout); });
  g = gradient_increment(dx, 72, [&](W1 const& d) { return layers::l2_grad(Host(), x, 0.5, d); }, &returned);
  EXPECT_NEAR(returned, 0.5 * sum_sq(x), 1e-12);
  expect_gradient_matches_fd("l2", x, g, [&]() { return layers::l2_value(Host(), x, 0.5); });
  // Through the arena's own gradient view: accumulates on top of what is there.
  Kokkos::deep_copy(dx, 1.0);
  layers::l1_grad(Host(), x, gamma_readout, dx);
  Host().fence();
  for (std::size_t i = 0; i < dx.size(); ++i) EXPECT_DOUBLE_EQ(dx(i), 1.0 + gamma_readout * (x(i) > 0 ? 1 : -1));
}

TEST(Regularizers, AbsoluteValueGradientIsZeroAtZero) {
  // sign(0) = 0: a weight that is exactly 0 gets no L1 gradient (and the joint L1 of a neuron whose mask is
  // zero gives its features none either).
  W1 x("x", 3), dx("dx", 3);
  x(0) = 0.0;
  x(1) = -0.5;
  x(2) = 2.0;
  layers::l1_grad(Host(), x, 1.0, dx);
  EXPECT_EQ(dx(0), 0.0);
  EXPECT_EQ(dx(1), -1.0);
  EXPECT_EQ(dx(2), 1.0);
  W3 m("m", 2, 1, 2), dm("dm", 2, 1, 2);
  W2 f("f", 2, 2), df("df", 2, 2);
  m(0, 0, 0) = 0.0;  // neuron 0: mask [0, 0.5]
  m(0, 0, 1) = 0.5;
  f(0, 0) = 0.0;     // neuron 0: features [0, -1]
  f(0, 1) = -1.0;
  f(1, 0) = 3.0;     // neuron 1: zero mask
  f(1, 1) = 1.0;
  layers::readout_joint_l1_grad(Host(), m, f, 1.0, dm, df);
  EXPECT_EQ(dm(0, 0, 0), 0.0);
  EXPECT_EQ(dm(0, 0, 1), 1.0);   // sign(0.5) * (|0| + |-1|)
  EXPECT_EQ(df(0, 0), 0.0);
  EXPECT_EQ(df(0, 1), -0.5);     // sign(-1) * (|0| + |0.5|)
  EXPECT_EQ(df(1, 0), 0.0);      // zero mask: sum |M_1| = 0
  EXPECT_EQ(dm(1, 0, 0), 0.0);   // M = 0 exactly
}

TEST(Regularizers, ArenaSlotViewsWorkWithConvRegularizers) {
  // The model passes arena slot views straight in: check they accumulate into the right slot only.
  Arena<double> arena;
  const int w0 = arena.add("core/layer0/weight", 2, 1, 5, 5);
  const int w1 = arena.add("core/layer1/weight", 3, 2, 3, 3);
  arena.allocate();
  fill_normal(arena.param<4>(w0), 80);
  fill_normal(arena.param<4>(w1), 81);
  const double v = layers::conv_group_sparsity_grad(Host(), arena.param<4>(w1), 1.0, arena.grad<4>(w1));
  EXPECT_NEAR(v, group_sparsity_naive(arena.param<4>(w1), 1.0), 1e-12 * v);
  EXPECT_EQ(sum_abs(arena.grad_flat(w0)), 0.0);
  EXPECT_GT(sum_abs(arena.grad_flat(w1)), 0.0);
}

TEST(Regularizers, FloatStorageAgreesWithDouble) {
  // Training stores float: the float instantiations must give the double results to float precision.
  Arena<float> fa;
  Arena<double> da;
  const int fw = fa.add("w", 4, 3, 5, 5), fm = fa.add("m", 6, 4, 4), ff = fa.add("f", 6, 12);
  const int dw = da.add("w", 4, 3, 5, 5), dm = da.add("m", 6, 4, 4), df = da.add("f", 6, 12);
  fa.allocate();
  da.allocate();
  fill_normal(da.param<4>(dw), 90);
  fill_away_from_zero(da.param<3>(dm), 91);
  fill_away_from_zero(da.param<2>(df), 92);
  for (std::size_t i = 0; i < da.size(); ++i) fa.params()(i) = static_cast<float>(da.params()(i));
  for (std::size_t i = 0; i < da.size(); ++i) da.params()(i) = static_cast<double>(fa.params()(i));
  const double vd = layers::conv_smoothness_grad(Host(), da.param<4>(dw), 0.3, da.grad<4>(dw)) +
                    layers::conv_group_sparsity_grad(Host(), da.param<4>(dw), 0.2, da.grad<4>(dw)) +
                    layers::laplace_l2_grad(Host(), da.param<4>(dw), 0.1, da.grad<4>(dw)) +
                    layers::readout_joint_l1_grad(Host(), da.param<3>(dm), da.param<2>(df), 0.05, da.grad<3>(dm),
                                          da.grad<2>(df));
  const double vf = layers::conv_smoothness_grad(Host(), fa.param<4>(fw), 0.3, fa.grad<4>(fw)) +
                    layers::conv_group_sparsity_grad(Host(), fa.param<4>(fw), 0.2, fa.grad<4>(fw)) +
                    layers::laplace_l2_grad(Host(), fa.param<4>(fw), 0.1, fa.grad<4>(fw)) +
                    layers::readout_joint_l1_grad(Host(), fa.param<3>(fm), fa.param<2>(ff), 0.05, fa.grad<3>(fm),
                                          fa.grad<2>(ff));
  Host().fence();
  EXPECT_NEAR(vf, vd, 1e-12 * vd) << "values are accumulated in double from the same (float) inputs";
  double scale = 0;
  for (std::size_t i = 0; i < da.size(); ++i) scale = std::max(scale, std::fabs(da.grads()(i)));
  for (std::size_t i = 0; i < da.size(); ++i)
    EXPECT_NEAR(fa.grads()(i), da.grads()(i), 2e-6 * scale) << "element " << i;
  // One Adam step in float against the double one.
  adam_step(Host(), fa, AdamConfig{});
  adam_step(Host(), da, AdamConfig{});
  Host().fence();
  for (std::size_t i = 0; i < da.size(); ++i) EXPECT_NEAR(fa.params()(i), da.params()(i), 1e-6) << i;
}

TEST(Regularizers, MismatchedShapesGiveShapeError) {
  W4 w("w", 2, 1, 3, 3), dw("dw", 2, 1, 3, 5);
  EXPECT_THROW(layers::conv_smoothness_grad(Host(), w, 1.0, dw), ShapeError);
  EXPECT_THROW(layers::conv_group_sparsity_grad(Host(), w, 1.0, dw), ShapeError);
  EXPECT_THROW(layers::laplace_l2_grad(Host(), w, 1.0, dw), ShapeError);
  W3 m("m", 3, 2, 2);
  W2 f("f", 4, 5), df("df", 3, 5);
  W3 dm("dm", 3, 2, 2);
  EXPECT_THROW(layers::readout_joint_l1_value(Host(), m, f, 1.0), ShapeError);
  W2 f3("f3", 3, 5);
  EXPECT_THROW(layers::readout_joint_l1_grad(Host(), m, f3, 1.0, dm, f), ShapeError);
  EXPECT_NO_THROW(layers::readout_joint_l1_grad(Host(), m, f3, 1.0, dm, df));
}

}  // namespace
