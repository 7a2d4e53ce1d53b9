// Kept for config.hpp, which includes it first: the intrinsic headers now live behind the SIMD
// boundary, in simd/intrinsics.hpp.
#pragma once

#include "../simd/intrinsics.hpp"
