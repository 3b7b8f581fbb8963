// ParamArena: every trainable tensor of a model (and its gradient and Adam moments) carved out of one
// flat buffer each, as llm.c's malloc_and_point_parameters does. Adam, zero_grad, snapshot/restore and
// checkpoint dumps are then single flat operations over params / grads / adam_m / adam_v.
//
// Usage:
//   ParamArena<Real> arena;
//   const int w0 = arena.add("core/layer0/weight", c_out, c_in, k, k);   // register all slots first
//   const int rm = arena.add_buffer("core/layer0/bn_running_mean", c_out); // state Adam never touches
//   arena.allocate();                                                       // then allocate (zeroed)
//   View4<Real> w = arena.param<4>(w0);  View4<Real> d_w = arena.grad<4>(w0);
//
// Layout: slot s occupies [offset, offset + size) of each of the four buffers; offsets are multiples of
// 64 bytes (alignment_elements) so every slot starts on a cache line / coalescing boundary. The padding
// between slots is zero and stays zero (it has zero gradient, so Adam leaves it at zero).
//
// Slot views are LayoutRight Views built from a raw pointer, i.e. unmanaged at run time (no reference
// counting; the arena must outlive them). Their static type is the ordinary View1..View4 alias of
// core/types.hpp so they pass straight into layer kernels.
//
// The Adam step counter t lives here (not in the optimiser) because it is optimiser *state*: it has to be
// saved with m and v in checkpoints and restored with them by "restore the best parameters" in early
// stopping; keeping it next to m and v makes snapshot()/restore() and checkpoint I/O complete by
// construction. AdamConfig (optim/adam.hpp) holds only hyperparameters.
#pragma once

#include "core/error.hpp"
#include "core/types.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace v1sysid {

// One named tensor in the arena. Trailing extents beyond `rank` are 1.
struct ParamSlot {
  std::string name;
  std::size_t offset = 0;  // first element, counted from the start of the arena
  std::size_t size = 0;    // number of elements = product of the extents
  int rank = 0;            // 1..4
  std::array<std::size_t, 4> extents{{1, 1, 1, 1}};
  bool trainable = true;   // false: a buffer (e.g. batch-norm running statistics) Adam never updates
};

// Mask over slots (index = slot index): true for every slot whose name starts with `prefix`.
// Typical use: the frozen-slot mask of adam_step for transfer with a fixed core ("core/").
std::vector<bool> slot_mask_with_prefix(std::vector<ParamSlot> const& slots, std::string_view prefix);

namespace detail {
template <class T, int Rank>
struct RankPointer;
template <class T>
struct RankPointer<T, 1> { using type = T*; };
template <class T>
struct RankPointer<T, 2> { using type = T**; };
template <class T>
struct RankPointer<T, 3> { using type = T***; };
template <class T>
struct RankPointer<T, 4> { using type = T****; };
}  // namespace detail

template <class T, class MemorySpace = MemSpace>
class ParamArena {
  static_assert(std::is_floating_point_v<T>, "ParamArena holds float or double");
  static_assert(64 % sizeof(T) == 0, "slot alignment assumes sizeof(T) divides 64 bytes");

 public:
  using value_type = T;
  using memory_space = MemorySpace;
  using FlatView = View1<T, MemorySpace>;  // (size())
  template <int Rank>
  using SlotView = Kokkos::View<typename detail::RankPointer<T, Rank>::type, Kokkos::LayoutRight, MemorySpace>;

  // Host copy of everything that defines the optimiser state (no gradients: they are recomputed).
  struct HostSnapshot {
    HostView1<T> params;  // (size())
    HostView1<T> adam_m;  // (size())
    HostView1<T> adam_v;  // (size())
    std::int64_t adam_step = 0;
  };

  static constexpr std::size_t alignment_bytes = 64;
  static constexpr std::size_t alignment_elements = alignment_bytes / sizeof(T);

  explicit ParamArena(std::string label = "v1sysid::param_arena");
  // Move-only: a copy would share the buffers but not the snapshot, which is never what is meant.
  ParamArena(ParamArena const&) = delete;
  ParamArena& operator=(ParamArena const&) = delete;
  ParamArena(ParamArena&&) = default;
  ParamArena& operator=(ParamArena&&) = default;

