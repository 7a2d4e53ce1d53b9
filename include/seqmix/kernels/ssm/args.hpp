// Inputs, options and argument checks of the two state-space ops: the Mamba-1 selective scan
// (spec/mamba.md) and the Mamba-2 SSD scan (spec/mamba2.md). Shared by every policy.
#pragma once

#include <limits>
#include <string>

#include "../../error.hpp"
#include "../../tensor/view.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::ssm {

namespace detail {
// An optional tensor is given as an empty (default-constructed) view.
template <class V>
bool present(const V& v) {
  return v.data() != nullptr;
}
}  // namespace detail

namespace selective_scan {

/// Mamba-1 selective scan, time-major. Per batch b and channel d (group g = d / (D/G)):
///   dt_t = softplus(delta_t[d] + delta_bias[d]);  h_t[n] = exp(dt_t·A[d,n])·h_{t-1}[n] + dt_t·B_t[g,n]·u_t[d]
///   y_t[d] = (Σ_n h_t[n]·C_t[g,n] + D[d]·u_t[d]) · silu(z_t[d])
template <class T>
struct inputs {
  tensor_view<const T, 3> u;               ///< [B,T,D] input
  tensor_view<const T, 3> delta;           ///< [B,T,D] time step before bias and softplus
  tensor_view<const T, 2> A;               ///< [D,N] continuous decay (negative)
  tensor_view<const T, 4> B, C;            ///< [B,T,G,N] input / output projections
  tensor_view<const T, 1> D = {};          ///< [D] skip (empty view: none)
  tensor_view<const T, 3> z = {};          ///< [B,T,D] gate (empty view: none)
  tensor_view<const T, 1> delta_bias = {};  ///< [D] (empty view: none)
};

struct options {
  bool delta_softplus = true;  ///< dt = softplus(delta + bias); false: dt = delta + bias
};

struct dims {
  index_t B, L, D, N, G;
};

/// Validates the shapes (u, delta, z, y [B,T,D]; A [D,N]; B, C [B,T,G,N]; D, delta_bias [D];
/// state [B,D,N]) and the unit channel stride of u, delta, z and y.
template <class T>
dims check_args(const inputs<T>& in, const tensor_view<T, 3>& y, const tensor_view<T, 3>& state) {
  const char* who = "selective_scan";
  const index_t B = in.u.extent(0), L = in.u.extent(1), D = in.u.extent(2), N = in.A.extent(1), G = in.B.extent(2);
  check_shape(who, "delta", in.delta.extents(), in.u.extents());
  check_shape(who, "A", in.A.extents(), {D, N});
  check_shape(who, "B", in.B.extents(), {B, L, G, N});
  check_shape(who, "C", in.C.extents(), {B, L, G, N});
  if (ssm::detail::present(in.D)) check_shape(who, "D", in.D.extents(), {D});
  if (ssm::detail::present(in.z)) check_shape(who, "z", in.z.extents(), in.u.extents());
  if (ssm::detail::present(in.delta_bias)) check_shape(who, "delta_bias", in.delta_bias.extents(), {D});
  check_shape(who, "y", y.extents(), {B, L, D});
  check_shape(who, "state", state.extents(), {B, D, N});
  require(G >= 1 && D % G == 0, who,
          "channels D=" + std::to_string(D) + " must be a multiple of the groups G=" + std::to_string(G));
  const bool unit = D <= 1 || (in.u.stride(2) == 1 && in.delta.stride(2) == 1 && y.stride(2) == 1 &&
                               (!ssm::detail::present(in.z) || in.z.stride(2) == 1));
  require(unit, who, "u, delta, z and y need unit stride along the channel axis");
  return {B, L, D, N, G};
}

}  // namespace selective_scan

namespace ssd {

/// Mamba-2 SSD scan. Per batch b and head h (group g = h / (H/G)):
///   dt_t = softplus(dt_t[h] + dt_bias[h]);  h_t = exp(dt_t·A[h])·h_{t-1} + dt_t·x_t ⊗ B_t[g]
///   y_t = h_t·C_t[g] + D[h]·x_t          (state h_t [P,N]; decay is a scalar per head)
template <class T>
struct inputs {
  tensor_view<const T, 4> x;            ///< [B,T,H,P]
  tensor_view<const T, 3> dt;           ///< [B,T,H] time step before bias and softplus
  tensor_view<const T, 1> A;            ///< [H] continuous decay (negative)
  tensor_view<const T, 4> B, C;         ///< [B,T,G,N]
  tensor_view<const T, 1> D = {};       ///< [H] skip (empty view: none)
  tensor_view<const T, 1> dt_bias = {};  ///< [H] (empty view: none)
};

struct options {
  bool dt_softplus = true;                                ///< dt = softplus(dt + dt_bias)
  double dt_min = 0;                                      ///< dt is clamped to [dt_min, dt_max]
  double dt_max = std::numeric_limits<double>::infinity();  ///< (upstream dt_limit; default: no clamp)
};

struct dims {
  index_t B, L, H, P, N, G;
};

/// Validates the shapes (x, y [B,T,H,P]; dt [B,T,H]; A, D, dt_bias [H]; B, C [B,T,G,N]; state
/// [B,H,P,N]) and the unit strides of the last axes of x, y, B, C and state.
template <class T>
dims check_args(const inputs<T>& in, const tensor_view<T, 4>& y, const tensor_view<T, 4>& state) {
  const char* who = "ssd";
  const index_t B = in.x.extent(0), L = in.x.extent(1), H = in.x.extent(2), P = in.x.extent(3);
  const index_t G = in.B.extent(2), N = in.B.extent(3);
  check_shape(who, "dt", in.dt.extents(), {B, L, H});
  check_shape(who, "A", in.A.extents(), {H});
  check_shape(who, "B", in.B.extents(), {B, L, G, N});
  check_shape(who, "C", in.C.extents(), {B, L, G, N});
  if (ssm::detail::present(in.D)) check_shape(who, "D", in.D.extents(), {H});
  if (ssm::detail::present(in.dt_bias)) check_shape(who, "dt_bias", in.dt_bias.extents(), {H});
  check_shape(who, "y", y.extents(), {B, L, H, P});
  check_shape(who, "state", state.extents(), {B, H, P, N});
  require(G >= 1 && H % G == 0, who,
          "heads H=" + std::to_string(H) + " must be a multiple of the groups G=" + std::to_string(G));
  const bool unit = (P <= 1 || (in.x.stride(3) == 1 && y.stride(3) == 1)) &&
                    (N <= 1 || (in.B.stride(3) == 1 && in.C.stride(3) == 1 && state.stride(3) == 1));
  require(unit, who, "x, y, B, C and state need unit stride along their last axis");
  return {B, L, H, P, N, G};
}

}  // namespace ssd

}  // namespace seqmix::kernels::ssm
