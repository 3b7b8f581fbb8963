// Kernels of winograd.hpp. Every transform is separable, X -> L X R^T with constant matrices L and R, and runs
// in two passes over small work-item-local arrays: a "vertical" pass (rows combined, vectorised along the
// contiguous x or tile index) and a "horizontal" one (a row's taps combined per tile). The transform matrices are
// compile-time constants and the sums over them are folds over integer sequences, so every coefficient is a
// literal in the generated code: zeros cost nothing and +-1 no multiply, on every backend.
//
// Buffers of one chunk of nb images, P = nb * tiles columns (p = image * tiles + ty * tiles_x + tx):
//   V (alpha^2, C, P): transformed input tiles; M (alpha^2, C, P): GEMM products (or dM in backward);
//   U (alpha^2, C_out, C_in): transformed filters; dU likewise.
// A work item transforms kGroup horizontally adjacent tiles of one channel of one image.
#include "layers/winograd.hpp"

#include <algorithm>
#include <utility>

namespace v1sysid::layers {

namespace {

constexpr int kR = 5;       // kernel size
constexpr int kPad = 2;     // SAME padding of a 5x5 kernel
constexpr int kGroup = 16;  // tiles per work item (the vector length of the horizontal pass)
// Tiles per chunk: GEMMs of alpha^2 x (C_out x C_in) x (C_in x ~kChunkTiles). Measured on the paper CNN
// (128 channels, 36 x 64) with 2 OpenBLAS threads: see docs/performance.md.
constexpr int kChunkTiles = 576;

// Transform matrices of F(m x m, 5 x 5), derived by Toom-Cook from the points listed in winograd.hpp
// (sum_j AT[i][j] G[j][k] BT[j][l] = [l == i + k]). Each is a type with rows, cols and an element function.
template <int M>
struct Tables;

template <>
struct Tables<2> {
  static constexpr int N = 6;
  KOKKOS_INLINE_FUNCTION static constexpr double at(int i, int j) {
    constexpr double t[2][6] = {{1.0, 1.0, 1.0, 1.0, 1.0, 0.0}, {0.0, 1.0, -1.0, 2.0, -2.0, 1.0}};
    return t[i][j];
  }
  KOKKOS_INLINE_FUNCTION static constexpr double bt(int i, int j) {
    constexpr double t[6][6] = {{4.0, 0.0, -5.0, 0.0, 1.0, 0.0},  {0.0, -4.0, -4.0, 1.0, 1.0, 0.0},
                                {0.0, 4.0, -4.0, -1.0, 1.0, 0.0}, {0.0, -2.0, -1.0, 2.0, 1.0, 0.0},
                                {0.0, 2.0, -1.0, -2.0, 1.0, 0.0}, {0.0, 4.0, 0.0, -5.0, 0.0, 1.0}};
    return t[i][j];
  }
  KOKKOS_INLINE_FUNCTION static constexpr double g(int i, int j) {
    constexpr double t[6][5] = {{1.0 / 4, 0.0, 0.0, 0.0, 0.0},
                                {-1.0 / 6, -1.0 / 6, -1.0 / 6, -1.0 / 6, -1.0 / 6},
                                {-1.0 / 6, 1.0 / 6, -1.0 / 6, 1.0 / 6, -1.0 / 6},
                                {1.0 / 24, 1.0 / 12, 1.0 / 6, 1.0 / 3, 2.0 / 3},
                                {1.0 / 24, -1.0 / 12, 1.0 / 6, -1.0 / 3, 2.0 / 3},
                                {0.0, 0.0, 0.0, 0.0, 1.0}};
    return t[i][j];
  }
};

template <>
struct Tables<4> {
  static constexpr int N = 8;
  KOKKOS_INLINE_FUNCTION static constexpr double at(int i, int j) {
    constexpr double t[4][8] = {{1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0},
                                {0.0, 1.0, -1.0, 2.0, -2.0, 1.0 / 2, -1.0 / 2, 0.0},
                                {0.0, 1.0, 1.0, 4.0, 4.0, 1.0 / 4, 1.0 / 4, 0.0},
                                {0.0, 1.0, -1.0, 8.0, -8.0, 1.0 / 8, -1.0 / 8, 1.0}};
    return t[i][j];
  }
  KOKKOS_INLINE_FUNCTION static constexpr double bt(int i, int j) {
    constexpr double t[8][8] = {{-1.0, 0.0, 21.0 / 4, 0.0, -21.0 / 4, 0.0, 1.0, 0.0},
                                {0.0, 1.0, 1.0, -17.0 / 4, -17.0 / 4, 1.0, 1.0, 0.0},
                                {0.0, -1.0, 1.0, 17.0 / 4, -17.0 / 4, -1.0, 1.0, 0.0},
                                {0.0, 1.0 / 2, 1.0 / 4, -5.0 / 2, -5.0 / 4, 2.0, 1.0, 0.0},
                                {0.0, -1.0 / 2, 1.0 / 4, 5.0 / 2, -5.0 / 4, -2.0, 1.0, 0.0},
                                {0.0, 2.0, 4.0, -5.0 / 2, -5.0, 1.0 / 2, 1.0, 0.0},
                                {0.0, -2.0, 4.0, 5.0 / 2, -5.0, -1.0 / 2, 1.0, 0.0},
                                {0.0, -1.0, 0.0, 21.0 / 4, 0.0, -21.0 / 4, 0.0, 1.0}};
    return t[i][j];
  }
  KOKKOS_INLINE_FUNCTION static constexpr double g(int i, int j) {
    constexpr double t[8][5] = {{-1.0, 0.0, 0.0, 0.0, 0.0},
                                {-2.0 / 9, -2.0 / 9, -2.0 / 9, -2.0 / 9, -2.0 / 9},
                                {-2.0 / 9, 2.0 / 9, -2.0 / 9, 2.0 / 9, -2.0 / 9},
                                {1.0 / 90, 1.0 / 45, 2.0 / 45, 4.0 / 45, 8.0 / 45},
                                {1.0 / 90, -1.0 / 45, 2.0 / 45, -4.0 / 45, 8.0 / 45},
                                {32.0 / 45, 16.0 / 45, 8.0 / 45, 4.0 / 45, 2.0 / 45},
                                {32.0 / 45, -16.0 / 45, 8.0 / 45, -4.0 / 45, 2.0 / 45},
                                {0.0, 0.0, 0.0, 0.0, 1.0}};
    return t[i][j];
  }
};

// The five matrices as (rows, cols, element) types: B^T, A^T and G as they are, A and G^T transposed.
template <int M>
struct InputT {  // B^T (alpha x alpha)
  static constexpr int rows = Tables<M>::N, cols = Tables<M>::N;
  KOKKOS_INLINE_FUNCTION static constexpr double at(int i, int j) { return Tables<M>::bt(i, j); }
};
template <int M>
struct OutputT {  // A^T (m x alpha)
  static constexpr int rows = M, cols = Tables<M>::N;
  KOKKOS_INLINE_FUNCTION static constexpr double at(int i, int j) { return Tables<M>::at(i, j); }
};
template <int M>
struct OutputAdj {  // A (alpha x m)
  static constexpr int rows = Tables<M>::N, cols = M;
  KOKKOS_INLINE_FUNCTION static constexpr double at(int i, int j) { return Tables<M>::at(j, i); }
};
template <int M>
struct FilterT {  // G (alpha x 5)
  static constexpr int rows = Tables<M>::N, cols = kR;
  KOKKOS_INLINE_FUNCTION static constexpr double at(int i, int j) { return Tables<M>::g(i, j); }
};
template <int M>
struct FilterAdj {  // G^T (5 x alpha)
  static constexpr int rows = kR, cols = Tables<M>::N;
  KOKKOS_INLINE_FUNCTION static constexpr double at(int i, int j) { return Tables<M>::g(j, i); }
};

// acc + c * x for the compile-time coefficient c = L(k, r): no code for zeros, no multiply for +-1.
template <class L, int k, int r, class T>
KOKKOS_INLINE_FUNCTION T add_term(T acc, T x) {
  constexpr double c = L::at(k, r);
  if constexpr (c == 0.0) {
    (void)x;
    return acc;
  } else if constexpr (c == 1.0) {
    return acc + x;
  } else if constexpr (c == -1.0) {
    return acc - x;
  } else {
    return acc + T(c) * x;
  }
}

// sum_r L(k, r) x(r) with every index a compile-time constant (a fold over r = 0 .. L::cols-1).
template <class L, int k, class T, class X, int... r>
KOKKOS_INLINE_FUNCTION T combine(const X& x, std::integer_sequence<int, r...>) {
  T acc = T(0);
  ((acc = add_term<L, k, r>(acc, x(r))), ...);
  return acc;
}

template <class L, class T, int Cols, int k>
KOKKOS_INLINE_FUNCTION void vertical_row(const T (&x)[L::cols][Cols], T (&y)[L::rows][Cols]) {
  for (int c = 0; c < Cols; ++c)
    y[k][c] = combine<L, k, T>([&](int r) { return x[r][c]; }, std::make_integer_sequence<int, L::cols>());
}

template <class L, class T, int Cols, int... k>
KOKKOS_INLINE_FUNCTION void vertical_rows(const T (&x)[L::cols][Cols], T (&y)[L::rows][Cols],
                                          std::integer_sequence<int, k...>) {
  (vertical_row<L, T, Cols, k>(x, y), ...);
}

// y[k][x] = sum_r L(k, r) x[r][x] for x < Cols.
template <class L, int Cols, class T>
KOKKOS_INLINE_FUNCTION void vertical(const T (&x)[L::cols][Cols], T (&y)[L::rows][Cols]) {
  vertical_rows<L>(x, y, std::make_integer_sequence<int, L::rows>());
}

// Rows in phase layout: a row of Len = Phases * J scalars, x = j * Phases + f, is stored at f * J + j, so the
// window of tile q (x = q * Phases + c) is row[(c % Phases) * J + c / Phases + q]: unit stride in q.
template <int Phases, int J>
struct PhaseLayout {
  static constexpr int len = Phases * J;
  KOKKOS_INLINE_FUNCTION static constexpr int offset(int c) { return (c % Phases) * J + c / Phases; }
};

template <class R, class Layout, int Q, int l, class T>
KOKKOS_INLINE_FUNCTION void horizontal_row(const T* row, T (&y)[R::rows][Q]) {
  for (int q = 0; q < Q; ++q)
    y[l][q] = combine<R, l, T>([&](int c) { return row[Layout::offset(c) + q]; },
                               std::make_integer_sequence<int, R::cols>());
}

template <class R, class Layout, int Q, class T, int... l>
KOKKOS_INLINE_FUNCTION void horizontal_rows(const T* row, T (&y)[R::rows][Q], std::integer_sequence<int, l...>) {
  (horizontal_row<R, Layout, Q, l>(row, y), ...);
}

// y[l][q] = sum_c R(l, c) x[q * Phases + c] for q < Q, with x a row in Layout (R applied to Q windows).
template <class R, class Layout, int Q, class T>
KOKKOS_INLINE_FUNCTION void horizontal(const T* row, T (&y)[R::rows][Q]) {
  horizontal_rows<R, Layout, Q>(row, y, std::make_integer_sequence<int, R::rows>());
}

// dst (phase layout) = the row window src[x0 .. x0 + Phases * J), zero where x < 0 or x >= n (src null: all
// zero). Bounds are resolved per phase into three loops (zeros, strided copy, zeros), not per element.
template <int Phases, int J, class T>
KOKKOS_INLINE_FUNCTION void load_row(const T* src, int x0, int n, T (&dst)[Phases * J]) {
  constexpr int len = Phases * J;
  int lo = 0, hi = 0;  // the window's valid positions x - x0
  if (src != nullptr) {
    lo = x0 < 0 ? -x0 : 0;
    hi = n - x0 < len ? n - x0 : len;
    if (hi < lo) hi = lo;
  }
  for (int f = 0; f < Phases; ++f) {
    // j * Phases + f in [lo, hi)  <=>  j in [j_lo, j_hi)
    const int j_lo = lo > f ? (lo - f + Phases - 1) / Phases : 0;
    const int j_hi = hi > f ? (hi - f + Phases - 1) / Phases : 0;
    T* d = dst + f * J;
    for (int j = 0; j < j_lo; ++j) d[j] = T(0);
    for (int j = j_lo; j < j_hi; ++j) d[j] = src[x0 + j * Phases + f];
    for (int j = j_hi > j_lo ? j_hi : j_lo; j < J; ++j) d[j] = T(0);
  }
}

// dst[q] = src[q] for q < nq, 0 for nq <= q < kGroup.
template <class T>
KOKKOS_INLINE_FUNCTION void load_group(const T* src, int nq, T* dst) {
  if (nq == kGroup) {
    for (int q = 0; q < kGroup; ++q) dst[q] = src[q];
  } else {
    for (int q = 0; q < kGroup; ++q) dst[q] = q < nq ? src[q] : T(0);
  }
}

// dst[q] = v[q] for q < nq (a full group is a fixed-size copy the compiler keeps in registers).
template <class T>
KOKKOS_INLINE_FUNCTION void store_group(T* dst, const T (&v)[kGroup], int nq) {
  if (nq == kGroup) {
    for (int q = 0; q < kGroup; ++q) dst[q] = v[q];
  } else {
    for (int q = 0; q < nq; ++q) dst[q] = v[q];
  }
}

// Tile geometry of one conv (H_out = H, W_out = W) and of its chunks.
struct Tiling {
  int m = 0, alpha = 0, H = 0, W = 0, tiles_y = 0, tiles_x = 0, groups_x = 0, tiles = 0, chunk = 0;
  std::size_t nn() const { return std::size_t(alpha) * alpha; }
};

Tiling make_tiling(const Conv2dShape& s) {
  Tiling t;
  t.m = winograd_tile(s);
  t.alpha = t.m + kR - 1;
  t.H = s.H;
  t.W = s.W;
  t.tiles_y = (s.H + t.m - 1) / t.m;
  t.tiles_x = (s.W + t.m - 1) / t.m;
  t.groups_x = (t.tiles_x + kGroup - 1) / kGroup;
  t.tiles = t.tiles_y * t.tiles_x;
  t.chunk = std::min(s.B, std::max(1, (kChunkTiles + t.tiles - 1) / t.tiles));
  return t;
}

// Work item r of a per-(o, group of kGroup consecutive i) filter kernel: the filters (o, i0 .. i0 + nq).
struct FilterItem {
  int o, i0, nq;
};
KOKKOS_INLINE_FUNCTION FilterItem filter_item(int r, int Ci) {
  const int groups = (Ci + kGroup - 1) / kGroup;
  FilterItem it;
  it.o = r / groups;
  it.i0 = (r % groups) * kGroup;
  it.nq = Ci - it.i0 < kGroup ? Ci - it.i0 : kGroup;
  return it;
}
inline int filter_items(int Co, int Ci) { return Co * ((Ci + kGroup - 1) / kGroup); }

// U[t][o][i] (alpha^2, Co, Ci) = (G f[o,i] G^T)[t] with f[o,i] = w[o,i] (w: (Co, Ci, 5, 5)), or with flip
// f[o,i] = w[i,o] rotated by 180 degrees (w: (Ci, Co, 5, 5)), the filter of the input gradient.
// A work item transforms the filters of kGroup consecutive i at once (vectorised along i; contiguous stores).
template <int M, class T, class ExecSpace>
void filter_transform(ExecSpace const& space, UView4<const T, ExecSpace> w, bool flip, int Co, int Ci, T* U) {
  constexpr int N = Tables<M>::N;
  const std::size_t plane = std::size_t(Co) * Ci;
  Kokkos::parallel_for(
      "v1sysid::winograd::filter_transform", Kokkos::RangePolicy<ExecSpace>(space, 0, filter_items(Co, Ci)),
      KOKKOS_LAMBDA(const int r) {
        const FilterItem f_it = filter_item(r, Ci);
        const int o = f_it.o, i0 = f_it.i0, nq = f_it.nq;
        T f[kR][kR * kGroup];  // f[ky][kx * kGroup + q]: filter (o, i0 + q)
        for (int ky = 0; ky < kR; ++ky)
          for (int kx = 0; kx < kR; ++kx)
            for (int q = 0; q < kGroup; ++q)
              f[ky][kx * kGroup + q] = q >= nq ? T(0)
                                       : flip  ? w(i0 + q, o, kR - 1 - ky, kR - 1 - kx)
                                               : w(o, i0 + q, ky, kx);
        T gf[N][kR * kGroup], u[N][kGroup];
        vertical<FilterT<M>>(f, gf);
        for (int a = 0; a < N; ++a) {
          vertical<FilterT<M>>(reinterpret_cast<const T(&)[kR][kGroup]>(gf[a]), u);
          for (int b = 0; b < N; ++b)
            store_group(U + std::size_t(a * N + b) * plane + std::size_t(o) * Ci + i0, u[b], nq);
        }
      });
}

// d_w[o,i] += G^T dU[.][o][i] G, the adjoint of filter_transform (no flip); kGroup filters per work item.
template <int M, class T, class ExecSpace>
void filter_transform_adjoint(ExecSpace const& space, const T* dU, int Co, int Ci, UView4<T, ExecSpace> d_w) {
  constexpr int N = Tables<M>::N;
  const std::size_t plane = std::size_t(Co) * Ci;
  Kokkos::parallel_for(
      "v1sysid::winograd::filter_transform_adjoint",
      Kokkos::RangePolicy<ExecSpace>(space, 0, filter_items(Co, Ci)), KOKKOS_LAMBDA(const int r) {
        const FilterItem f_it = filter_item(r, Ci);
        const int o = f_it.o, i0 = f_it.i0, nq = f_it.nq;
        T du[N][N * kGroup];  // du[a][b * kGroup + q] = dU[a * N + b][o][i0 + q]
        for (int a = 0; a < N; ++a)
          for (int b = 0; b < N; ++b)
            load_group(dU + std::size_t(a * N + b) * plane + std::size_t(o) * Ci + i0, nq, &du[a][b * kGroup]);
        T gdu[kR][N * kGroup], v[kR][kGroup];
        vertical<FilterAdj<M>>(du, gdu);
        for (int ky = 0; ky < kR; ++ky) {
          vertical<FilterAdj<M>>(reinterpret_cast<const T(&)[N][kGroup]>(gdu[ky]), v);
          for (int kx = 0; kx < kR; ++kx)
            for (int q = 0; q < nq; ++q) d_w(o, i0 + q, ky, kx) += v[kx][q];
        }
      });
}

// Work item r of a per-(image, channel, tile row, tile group) kernel over nb images and C channels.
struct TileItem {
  int b, c, ty, tx0, nq;  // image (in the chunk), channel, tile row, first tile column, tiles in the group
};
KOKKOS_INLINE_FUNCTION TileItem tile_item(int r, int C, int tiles_y, int groups_x, int tiles_x) {
  TileItem it;
  const int gx = r % groups_x;
  r /= groups_x;
  it.ty = r % tiles_y;
  r /= tiles_y;
  it.c = r % C;
  it.b = r / C;
  it.tx0 = gx * kGroup;
  it.nq = tiles_x - it.tx0 < kGroup ? tiles_x - it.tx0 : kGroup;
  return it;
}

// dst[t = k * L::rows + l][c][p] = (L X_{c,p} L^T)[k][l] for the images b0 .. b0+nb-1 of src (B, C, H, W),
// P = nb * tiles, where X_{c,p} is the L::cols x L::cols window of channel c at (ty*m - Pad, tx*m - Pad),
// zero outside the image. Windows are m apart: wider than m (input tiles) they overlap.
template <class L, int M, int Pad, class T, class ExecSpace>
void tile_transform(ExecSpace const& space, const char* label, const Tiling& tl, UView4<const T, ExecSpace> src,
                    int b0, int nb, T* dst) {
  constexpr int K = L::rows, J = kGroup + (L::cols - M) / M;  // a row of kGroup windows: M * J scalars
  using Layout = PhaseLayout<M, J>;
  const int C = static_cast<int>(src.extent(1)), H = tl.H, W = tl.W, tiles_y = tl.tiles_y,
            tiles_x = tl.tiles_x, groups_x = tl.groups_x, tiles = tl.tiles;
  const std::size_t P = std::size_t(nb) * tl.tiles, plane = std::size_t(C) * P;
  Kokkos::parallel_for(
      label, Kokkos::RangePolicy<ExecSpace>(space, 0, nb * C * tiles_y * groups_x), KOKKOS_LAMBDA(const int r) {
        const TileItem it = tile_item(r, C, tiles_y, groups_x, tiles_x);
        T x[L::cols][Layout::len], lx[K][Layout::len], v[K][kGroup];
        for (int i = 0; i < L::cols; ++i) {
          const int y = it.ty * M - Pad + i;
          load_row<M, J>(y >= 0 && y < H ? &src(b0 + it.b, it.c, y, 0) : static_cast<const T*>(nullptr),
                         it.tx0 * M - Pad, W, x[i]);
        }
        vertical<L>(x, lx);
        const std::size_t p0 = std::size_t(it.b) * tiles + std::size_t(it.ty) * tiles_x + it.tx0;
        for (int k = 0; k < K; ++k) {
          horizontal<L, Layout, kGroup>(lx[k], v);
          for (int l = 0; l < K; ++l)
            store_group(dst + std::size_t(k * K + l) * plane + std::size_t(it.c) * P + p0, v[l], it.nq);
        }
      });
}

// V[t][c][p] = (B^T d_{c,p} B)[t]: the transformed input tiles (alpha x alpha patches, 2 pixels of padding).
template <int M, class T, class ExecSpace>
void input_transform(ExecSpace const& space, const Tiling& tl, UView4<const T, ExecSpace> src, int b0, int nb,
                     T* V) {
  tile_transform<InputT<M>, M, kPad>(space, "v1sysid::winograd::input_transform", tl, src, b0, nb, V);
}

// dst[b0 + b, c, y, x] = (A^T Mb[.][c][p] A)[y - ty*m][x - tx*m]: the output tiles of one chunk, cut at H x W.
template <int M, class T, class ExecSpace>
void output_transform(ExecSpace const& space, const Tiling& tl, const T* Mb, int b0, int nb,
                      UView4<T, ExecSpace> dst) {
  constexpr int N = Tables<M>::N, Wout = kGroup * M;
  const int C = static_cast<int>(dst.extent(1)), H = tl.H, W = tl.W, tiles_y = tl.tiles_y, tiles_x = tl.tiles_x,
            groups_x = tl.groups_x, tiles = tl.tiles;
  const std::size_t P = std::size_t(nb) * tl.tiles, plane = std::size_t(C) * P;
  Kokkos::parallel_for(
      "v1sysid::winograd::output_transform", Kokkos::RangePolicy<ExecSpace>(space, 0, nb * C * tiles_y * groups_x),
      KOKKOS_LAMBDA(const int r) {
        const TileItem it = tile_item(r, C, tiles_y, groups_x, tiles_x);
        const std::size_t p0 = std::size_t(it.b) * tiles + std::size_t(it.ty) * tiles_x + it.tx0;
        T m[N][N * kGroup];  // m[a][b * kGroup + q] = Mb[a * N + b][c][p0 + q]
        for (int a = 0; a < N; ++a)
          for (int b = 0; b < N; ++b)
            load_group(Mb + std::size_t(a * N + b) * plane + std::size_t(it.c) * P + p0, it.nq, &m[a][b * kGroup]);
        T am[M][N * kGroup];
        vertical<OutputT<M>>(m, am);
        const int x0 = it.tx0 * M, nx = W - x0 < Wout ? W - x0 : Wout;
        for (int i = 0; i < M; ++i) {
          const int y = it.ty * M + i;
          if (y >= H) break;
          T y_tile[M][kGroup];  // am[i] is (N, kGroup) row-major: b * kGroup + q
          vertical<OutputT<M>>(reinterpret_cast<const T(&)[N][kGroup]>(am[i]), y_tile);
          T* row = &dst(b0 + it.b, it.c, y, x0);
          if (nx == Wout) {
            for (int q = 0; q < kGroup; ++q)
              for (int j = 0; j < M; ++j) row[q * M + j] = y_tile[j][q];
          } else {
            for (int x = 0; x < nx; ++x) row[x] = y_tile[x % M][x / M];
          }
        }
      });
}

// dM[t][c][p] = (A dY_{c,p} A^T)[t]: the adjoint of output_transform for the output gradient src (B, C, H, W)
// (the m x m tile of d_out under tile p, zero outside the image).
template <int M, class T, class ExecSpace>
void output_transform_adjoint(ExecSpace const& space, const Tiling& tl, UView4<const T, ExecSpace> src, int b0,
                              int nb, T* dM) {
  tile_transform<OutputAdj<M>, M, 0>(space, "v1sysid::winograd::output_transform_adjoint", tl, src, b0, nb, dM);
}

// For each of the alpha^2 planes t: C_t = op(A_t) op(B_t) + beta * C_t, with A_t (ra, ca), B_t (rb, cb) and
// C_t (rc, cc) row-major planes of the three buffers; each a KokkosBlas GEMM (counted as GEMM time by the bench).
template <class T, class ExecSpace>
void batched_gemm(ExecSpace const& space, std::size_t planes, const char* ta, const char* tb, const T* A, int ra,
                  int ca, const T* B, int rb, int cb, T beta, T* C, int rc, int cc) {
  for (std::size_t t = 0; t < planes; ++t)
    detail::gemm(space, ta, tb, T(1), UView2<const T, ExecSpace>(A + t * std::size_t(ra) * ca, ra, ca),
                 UView2<const T, ExecSpace>(B + t * std::size_t(rb) * cb, rb, cb), beta,
                 UView2<T, ExecSpace>(C + t * std::size_t(rc) * cc, rc, cc));
}

// dst[b0 .. b0+nb) = the 5x5 SAME correlation of src[b0 .. b0+nb) (B, C_src, H, W) with the filter whose
// transform is U (alpha^2, C_dst, C_src); V and Mb hold alpha^2 * C * nb * tiles scalars for C_src and C_dst.
template <int M, class T, class ExecSpace>
void correlate_chunk(ExecSpace const& space, const Tiling& tl, const T* U, UView4<const T, ExecSpace> src,
                     UView4<T, ExecSpace> dst, int b0, int nb, T* V, T* Mb) {
  const int Cs = static_cast<int>(src.extent(1)), Cd = static_cast<int>(dst.extent(1)), P = nb * tl.tiles;
  input_transform<M>(space, tl, src, b0, nb, V);
  batched_gemm(space, tl.nn(), "N", "N", U, Cd, Cs, static_cast<const T*>(V), Cs, P, T(0), Mb, Cd, P);
  output_transform<M>(space, tl, static_cast<const T*>(Mb), b0, nb, dst);
}

template <int M, class T, class ExecSpace>
void forward_impl(ExecSpace const& space, const Conv2dShape& s, UView4<const T, ExecSpace> weight,
                  UView4<const T, ExecSpace> in, UView4<T, ExecSpace> out, T* ws) {
  const Tiling tl = make_tiling(s);
  const std::size_t nn = tl.nn(), P = std::size_t(tl.chunk) * tl.tiles;
  T* U = ws;
  T* V = U + nn * s.C_out * s.C_in;
  T* Mb = V + nn * s.C_in * P;
  filter_transform<M>(space, weight, false, s.C_out, s.C_in, U);
  for (int b0 = 0; b0 < s.B; b0 += tl.chunk)
    correlate_chunk<M>(space, tl, static_cast<const T*>(U), in, out, b0, std::min(tl.chunk, s.B - b0), V, Mb);
}

template <int M, class T, class ExecSpace>
void backward_impl(ExecSpace const& space, const Conv2dShape& s, UView4<const T, ExecSpace> weight,
                   UView4<const T, ExecSpace> in, UView4<const T, ExecSpace> d_out, UView4<T, ExecSpace> d_in,
                   UView4<T, ExecSpace> d_weight, T* ws) {
  if (s.B == 0) return;
  const Tiling tl = make_tiling(s);
  const int Ci = s.C_in, Co = s.C_out;
  const std::size_t nn = tl.nn(), P = std::size_t(tl.chunk) * tl.tiles;
  T* Uflip = ws;                                   // (alpha^2, C_in, C_out): filter of the input gradient
  T* dU = Uflip + nn * Ci * Co;                    // (alpha^2, C_out, C_in)
  T* X = dU + nn * Co * Ci;                        // (alpha^2, max(C_in, C_out), P)
  T* Y = X + nn * std::max(Ci, Co) * P;            // (alpha^2, max(C_in, C_out), P)
  if (present(d_in)) filter_transform<M>(space, weight, true, Ci, Co, Uflip);
  for (int b0 = 0; b0 < s.B; b0 += tl.chunk) {
    const int nb = std::min(tl.chunk, s.B - b0), Pc = nb * tl.tiles;
    // dU[t] (Co, Ci) += dM[t] (Co, Pc) V[t]^T (Pc, Ci)
    input_transform<M>(space, tl, in, b0, nb, X);
    output_transform_adjoint<M>(space, tl, d_out, b0, nb, Y);
    batched_gemm(space, nn, "N", "T", static_cast<const T*>(Y), Co, Pc, static_cast<const T*>(X), Ci, Pc,
                 T(b0 == 0 ? 0 : 1), dU, Co, Ci);
    if (present(d_in)) correlate_chunk<M>(space, tl, static_cast<const T*>(Uflip), d_out, d_in, b0, nb, X, Y);
  }
  filter_transform_adjoint<M>(space, static_cast<const T*>(dU), Co, Ci, d_weight);
}

}  // namespace

bool winograd_supported(const Conv2dShape& s) { return s.K == kR && s.padding == Padding::same; }

int winograd_tile(const Conv2dShape& s) { return s.algorithm == ConvAlgorithm::winograd2 ? 2 : 4; }

int winograd_chunk_images(const Conv2dShape& s) { return make_tiling(s).chunk; }

std::size_t winograd_workspace_size(const Conv2dShape& s) {
  const Tiling tl = make_tiling(s);
  const std::size_t nn = tl.nn(), P = std::size_t(tl.chunk) * tl.tiles;
  return 2 * nn * std::size_t(s.C_out) * s.C_in + 2 * nn * std::size_t(std::max(s.C_in, s.C_out)) * P;
}

template <class T, class ExecSpace>
void winograd_conv2d_forward(ExecSpace const& space, Conv2dShape const& s, UView4<const T, ExecSpace> weight,
                             UView4<const T, ExecSpace> in, UView4<T, ExecSpace> out,
                             UView1<T, ExecSpace> workspace) {
  if (winograd_tile(s) == 2)
    forward_impl<2>(space, s, weight, in, out, workspace.data());
  else
    forward_impl<4>(space, s, weight, in, out, workspace.data());
}

template <class T, class ExecSpace>
void winograd_conv2d_backward(ExecSpace const& space, Conv2dShape const& s, UView4<const T, ExecSpace> weight,
                              UView4<const T, ExecSpace> in, UView4<const T, ExecSpace> d_out,
                              UView4<T, ExecSpace> d_in, UView4<T, ExecSpace> d_weight,
                              UView1<T, ExecSpace> workspace) {
  if (winograd_tile(s) == 2)
    backward_impl<2>(space, s, weight, in, d_out, d_in, d_weight, workspace.data());
  else
    backward_impl<4>(space, s, weight, in, d_out, d_in, d_weight, workspace.data());
}

#define V1SYSID_WINOGRAD_INSTANTIATE(T, E)                                                                      \
  template void winograd_conv2d_forward<T, E>(E const&, Conv2dShape const&, UView4<const T, E>,                \
                                              UView4<const T, E>, UView4<T, E>, UView1<T, E>);                 \
  template void winograd_conv2d_backward<T, E>(E const&, Conv2dShape const&, UView4<const T, E>,               \
                                               UView4<const T, E>, UView4<const T, E>, UView4<T, E>,           \
                                               UView4<T, E>, UView1<T, E>);
V1SYSID_INSTANTIATE_FOR_EACH(V1SYSID_WINOGRAD_INSTANTIATE)

}  // namespace v1sysid::layers