  // ---- registration (before allocate) ------------------------------------------------------------
  // Registers a slot of rank extents.size() (1..4) and returns its index. Throws ShapeError for an empty
  // or duplicate name or a bad rank, Error when called after allocate().
  int add_slot(std::string name, std::vector<std::size_t> const& extents, bool trainable = true);
  template <class... Extent>
  int add(std::string name, Extent... extents) {  // trainable parameter, extents as any integers
    static_assert(sizeof...(Extent) >= 1 && sizeof...(Extent) <= 4, "a slot has rank 1 to 4");
    std::vector<std::size_t> e{to_extent(name, extents)...};
    return add_slot(std::move(name), e, true);
  }
  template <class... Extent>
  int add_buffer(std::string name, Extent... extents) {  // non-trainable state, saved and restored
    static_assert(sizeof...(Extent) >= 1 && sizeof...(Extent) <= 4, "a slot has rank 1 to 4");
    std::vector<std::size_t> e{to_extent(name, extents)...};
    return add_slot(std::move(name), e, false);
  }
  // Allocates the four zero-filled buffers. Throws Error when called twice.
  void allocate();

  // ---- slot table ----------------------------------------------------------------------------------
  bool allocated() const { return m_allocated; }
  std::size_t size() const { return m_size; }  // elements per buffer, alignment padding included
  int num_slots() const { return static_cast<int>(m_slots.size()); }
  std::vector<ParamSlot> const& slots() const { return m_slots; }  // in registration (= offset) order
  ParamSlot const& slot(int index) const;                            // ShapeError when out of range
  int find(std::string_view name) const;                            // -1 when absent
  int index_of(std::string_view name) const;                        // ShapeError when absent
  std::size_t num_trainable_elements() const;                       // sum of trainable slot sizes

  // ---- views (after allocate) ----------------------------------------------------------------------
  FlatView params() const { return checked(m_params); }
  FlatView grads() const { return checked(m_grads); }
  FlatView adam_m() const { return checked(m_adam_m); }
  FlatView adam_v() const { return checked(m_adam_v); }

  // Slot views of the slot's own rank; ShapeError if Rank differs from the slot's rank.
  template <int Rank>
  SlotView<Rank> param(int index) const { return slot_view<Rank>(params(), index); }
  template <int Rank>
  SlotView<Rank> grad(int index) const { return slot_view<Rank>(grads(), index); }
  template <int Rank>
  SlotView<Rank> adam_m(int index) const { return slot_view<Rank>(adam_m(), index); }
  template <int Rank>
  SlotView<Rank> adam_v(int index) const { return slot_view<Rank>(adam_v(), index); }
  // Rank-1 view of a slot of any rank (for element-wise kernels and I/O).
  FlatView param_flat(int index) const { return flat_slot_view(params(), index); }
  FlatView grad_flat(int index) const { return flat_slot_view(grads(), index); }

  // ---- Adam step counter (t of the bias correction; 0 before the first step) -----------------------
  std::int64_t adam_step() const { return m_adam_step; }
  void set_adam_step(std::int64_t step);  // checkpoint loading; Error when negative

  // ---- whole-arena operations ----------------------------------------------------------------------
  // Zeroes every gradient with one flat fill, enqueued on `space`.
  template <class ExecSpace>
  void zero_grad(ExecSpace const& space) const {
    static_assert(Kokkos::SpaceAccessibility<ExecSpace, MemorySpace>::accessible,
                  "ParamArena::zero_grad: the execution space cannot access the arena's memory");
    Kokkos::deep_copy(space, grads(), T(0));
  }

