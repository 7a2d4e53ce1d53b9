// seqmix: library-wide configuration: version and the index type.
#pragma once

#include <cstddef>

#include "detail/intrinsics.hpp"

#define SEQMIX_VERSION_MAJOR 0
#define SEQMIX_VERSION_MINOR 1
#define SEQMIX_VERSION_PATCH 0

// Fully unrolls a loop with a compile-time trip count, so arrays of SIMD registers indexed by it
// stay in registers (GCC -O2 keeps them on the stack otherwise).
#if defined(__GNUC__)
#define SEQMIX_UNROLL _Pragma("GCC unroll 16")
#else
#define SEQMIX_UNROLL
#endif

// The code that depends on the instruction set (simd/, kernels/, nn/, layers/) lives in an inline
// namespace named after the target the translation unit is compiled for, as Highway does:
// seqmix::SEQMIX_TARGET_NAMESPACE::kernels::gla::... . A program may then compile one file with
// -march=native and another for the x86-64 baseline: each file's inline kernels are distinct
// symbols, so the linker cannot hand the baseline file the AVX-512 copy. Code names them as usual
// (seqmix::kernels::gla::...). The data types that cross files (tensor, views, error, io, policies)
// stay in seqmix itself: they hold no SIMD code. The name follows the ISA extensions the compiler
// enables; define SEQMIX_TARGET_NAMESPACE yourself to tell apart two targets it does not separate.
#if !defined(SEQMIX_TARGET_NAMESPACE)
#if defined(__AVX512BF16__)
#define SEQMIX_TARGET_NAMESPACE target_avx512bf16
#elif defined(__AVX512BW__)
#define SEQMIX_TARGET_NAMESPACE target_avx512bw
#elif defined(__AVX512F__)
#define SEQMIX_TARGET_NAMESPACE target_avx512f
#elif defined(__AVX2__) && defined(__FMA__)
#define SEQMIX_TARGET_NAMESPACE target_avx2_fma
#elif defined(__AVX2__)
#define SEQMIX_TARGET_NAMESPACE target_avx2
#elif defined(__AVX__)
#define SEQMIX_TARGET_NAMESPACE target_avx
#elif defined(__SSE4_1__)
#define SEQMIX_TARGET_NAMESPACE target_sse4_1
#elif defined(__SSE2__)
#define SEQMIX_TARGET_NAMESPACE target_sse2
#else
#define SEQMIX_TARGET_NAMESPACE target_scalar
#endif
#endif
#define SEQMIX_DETAIL_STRINGIFY2(x) #x
#define SEQMIX_DETAIL_STRINGIFY(x) SEQMIX_DETAIL_STRINGIFY2(x)

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE {
/// The name of the target namespace this translation unit compiles seqmix's SIMD code into.
inline constexpr const char* target_namespace = SEQMIX_DETAIL_STRINGIFY(SEQMIX_TARGET_NAMESPACE);
}  // namespace seqmix::SEQMIX_TARGET_NAMESPACE

namespace seqmix {

/// Signed index type for extents, strides and loop counters (as std::mdspan's index_type).
using index_t = std::ptrdiff_t;

}  // namespace seqmix
