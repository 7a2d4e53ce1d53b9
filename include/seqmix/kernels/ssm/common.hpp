// Helpers shared by the state-space kernels: the time-step activation, and the names of simd/
// they use for code written once for scalars and batches.
#pragma once

#include <algorithm>
#include <cmath>

#include "../../simd/batch.hpp"
#include "../../simd/math.hpp"
#include "../../simd/reduce.hpp"
#include "args.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::ssm::detail {

// Loads and stores written once for scalars and batches (decay factors: simd::exp2_nonpositive
// and simd::exp_nonpositive; lane sums of many rows: simd::row_sums).
using simd::vload, simd::vstore;

/// The time step from its raw value (bias already added): softplus or identity, then a clamp.
template <class V>
inline V time_step(const V& raw, bool softplus) {
  return softplus ? simd::softplus(raw) : raw;
}

}  // namespace seqmix::kernels::ssm::detail