  // Copies params, adam_m, adam_v and the step counter into host memory. The host buffers are allocated
  // by the first call and reused by every later one (no allocation in the training loop). Fences `space`.
  template <class ExecSpace>
  void snapshot(ExecSpace const& space) {
    ensure_snapshot_storage();
    Kokkos::deep_copy(space, m_snapshot.params, params());
    Kokkos::deep_copy(space, m_snapshot.adam_m, adam_m());
    Kokkos::deep_copy(space, m_snapshot.adam_v, adam_v());
    m_snapshot.adam_step = m_adam_step;
    space.fence();
    m_has_snapshot = true;
  }
  // Copies the last snapshot back (params, moments, step counter). Gradients are left as they are.
  // Error when no snapshot was taken. Fences `space`.
  template <class ExecSpace>
  void restore(ExecSpace const& space) {
    if (!m_has_snapshot)
      throw Error("restore() without a snapshot", "ParamArena '" + m_label + "'",
                  "call snapshot() at the best validation loss before restoring it");
    Kokkos::deep_copy(space, params(), m_snapshot.params);
    Kokkos::deep_copy(space, adam_m(), m_snapshot.adam_m);
    Kokkos::deep_copy(space, adam_v(), m_snapshot.adam_v);
    m_adam_step = m_snapshot.adam_step;
    space.fence();
  }
  // Replaces the snapshot with `s` (a resumed training state, train/train_state.hpp): its buffers must hold
  // size() elements each (ShapeError otherwise).
  void set_snapshot(HostSnapshot const& s) {
    if (s.params.extent(0) != m_size || s.adam_m.extent(0) != m_size || s.adam_v.extent(0) != m_size)
      throw ShapeError("a snapshot of " + std::to_string(s.params.extent(0)) + " elements for an arena of " +
                           std::to_string(m_size),
                       "ParamArena '" + m_label + "'", "restore a state saved by the same model");
    ensure_snapshot_storage();
    Kokkos::deep_copy(m_snapshot.params, s.params);
    Kokkos::deep_copy(m_snapshot.adam_m, s.adam_m);
    Kokkos::deep_copy(m_snapshot.adam_v, s.adam_v);
    m_snapshot.adam_step = s.adam_step;
    m_has_snapshot = true;
  }
  bool has_snapshot() const { return m_has_snapshot; }
  HostSnapshot const& last_snapshot() const { return m_snapshot; }  // valid when has_snapshot()

 private:
  template <class I>
  static std::size_t to_extent(std::string const& name, I extent) {
    static_assert(std::is_integral_v<I>, "slot extents are integers");
    if constexpr (std::is_signed_v<I>) {
      if (extent < 0)
        throw ShapeError("negative extent " + std::to_string(extent) + " for parameter slot '" + name + "'",
                         "ParamArena::add", "check the layer sizes in the model configuration");
    }
    return static_cast<std::size_t>(extent);
  }

  FlatView checked(FlatView const& v) const {
    if (!m_allocated)
      throw Error("parameter views requested before allocate()", "ParamArena '" + m_label + "'",
                  "register every slot, then call allocate()");
    return v;
  }
  void check_rank(int index, int rank) const;
  template <int Rank>
  SlotView<Rank> slot_view(FlatView const& flat, int index) const {
    check_rank(index, Rank);
    ParamSlot const& s = m_slots[static_cast<std::size_t>(index)];
    T* ptr = flat.data() + s.offset;
    if constexpr (Rank == 1) return SlotView<1>(ptr, s.extents[0]);
    if constexpr (Rank == 2) return SlotView<2>(ptr, s.extents[0], s.extents[1]);
    if constexpr (Rank == 3) return SlotView<3>(ptr, s.extents[0], s.extents[1], s.extents[2]);
    if constexpr (Rank == 4) return SlotView<4>(ptr, s.extents[0], s.extents[1], s.extents[2], s.extents[3]);
  }
  FlatView flat_slot_view(FlatView const& flat, int index) const {
    ParamSlot const& s = slot(index);
    return FlatView(flat.data() + s.offset, s.size);
  }
  void ensure_snapshot_storage();

  std::string m_label;
  std::vector<ParamSlot> m_slots;
  std::size_t m_size = 0;
  bool m_allocated = false;
  FlatView m_params, m_grads, m_adam_m, m_adam_v;
  std::int64_t m_adam_step = 0;
  HostSnapshot m_snapshot;
  bool m_has_snapshot = false;
  bool m_snapshot_allocated = false;
};

}  // namespace v1sysid
