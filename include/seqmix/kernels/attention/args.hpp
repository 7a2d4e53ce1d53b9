// Options, the visibility mask and the head mapping shared by every attention policy.
#pragma once

#include <string>

#include "../../error.hpp"
#include "../../tensor/view.hpp"
#include "../common/args.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::attention {

/// Which cached keys a query sees. Always causal: the query at absolute position p sees key j only
/// if j <= p. With a window W > 0 it sees the W keys (p - W, p] (flash-attn window_size = (W-1, 0),
/// fla semantics; Hymba's "W+1 keys" is window = W + 1). Keys at positions < sink are always
/// visible (attention sinks / meta tokens), window or not.
struct mask {
  index_t window = 0;  ///< 0: no window
  index_t sink = 0;

  bool sees(index_t p, index_t j) const {
    return j >= 0 && j <= p && (window <= 0 || p - j < window || j < sink);
  }
};

/// Options of the attention op: the scale of q·k (0 means key_dim^-1/2; scale_of resolves it).
template <class T>
using options = common::options<T>;
using common::scale_of;

/// Head counts of one call: query heads Hq, key heads Hk, value heads Hv. Query head h reads key
/// head h / (Hq/Hk) and value head h / (Hq/Hv): consecutive query heads share a key head (GQA);
/// differential attention has Hk = 2·Hv (two key heads per value head).
struct head_map {
  index_t q = 0, k = 0, v = 0;

  index_t q_per_k() const { return q / k; }
  index_t k_per_v() const { return k / v; }
  index_t key_head(index_t h) const { return h / q_per_k(); }
  index_t value_head(index_t h) const { return h / (q / v); }

  void check(const char* who) const {
    require(q > 0 && k > 0 && v > 0, who, "head counts must be positive");
    require(q % k == 0 && k % v == 0,
            who, "query heads (" + std::to_string(q) + ") must be a multiple of key heads (" + std::to_string(k) +
                     "), and key heads a multiple of value heads (" + std::to_string(v) + ")");
  }
};

}  // namespace seqmix::kernels::attention
