// ParamArena: slot registration, allocation and lookups (see param_arena.hpp).
#include "core/param_arena.hpp"

#include "core/instantiate.hpp"

#include <utility>

namespace v1sysid {

std::vector<bool> slot_mask_with_prefix(std::vector<ParamSlot> const& slots, std::string_view prefix) {
  std::vector<bool> mask(slots.size(), false);
  for (std::size_t i = 0; i < slots.size(); ++i)
    mask[i] = std::string_view(slots[i].name).substr(0, prefix.size()) == prefix;
  return mask;
}

template <class T, class M>
ParamArena<T, M>::ParamArena(std::string label) : m_label(std::move(label)) {}

template <class T, class M>
int ParamArena<T, M>::add_slot(std::string name, std::vector<std::size_t> const& extents, bool trainable) {
  const std::string where = "ParamArena '" + m_label + "'";
  if (m_allocated)
    throw Error("parameter slot '" + name + "' registered after allocate()", where,
                "register every slot before allocating the arena");
  if (name.empty())
    throw ShapeError("parameter slot without a name", where, "give every slot a unique name");
  if (find(name) >= 0)
    throw ShapeError("duplicate parameter slot '" + name + "'", where, "give every slot a unique name");
  if (extents.empty() || extents.size() > 4)
    throw ShapeError("parameter slot '" + name + "' has rank " + std::to_string(extents.size()), where,
                     "slots have rank 1 to 4");
  ParamSlot slot;
  slot.name = std::move(name);
  slot.rank = static_cast<int>(extents.size());
  slot.size = 1;
  for (std::size_t d = 0; d < extents.size(); ++d) {
    slot.extents[d] = extents[d];
    slot.size *= extents[d];
  }
  slot.trainable = trainable;
  // Round the running end up to the next multiple of 64 bytes.
  slot.offset = (m_size + alignment_elements - 1) / alignment_elements * alignment_elements;
  m_size = slot.offset + slot.size;
  m_slots.push_back(std::move(slot));
  return static_cast<int>(m_slots.size()) - 1;
}

template <class T, class M>
void ParamArena<T, M>::allocate() {
  if (m_allocated)
    throw Error("allocate() called twice", "ParamArena '" + m_label + "'", "allocate the arena once");
  // Round the total up as well, so the flat buffers end on a 64-byte boundary too.
  m_size = (m_size + alignment_elements - 1) / alignment_elements * alignment_elements;
  // Zero-filled: padding between slots must be 0 (Adam keeps it 0) and moments start at 0.
  m_params = FlatView(m_label + "::params", m_size);
  m_grads = FlatView(m_label + "::grads", m_size);
  m_adam_m = FlatView(m_label + "::adam_m", m_size);
  m_adam_v = FlatView(m_label + "::adam_v", m_size);
  m_allocated = true;
}

template <class T, class M>
ParamSlot const& ParamArena<T, M>::slot(int index) const {
  if (index < 0 || index >= num_slots())
    throw ShapeError("parameter slot index " + std::to_string(index) + " out of range [0, " +
                         std::to_string(num_slots()) + ")",
                     "ParamArena '" + m_label + "'", "use the index returned by add()");
  return m_slots[static_cast<std::size_t>(index)];
}

template <class T, class M>
int ParamArena<T, M>::find(std::string_view name) const {
  for (std::size_t i = 0; i < m_slots.size(); ++i)
    if (m_slots[i].name == name) return static_cast<int>(i);
  return -1;
}

template <class T, class M>
int ParamArena<T, M>::index_of(std::string_view name) const {
  const int i = find(name);
  if (i < 0)
    throw ShapeError("no parameter slot '" + std::string(name) + "'", "ParamArena '" + m_label + "'",
                     "the name is misspelt or the checkpoint/config belongs to another model");
  return i;
}

template <class T, class M>
std::size_t ParamArena<T, M>::num_trainable_elements() const {
  std::size_t n = 0;
  for (ParamSlot const& s : m_slots)
    if (s.trainable) n += s.size;
  return n;
}

template <class T, class M>
void ParamArena<T, M>::set_adam_step(std::int64_t step) {
  if (step < 0)
    throw Error("negative Adam step counter " + std::to_string(step), "ParamArena '" + m_label + "'",
                "the checkpoint's adam_step must be >= 0");
  m_adam_step = step;
}

template <class T, class M>
void ParamArena<T, M>::check_rank(int index, int rank) const {
  ParamSlot const& s = slot(index);
  if (s.rank != rank)
    throw ShapeError("parameter slot '" + s.name + "' has rank " + std::to_string(s.rank) +
                         " but was requested as rank " + std::to_string(rank),
                     "ParamArena '" + m_label + "'", "request the slot with the rank it was registered with");
}

template <class T, class M>
void ParamArena<T, M>::ensure_snapshot_storage() {
  checked(m_params);
  if (m_snapshot_allocated) return;
  // Separate host allocations even when the arena itself lives in host memory: a snapshot must not alias.
  m_snapshot.params = HostView1<T>(Kokkos::view_alloc(Kokkos::WithoutInitializing, m_label + "::snapshot_params"), m_size);
  m_snapshot.adam_m = HostView1<T>(Kokkos::view_alloc(Kokkos::WithoutInitializing, m_label + "::snapshot_adam_m"), m_size);
  m_snapshot.adam_v = HostView1<T>(Kokkos::view_alloc(Kokkos::WithoutInitializing, m_label + "::snapshot_adam_v"), m_size);
  m_snapshot_allocated = true;
}

template class ParamArena<float, MemSpace>;
template class ParamArena<double, MemSpace>;
#if V1SYSID_HOST_SPACE_IS_SEPARATE
template class ParamArena<float, HostSpace>;
template class ParamArena<double, HostSpace>;
#endif

}  // namespace v1sysid
