// Steerable 2-D Hermite filters of the rotation-equivariant core (Ecker et al. 2019; reference-models.md
// §1.1-§1.2): a layer's parameters are Hermite coefficients, and its convolution filters are synthesised for
// R equally spaced orientations from them.
//
// Basis (host, double, once at model build): for filter size K, all 2-D Hermite functions of rank 0..K-1
// (Q = K(K+1)/2 of them) sampled on the 2x oversampled grid of 2K points per axis,
//   xs = linspace(-xm, xm, 2K),  xm = 2 sqrt(K) (1 - 1/(2K)),  row a <-> y = xs[a], column b <-> x = xs[b],
//   B = exp(-rho^2/4) rho^mu P_{mu,nu}(rho^2) e^{i mu theta} / sqrt(2^{mu+2nu} pi (mu+nu)! nu!)
// taken as Re(B)/sqrt(2) ('z', mu = 0), Re(B) ('r') or Im(B) ('i'), each scaled to unit L2 norm on the grid.
// Index order: rank r = 0..K-1, mu = sorted |{-r, -r+2, ..., r}|, a 'z' first for even r, then (r, i) pairs.
//
// Rotation by phi: c' = M(phi) c with M block-diagonal, 1 on 'z' entries and [[cos mu phi, sin mu phi],
// [-sin mu phi, cos mu phi]] on each (r, i) pair; synth(M(pi/2) c) = numpy.rot90(synth(c), 1) exactly on the
// grid (new[a][b] = old[b][2K-1-a]: counter-clockwise with row 0 at the top). Rotation r uses phi = 2 pi r / R.
//
// Synthesis of a layer with coefficients coeffs[Q, C_in, F] (one K x K filter bank per rotation):
//   W_r[c, y, x, f] = sum_{p,q in {0,1}} sum_j H_j[2y+p, 2x+q] (M(phi_r) coeffs)[j, c, f]     (2x2 SUM pooling)
//   filters[r*F + f, c, y, x] = W_r[(c - r*roll) mod C_in, y, x, f]      (roll = F_in for layers >= 2, else 0)
// i.e. output channels are rotation-major (c = r*F + f) and, from the second layer on, the input rotation
// blocks are rolled so that the filter of rotation r reads the input block that rotation r produced.
// The filters are in PyTorch order (C_out, C_in, K, K), cross-correlation, as conv2d_forward takes them.
//
// Implementation choice: rotation and pooling are linear and act on the basis side, so they are folded once
// at model build into the "pooled rotated basis"
//   P[r*K*K + y*K + x, j] = sum_{p,q} sum_i H_i[2y+p, 2x+q] M(phi_r)[i, j]        (R*K*K, Q)
// which is exact (up to the double -> T rounding of P). One step's synthesis is then one GEMM
//   T (R*K*K, C_in*F) = P x coeffs (Q, C_in*F)
// plus a permutation of T into the filter layout (with the roll); the backward pass is the adjoint:
//   d_T = permutation^T(d_filters),   d_coeffs += P^T x d_T.
// The filters are synthesised once per training step (not per image) and then run through conv2d; the
// regularisers act on them and their gradient flows back through hermite_synthesize_backward.
//
// Gradient policy: d_coeffs accumulates (+=); the forward assigns the filters.
#pragma once

#include "layers/common.hpp"

#include <cstddef>
#include <string>
#include <vector>

