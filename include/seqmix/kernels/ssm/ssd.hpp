// Mamba-2 SSD entry point: forward(policy, ...) picks the kernel by the policy type.
#pragma once

#include <algorithm>

#include "ssd_chunk.hpp"
#include "ssd_recurrent.hpp"

namespace seqmix::kernels::ssm::ssd {

/// exec::automatic: the recurrent kernel below this many tokens (or policy.recurrent_below, if
/// larger), where the chunk algorithm's two transpositions of the [P,N] states outweigh its gain
/// (measured at H = 24, P = 64, N = 128), else chunkwise<automatic_chunk>.
inline constexpr index_t automatic_recurrent_below = 48;
inline constexpr index_t automatic_chunk = 32;

/// Mamba-2 SSD scan (spec/mamba2.md; see inputs<T>). y [B,T,H,P]; state [B,H,P,N] holds h before
/// the sequence and h after it on return.
template <exec::policy P, class T>
void forward(const P& policy, const inputs<T>& in, tensor_view<T, 4> y, tensor_view<T, 4> state, options opt = {}) {
  if constexpr (std::same_as<P, exec::recurrent>) recurrent(policy, in, y, state, opt);
  else if constexpr (std::same_as<P, exec::parallel>) parallel(policy, in, y, state, opt);
  else if constexpr (std::same_as<P, exec::automatic>) {
    if (in.x.extent(1) < std::max(policy.recurrent_below, automatic_recurrent_below))
      recurrent(exec::recurrent{policy.threads}, in, y, state, opt);
    else
      chunk(exec::chunkwise<automatic_chunk>{policy.threads}, in, y, state, opt);
  } else chunk(policy, in, y, state, opt);
}

}  // namespace seqmix::kernels::ssm::ssd
