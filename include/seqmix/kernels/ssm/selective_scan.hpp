// Mamba-1 selective scan entry point: forward(policy, ...) picks the kernel by the policy type.
#pragma once

#include "selective_scan_chunk.hpp"
#include "selective_scan_recurrent.hpp"

namespace seqmix::kernels::ssm::selective_scan {

/// Mamba-1 selective scan (spec/mamba.md; see inputs<T>). exec::automatic runs the recurrent
/// kernel at every length: the decay exponentials dominate and no blocked form saves any (the
/// recurrent kernel itself switches to its state-vectorised path for up to 3 tokens). y [B,T,D]; state [B,D,N] holds h before
/// the sequence and h after it on return.
template <exec::policy P, class T>
void forward(const P& policy, const inputs<T>& in, tensor_view<T, 3> y, tensor_view<T, 3> state, options opt = {}) {
  if constexpr (std::same_as<P, exec::recurrent>) recurrent(policy, in, y, state, opt);
  else if constexpr (std::same_as<P, exec::parallel>) parallel(policy, in, y, state, opt);
  else if constexpr (std::same_as<P, exec::automatic>) recurrent(exec::recurrent{policy.threads}, in, y, state, opt);
  else chunk(policy, in, y, state, opt);
}

}  // namespace seqmix::kernels::ssm::selective_scan
