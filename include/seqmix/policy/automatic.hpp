// exec::automatic, decided in one place: one rule per op family, each written next to the
// measurements it rests on (seqmix-bench, float32, one thread; docs/policy.md has the tables).
//
// A rule sees the call's shape (tokens T, key/state width K, value width V per head) and names the
// policy that ran fastest there. Every op entry point resolves automatic through run_automatic
// below and nothing else, so `automatic` is bit-identical to the policy resolve() names
// (tests/core/test_policy.cpp checks it for every family).
#pragma once

#include "execution.hpp"

namespace seqmix::exec {

/// The policy automatic resolves to.
enum class choice { recurrent, chunkwise, parallel };

/// What a rule may look at: tokens in the call and the per-head widths.
struct shape {
  index_t T = 0;  ///< tokens in this call
  index_t K = 0;  ///< key / state width per head (Mamba-1: state size N; attention: key dim)
  index_t V = 0;  ///< value width per head (Mamba-2: head dim P; attention: value dim)
};

namespace rules {

// Each rule: `chunk` (the chunk size when it picks chunkwise) and `choose(shape)`.

/// GLA (kernels/gla). Measured H8, K = V = 64: recurrent beats chunkwise<64> at every T, ~3x at
/// T = 2048 (the recurrent kernel keeps the state in registers and streams the tokens; the chunk
/// form pays a K x K intra-chunk product per token that the recurrence does not).
struct gla {
  static constexpr index_t chunk = 64;
  static constexpr choice choose(const shape&) { return choice::recurrent; }
};

/// Delta rule, gated or not (kernels/delta_rule). Measured H8, K = V = 64 and 128: recurrent is the
/// fastest at every T (3 FMAs per state element and token, state tile in L1).
struct delta_rule {
  static constexpr index_t chunk = 64;
  static constexpr choice choose(const shape&) { return choice::recurrent; }
};

/// RWKV-7 (kernels/rwkv7). Measured H8, K = V = 64: recurrent is the fastest at every T.
struct rwkv7 {
  static constexpr index_t chunk = 64;
  static constexpr choice choose(const shape&) { return choice::recurrent; }
};

/// Mamba-1 selective scan (kernels/ssm). Measured D1536, N16: recurrent at every T (the decay
/// exponentials dominate and no blocked form saves any).
struct selective_scan {
  static constexpr index_t chunk = 64;
  static constexpr choice choose(const shape&) { return choice::recurrent; }
};

/// Mamba-2 SSD (kernels/ssm). Measured H24, P64, N128: recurrent below 48 tokens, where the chunk
/// algorithm's two transpositions of the [P,N] states outweigh its gain; chunkwise<32> above.
struct ssd {
  static constexpr index_t chunk = 32;
  static constexpr index_t recurrent_below = 48;
  static constexpr choice choose(const shape& s) { return s.T < recurrent_below ? choice::recurrent : choice::chunkwise; }
};

/// Softmax attention (kernels/attention). Measured Hq8, Hkv2, D64: recurrent below 16 new
/// tokens, chunkwise<64> (flash blocks) above.
struct attention {
  static constexpr index_t chunk = 64;
  static constexpr index_t recurrent_below = 16;
  static constexpr choice choose(const shape& s) { return s.T < recurrent_below ? choice::recurrent : choice::chunkwise; }
};

}  // namespace rules

/// The policy `a` resolves to for `s` under Rule: recurrent for T < a.recurrent_below, else the rule's.
template <class Rule>
constexpr choice resolve(const automatic& a, const shape& s) {
  return s.T < a.recurrent_below ? choice::recurrent : Rule::choose(s);
}

/// Calls run(p) with p the policy `a` resolves to (exec::recurrent, exec::chunkwise<Rule::chunk>
/// or exec::parallel), carrying a's threads and pool.
template <class Rule, class Run>
void run_automatic(const automatic& a, const shape& s, Run&& run) {
  switch (resolve<Rule>(a, s)) {
    case choice::recurrent: return run(rebind<recurrent>(a));
    case choice::chunkwise: return run(rebind<chunkwise<Rule::chunk>>(a));
    case choice::parallel: return run(rebind<parallel>(a));
  }
}

}  // namespace seqmix::exec
