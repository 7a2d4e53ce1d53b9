// Argument checks and shared pieces of the delta-rule family (DeltaNet, Gated DeltaNet).
#pragma once

#include <cmath>
#include <string>

#include "../../error.hpp"
#include "../../simd/vec.hpp"
#include "../../tensor/view.hpp"
#include "../common/args.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::delta_rule {

/// Options of the delta-rule ops: the scale of q (0 means K^-1/2).
template <class T>
using options = common::options<T>;

namespace detail {

using common::head_rows, common::head_scalars;  // g and beta are head_scalars (g missing: DeltaNet)

// The validated arguments of one call. q, k [B,T,H,K]; v, o [B,T,HV,V]; g, beta [B,T,HV]
// (g.data() == nullptr: no decay, DeltaNet); state [B,HV,K,V].
template <class T>
struct problem {
  tensor_view<const T, 4> q, k, v;
  tensor_view<const T, 3> g, beta;
  tensor_view<T, 4> o, state;
  T scale;
  index_t B, L, H, HV, K, V;

  bool gated() const { return g.data() != nullptr; }
  // q/k head of value head hv: consecutive value heads share one q/k head.
  index_t qk_head(index_t hv) const { return hv / (HV / H); }
  head_rows<const T> q_rows(index_t b, index_t hv) const { return {q.ptr(b, 0, qk_head(hv)), q.stride(1)}; }
  head_rows<const T> k_rows(index_t b, index_t hv) const { return {k.ptr(b, 0, qk_head(hv)), k.stride(1)}; }
  head_rows<const T> v_rows(index_t b, index_t hv) const { return {v.ptr(b, 0, hv), v.stride(1)}; }
  head_rows<T> o_rows(index_t b, index_t hv) const { return {o.ptr(b, 0, hv), o.stride(1)}; }
  head_scalars<T> g_of(index_t b, index_t hv) const {
    return gated() ? head_scalars<T>{g.ptr(b, 0, hv), g.stride(1)} : head_scalars<T>{nullptr, 0};
  }
  head_scalars<T> beta_of(index_t b, index_t hv) const { return {beta.ptr(b, 0, hv), beta.stride(1)}; }
};

/// Validates shapes and strides (messages name `who`, the tensor and both shapes).
template <class T>
problem<T> check_args(const char* who, tensor_view<const T, 4> q, tensor_view<const T, 4> k,
                      tensor_view<const T, 4> v, tensor_view<const T, 3> g, tensor_view<const T, 3> beta,
                      tensor_view<T, 4> o, tensor_view<T, 4> state, const options<T>& opt) {
  const index_t B = q.extent(0), L = q.extent(1), H = q.extent(2), K = q.extent(3);
  const index_t HV = v.extent(2), V = v.extent(3);
  check_shape(who, "k", k.extents(), q.extents());
  check_shape(who, "v", v.extents(), {B, L, HV, V});
  if (!(H > 0 ? HV % H == 0 && HV > 0 : HV == 0))
    throw error(std::string(who) + ": v has " + std::to_string(HV) + " heads, not a positive multiple of the " +
                std::to_string(H) + " q/k heads");
  if (g.data() != nullptr) check_shape(who, "g", g.extents(), {B, L, HV});
  check_shape(who, "beta", beta.extents(), {B, L, HV});
  check_shape(who, "o", o.extents(), {B, L, HV, V});
  check_shape(who, "state", state.extents(), {B, HV, K, V});
  const bool unit = (K <= 1 || (q.stride(3) == 1 && k.stride(3) == 1)) &&
                    (V <= 1 || (v.stride(3) == 1 && o.stride(3) == 1 && state.stride(3) == 1));
  require(unit, who, "q, k, v, o and state need unit stride along their last axis");
  return {q, k, v, g, beta, o, state, common::scale_of(opt, K), B, L, H, HV, K, V};
}

}  // namespace detail

/// x[r] <- x[r] / sqrt(Σ x[r]² + eps) for `rows` rows of n elements (row stride ld): the q/k
/// normalisation of the layers (eps inside the square root, as fla's l2norm).
template <class T>
void l2_normalize_rows(T* x, index_t rows, index_t n, index_t ld, T eps) {
  for (index_t r = 0; r < rows; ++r) {
    T* row = x + r * ld;
    simd::scale(T(1) / std::sqrt(simd::dot(row, row, n) + eps), row, n);
  }
}

}  // namespace seqmix::kernels::delta_rule
