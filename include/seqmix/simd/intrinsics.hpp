// Includes the x86 intrinsic headers under a warning suppression. config.hpp includes this first
// (through detail/intrinsics.hpp), so the intrinsic headers' lines fall inside the suppressed
// region. Only simd/ may use what they declare (scripts/check_simd_boundary.sh).
#pragma once

// GCC 12 warns "__Y may be used uninitialized" inside its own AVX-512 intrinsic headers
// (_mm512_undefined_*, GCC bug 105593, fixed in GCC 13). The headers are first included here, so
// the suppression covers exactly their lines.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
