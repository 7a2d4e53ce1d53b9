// Unit-lower-triangular solves for the chunk kernels of the delta-rule family (DeltaNet, Gated
// DeltaNet, RWKV-7): the chunk-local UT / WY transform needs (I + L)^-1 applied to a block, where L
// is strictly lower triangular. Forward substitution row by row; rows are vectorised with axpy.
#pragma once

#include "../../config.hpp"
#include "../../simd/vec.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::common {

/// X <- (I + L)^-1 · X in place. L is n x n, strictly lower triangular (row stride ldl; its diagonal
/// and upper part are ignored); X is n x m with row stride ldx. Row i of the result is
/// X[i] - Σ_{j<i} L[i,j] · result[j].
template <class T>
void solve_unit_lower(const T* L, index_t ldl, T* X, index_t ldx, index_t n, index_t m) {
  for (index_t i = 1; i < n; ++i)
    for (index_t j = 0; j < i; ++j) {
      const T lij = L[i * ldl + j];
      if (lij != T(0)) simd::axpy(-lij, X + j * ldx, X + i * ldx, m);
    }
}

/// Tinv <- (I + L)^-1 (n x n, row stride ldt), itself unit lower triangular. L as above.
template <class T>
void invert_unit_lower(const T* L, index_t ldl, T* Tinv, index_t ldt, index_t n) {
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j) Tinv[i * ldt + j] = i == j ? T(1) : T(0);
  solve_unit_lower(L, ldl, Tinv, ldt, n, n);
}

}  // namespace seqmix::kernels::common
