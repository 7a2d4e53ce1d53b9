// Argument pieces shared by the op families: the scale option of the attention-like ops (GLA, the
// delta rule, softmax attention), the per-head row pointers the kernels walk, and the parameter
// types that let an op's entry point deduce its element type from one argument.
#pragma once

#include <cmath>
#include <cstddef>
#include <type_traits>

#include "../../config.hpp"
#include "../../tensor/view.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::common {

/// Options of the ops that scale their queries (GLA, DeltaNet, Gated DeltaNet, attention).
template <class T>
struct options {
  T scale = T(0);  ///< multiplies q (q·k for attention); 0 means K^-1/2
};

/// The scale to use: opt.scale, or K^-1/2 for the key width K when it is 0 (K = 0 counts as 1, so
/// an empty key axis gives zero outputs rather than 0 · inf).
template <class T>
T scale_of(const options<T>& opt, index_t K) {
  return opt.scale != T(0) ? opt.scale : T(1) / std::sqrt(T(K > 0 ? K : 1));
}

/// Token-major pointers of one head: element (t, i) at p[t * ts + i].
template <class T>
struct head_rows {
  T* p;
  index_t ts;
  T* row(index_t t) const { return p + t * ts; }
  /// The same rows from token t on.
  head_rows from(index_t t) const { return {row(t), ts}; }
};

/// One scalar per token of one head (a gate or a rate): element t at p[t * ts]. p == nullptr reads
/// as `missing` (the ungated delta rule has g = 0).
template <class T>
struct head_scalars {
  const T* p;
  index_t ts;
  T missing = T(0);
  T operator[](index_t t) const { return p ? p[t * ts] : missing; }
};

/// The element type of an op: T when given explicitly (forward<P, float>), else that of the tensor
/// or view Q the entry point takes first.
template <class T, class Q>
using element_t = std::conditional_t<std::is_void_v<T>, typename std::remove_cvref_t<Q>::value_type, T>;

/// Parameters that take their element type from another argument (so a tensor converts to them):
/// an input view and an output view of rank R.
template <class T, std::size_t R>
using in_view = std::type_identity_t<tensor_view<const T, R>>;
template <class T, std::size_t R>
using out_view = std::type_identity_t<tensor_view<T, R>>;

}  // namespace seqmix::kernels::common
