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

namespace seqmix {

/// Signed index type for extents, strides and loop counters (as std::mdspan's index_type).
using index_t = std::ptrdiff_t;

}  // namespace seqmix
