// Arguments of the Hymba head combination (spec/hymba.md, "op"): its options and the shape checks
// shared by the reference and the fast path.
#pragma once

#include <string>

#include "../../config.hpp"
#include "../../error.hpp"
#include "../../tensor/view.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::hymba {

/// Options of y = (RMSNorm₁(attn) + RMSNorm₂(ssm)) / 2, o = y W_outᵀ + b.
template <class T>
struct options {
  T eps = T(1e-6);  ///< RMSNorm epsilon (HymbaRMSNorm's default)
};

/// The tensors of one call: attn, ssm [B,T,I] (the two branches' outputs), norm1, norm2 [I]
/// (pre_avg_layernorm1/2.weight), w_out [C,I] and bias [C] (out_proj; an empty bias view: none).
template <class T>
struct inputs {
  tensor_view<const T, 3> attn, ssm;
  tensor_view<const T, 1> norm1, norm2;
  tensor_view<const T, 2> w_out;
  tensor_view<const T, 1> bias = {};
};

/// Checks the inputs against y [B,T,I] (may be null: not wanted) and o [B,T,C]; unit stride along
/// the feature axes. Returns B·T.
template <class T>
index_t check_args(const char* who, const inputs<T>& in, const tensor_view<T, 3>* y, const tensor_view<T, 3>* o) {
  const index_t B = in.attn.extent(0), L = in.attn.extent(1), I = in.attn.extent(2), C = in.w_out.extent(0);
  check_shape(who, "ssm_out", in.ssm.extents(), in.attn.extents());
  check_shape(who, "pre_avg_layernorm1.weight", in.norm1.extents(), {I});
  check_shape(who, "pre_avg_layernorm2.weight", in.norm2.extents(), {I});
  if (o) {
    check_shape(who, "out_proj.weight", in.w_out.extents(), {C, I});
    if (in.bias.data()) check_shape(who, "out_proj.bias", in.bias.extents(), {C});
    check_shape(who, "o", o->extents(), {B, L, C});
  }
  if (y) check_shape(who, "y", y->extents(), in.attn.extents());
  const bool unit = I <= 1 || (in.attn.stride(2) == 1 && in.ssm.stride(2) == 1 && in.norm1.stride(0) == 1 &&
                               in.norm2.stride(0) == 1 && (!y || y->stride(2) == 1) &&
                               (!o || in.w_out.stride(1) == 1));
  require(unit, who, "attn_out, ssm_out, y, the norm weights and out_proj.weight need unit stride along I");
  require(!o || C <= 1 || ((o->stride(2) == 1) && (!in.bias.data() || in.bias.stride(0) == 1)), who,
          "o and out_proj.bias need unit stride along C");
  return checked_mul(B, L, who);
}

}  // namespace seqmix::kernels::hymba
