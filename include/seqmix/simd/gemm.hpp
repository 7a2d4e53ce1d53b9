// Small dense matrix products for the chunk kernels: C (+)= A · B with register-blocked
// micro-kernels. A may have any strides (so Aᵀ is just a transposed view); B and C need unit
// column stride because their rows are what gets vectorised.
#pragma once

#include <algorithm>
#include <type_traits>

#include "../error.hpp"
#include "../tensor/view.hpp"
#include "batch.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::simd {

enum class gemm_mode {
  overwrite,   ///< C = A · B
  accumulate,  ///< C += A · B
};

namespace detail {

// Accumulator tile of MR rows x NV vectors. With 32 vector registers (AVX-512) a 4 x 4 tile plus
// 4 B vectors fits; with 16 (AVX2, SSE2) 4 x 2 does. The arrays are scalarised by the compiler.
template <index_t MR, index_t NV, class T>
inline void micro_kernel(index_t kend, const T* a, index_t ars, index_t acs, const T* b, index_t ldb,
                         T* c, index_t ldc, bool accumulate) {
  constexpr index_t L = lanes<T>;
  batch<T> acc[MR][NV];
  SEQMIX_UNROLL for (index_t r = 0; r < MR; ++r)
    SEQMIX_UNROLL for (index_t v = 0; v < NV; ++v) acc[r][v] = accumulate ? load(c + r * ldc + v * L) : batch<T>(T(0));
  for (index_t p = 0; p < kend; ++p) {
    batch<T> bv[NV];
    SEQMIX_UNROLL for (index_t v = 0; v < NV; ++v) bv[v] = load(b + p * ldb + v * L);
    SEQMIX_UNROLL for (index_t r = 0; r < MR; ++r) {
      const batch<T> av(a[r * ars + p * acs]);
      SEQMIX_UNROLL for (index_t v = 0; v < NV; ++v) acc[r][v] = xsimd::fma(av, bv[v], acc[r][v]);
    }
  }
  SEQMIX_UNROLL for (index_t r = 0; r < MR; ++r)
    SEQMIX_UNROLL for (index_t v = 0; v < NV; ++v) store(c + r * ldc + v * L, acc[r][v]);
}

template <index_t MR, class T>
inline void scalar_columns(index_t kend, const T* a, index_t ars, index_t acs, const T* b, index_t ldb,
                           T* c, index_t ldc, index_t ncols, bool accumulate) {
  for (index_t r = 0; r < MR; ++r)
    for (index_t j = 0; j < ncols; ++j) {
      T s = accumulate ? c[r * ldc + j] : T(0);
      for (index_t p = 0; p < kend; ++p) s += a[r * ars + p * acs] * b[p * ldb + j];
      c[r * ldc + j] = s;
    }
}

template <index_t MR, class T>
inline void row_block(index_t n, index_t kend, const T* a, index_t ars, index_t acs, const T* b,
                      index_t ldb, T* c, index_t ldc, bool accumulate) {
  constexpr index_t L = lanes<T>;
  constexpr index_t NV = sizeof(batch<T>) >= 64 ? 4 : 2;
  index_t j = 0;
  for (; j + NV * L <= n; j += NV * L)
    micro_kernel<MR, NV>(kend, a, ars, acs, b + j, ldb, c + j, ldc, accumulate);
  for (; j + L <= n; j += L) micro_kernel<MR, 1>(kend, a, ars, acs, b + j, ldb, c + j, ldc, accumulate);
  if (j < n) scalar_columns<MR>(kend, a, ars, acs, b + j, ldb, c + j, ldc, n - j, accumulate);
}

}  // namespace detail

/// C = A · B (or C += A · B). Shapes A [m, k], B [k, n], C [m, n]. When `lower_triangular_a` is
/// set, A must be zero above its diagonal (A[i][p] = 0 for p > i) and the product skips the
/// columns past each row block's diagonal (causal chunk products).
template <class T>
void gemm(tensor_view<const T, 2> A, tensor_view<const T, 2> B, tensor_view<T, 2> C,
          gemm_mode mode = gemm_mode::overwrite, bool lower_triangular_a = false) {
  const index_t m = A.extent(0), k = A.extent(1), n = B.extent(1);
  if (B.extent(0) != k || C.extent(0) != m || C.extent(1) != n)
    throw error("simd::gemm: shapes " + shape_string(A.extents()) + " x " + shape_string(B.extents()) +
                " -> " + shape_string(C.extents()) + " do not match");
  if ((n > 1 && (B.stride(1) != 1 || C.stride(1) != 1)))
    throw error("simd::gemm: B and C need unit column stride");
  const bool acc = mode == gemm_mode::accumulate;
  const index_t ars = A.stride(0), acs = A.stride(1), ldb = B.stride(0), ldc = C.stride(0);
  index_t i = 0;
  auto rows = [&]<index_t MR>(std::integral_constant<index_t, MR>) {
    for (; i + MR <= m; i += MR) {
      const index_t kend = lower_triangular_a ? std::min(k, i + MR) : k;
      detail::row_block<MR>(n, kend, A.data() + i * ars, ars, acs, B.data(), ldb, C.data() + i * ldc, ldc, acc);
    }
  };
  // 6 rows x 4 vectors (24 accumulators) fill AVX-512's 32 registers and amortise each B load
  // over more FMAs; then blocks of 4 rows, then single rows.
  if constexpr (sizeof(batch<T>) >= 64) rows(std::integral_constant<index_t, 6>{});
  rows(std::integral_constant<index_t, 4>{});
  for (; i < m; ++i) {
    const index_t kend = lower_triangular_a ? std::min(k, i + 1) : k;
    detail::row_block<1>(n, kend, A.data() + i * ars, ars, acs, B.data(), ldb, C.data() + i * ldc, ldc, acc);
  }
}

}  // namespace seqmix::simd