namespace v1sysid::layers {

// The sampled basis of one filter size (host, double).
struct HermiteBasis {
  int K = 0;                  // filter size; the basis lives on the 2K x 2K grid
  int Q = 0;                  // number of basis functions, K(K+1)/2
  std::vector<int> mu;        // (Q) angular order
  std::vector<int> nu;        // (Q) radial order, (rank - mu)/2
  std::vector<char> kind;     // (Q) 'z' (rotation invariant), 'r' / 'i' (real / imaginary part of a pair)
  std::vector<double> values; // (Q, 2K, 2K) row-major, each image of unit L2 norm
  int grid() const { return 2 * K; }
  double at(int q, int a, int b) const {
    return values[(static_cast<std::size_t>(q) * grid() + static_cast<std::size_t>(a)) * grid() +
                  static_cast<std::size_t>(b)];
  }
};

// Throws ShapeError for K < 1.
HermiteBasis hermite_basis(int K);
// (Q, Q) row-major rotation matrix M(phi) of the coefficients (c' = M c).
std::vector<double> hermite_rotation_matrix(const HermiteBasis& basis, double phi);
// (R*K*K, Q) row-major pooled rotated basis P (see the header comment). Throws ShapeError for R < 1.
std::vector<double> hermite_pooled_rotated_basis(const HermiteBasis& basis, int R);

// The pooled rotated basis in a device View of scalar T, built on the host in double and copied.
template <class T, class MemorySpace = MemSpace>
View2<T, MemorySpace> make_hermite_pooled_basis(int K, int R) {
  const HermiteBasis basis = hermite_basis(K);
  const std::vector<double> p = hermite_pooled_rotated_basis(basis, R);
  View2<T, MemorySpace> v(Kokkos::view_alloc(Kokkos::WithoutInitializing, "v1sysid::hermite::pooled_basis"),
                          static_cast<std::size_t>(R) * K * K, static_cast<std::size_t>(basis.Q));
  auto host = Kokkos::create_mirror_view(v);
  for (std::size_t i = 0; i < host.extent(0); ++i)
    for (std::size_t j = 0; j < host.extent(1); ++j) host(i, j) = static_cast<T>(p[i * host.extent(1) + j]);
  Kokkos::deep_copy(v, host);
  return v;
}

struct HermiteShape {
  int K = 1;      // filter size
  int R = 1;      // rotations
  int C_in = 0;   // input channels of the layer (1 for the first layer, R * F_in after that)
  int F = 0;      // output features per rotation; output channels C_out = R * F
  int roll = 0;   // input channels per rotation block to roll by per rotation: F_in (layers >= 2) or 0 (none)

  int Q() const { return K * (K + 1) / 2; }
  int C_out() const { return R * F; }
  std::size_t filter_size() const {  // scalars of the synthesised filters (C_out, C_in, K, K)
    return static_cast<std::size_t>(C_out()) * C_in * K * K;
  }
};

// "HermiteShape{K=5, R=8, C_in=128, F=16, roll=16}" for error and test messages.
std::string describe(const HermiteShape& s);
// Throws ShapeError for non-positive sizes or a roll with C_in != R * roll.
void validate(const HermiteShape& s);
// Scalars of type T the workspace of the synthesis must hold: R*K*K*C_in*F (the GEMM result T).
std::size_t hermite_workspace_size(const HermiteShape& s);

template <class T, class ExecSpace>
void hermite_synthesize_forward(ExecSpace const& space, HermiteShape const& s,
                                UView2<const T, ExecSpace> pooled_basis,  // (R*K*K, Q)
                                UView3<const T, ExecSpace> coeffs,        // (Q, C_in, F)
                                UView4<T, ExecSpace> filters,             // (R*F, C_in, K, K), assigned
                                UView1<T, ExecSpace> workspace);          // (>= hermite_workspace_size(s))

template <class T, class ExecSpace>
void hermite_synthesize_backward(ExecSpace const& space, HermiteShape const& s,
                                 UView2<const T, ExecSpace> pooled_basis,  // (R*K*K, Q)
                                 UView4<const T, ExecSpace> d_filters,     // (R*F, C_in, K, K)
                                 UView3<T, ExecSpace> d_coeffs,            // (Q, C_in, F), accumulated
                                 UView1<T, ExecSpace> workspace);          // (>= hermite_workspace_size(s))

}  // namespace v1sysid::layers
