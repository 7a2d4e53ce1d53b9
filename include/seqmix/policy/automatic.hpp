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

// Each rule: `chunk` (the chunk size when it picks chunkwise) and `choose(shape)`, made from one of
// the two forms below. The figures are µs per call, medians of 3, B = 1, one thread pinned, all
// rows of a family from one seqmix-bench run (2026-12-06; docs/policy.md has the tables and the
// command).

/// Recurrent at every length.
template <index_t Chunk>
struct always_recurrent {
  static constexpr index_t chunk = Chunk;
  static constexpr choice choose(const shape&) { return choice::recurrent; }
};

/// Recurrent below `Below` tokens, chunkwise<Chunk> from there on.
template <index_t Chunk, index_t Below>
struct chunkwise_from {
  static constexpr index_t chunk = Chunk;
  static constexpr index_t recurrent_below = Below;
  static constexpr choice choose(const shape& s) { return s.T < Below ? choice::recurrent : choice::chunkwise; }
};

/// GLA (kernels/gla), H8 K64 V64, recurrent / chunkwise<64> / parallel:
///   T = 16: 22.4 / 45.9 / 46.1;  64: 86.8 / 202 / 209;  256: 391 / 754 / 1962;  2048: 5442 / 11696.
/// Recurrent at every length (2-2.3x): it keeps the state tile in registers and streams the tokens,
/// while the chunk form adds a K x K intra-chunk product per token.
struct gla : always_recurrent<64> {};

/// Delta rule, gated or not (kernels/delta_rule), recurrent / chunkwise<64> (best chunk) / parallel:
///   K = V = 64, T = 16: 39.8 / 83.6 / 59.4;  64: 115 / 453 / 497;  256: 473 / 2054 / 4865;
///     2048: 4688 / 15818 (chunkwise<16>: 13789);
///   K = V = 128, T = 16: 124 / 178 / 169;  64: 494 / 808 / 814;  256: 1845 / 3522 / 11563;
///     2048: 25822 / 65140 (chunkwise<16>: 59018).
/// Recurrent at every length and both head sizes (1.4-4.4x): 3 FMAs per state element and token.
struct delta_rule : always_recurrent<64> {};

/// RWKV-7 (kernels/rwkv7), H8 K64 V64, recurrent / chunkwise<16> / chunkwise<64> / parallel:
///   T = 16: 49.4 / 103 / 130 / 120;  64: 294 / 507 / 603 / 930;  256: 776 / 1814 / 3017 / 9126;
///   2048: 10006 / 30777 / 40615.  Recurrent at every length (1.7-3x).
struct rwkv7 : always_recurrent<16> {};

/// Mamba-1 selective scan (kernels/ssm), D1536 N16, recurrent / chunkwise<64> / parallel:
///   T = 16: 215 / 328 / 784;  64: 643 / 943 / 9419;  256: 2392 / 3319;  2048: 28231 / 38193.
/// Recurrent at every length (1.35-1.5x): the decay exponentials dominate and no blocked form
/// saves any.
struct selective_scan : always_recurrent<64> {};

/// Mamba-2 SSD (kernels/ssm), H24 P64 N128, recurrent / chunkwise<32> / chunkwise<64>:
///   T = 2: 18.3 / 65.4 / 88.1;  4: 44.9 / 106 / 98.7;  8: 92.0 / 145 / 143;  16: 201 / 184 / 172;
///   48: 948 / 686 / 674;  64: 1198 / 846 / 879;  256: 4797 / 3408 / 3467;  2048: 50680 / 25615 / 26498.
/// Recurrent up to 8 tokens (the chunk algorithm's two transpositions of the [P,N] states cost more
/// than it saves), chunkwise from 16 on (1.1x at 16, 2x at 2048); chunk 32 and 64 within 4% of
/// each other, 32 ahead at 2048.
struct ssd : chunkwise_from<32, 16> {};

/// Softmax attention (kernels/attention), Hq8 Hkv2 D64, recurrent / chunkwise<64> / parallel:
///   empty cache, T = 4: 7.44 / 6.78 / 14.1;  16: 21.1 / 15.3 / 45.7;  64: 114 / 87.6 / 172;
///     256: 915 / 726 / 2775;  2048: 40757 / 35237;
///   after 4096 cached tokens, T = 1: 58.6 / 59.0;  2: 116 / 103;  4: 232 / 193;  16: 909 / 704.
/// Recurrent for one token (a tie; the decode path, no query tile to fill), chunkwise (flash
/// blocks) from two tokens on (1.1-1.4x).
struct attention : chunkwise_from<64, 2> {};

}  // namespace rules

/// The policy `a` resolves to for `s` under Rule: recurrent for T < a.recurrent_below (a caller's
/// override; 0 by default), else the rule's.
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
