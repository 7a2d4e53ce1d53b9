// generate(): a prompt prefilled, then one token at a time chosen by a sampler and fed back with
// step(). The state has then seen the prompt and every generated token but the last, which a
// following call takes as its prompt to continue.
#pragma once

#include <span>
#include <vector>

#include "model.hpp"
#include "sampler.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::models {

/// `count` tokens after `prompt` (not empty), prefilled with `policy`, decoded with its threads.
template <class T, class W, exec::policy P>
std::vector<token_id> generate(const model<T, W>& m, const P& policy, model_state<T, W>& s, std::span<const token_id> prompt,
                               index_t count, sampler& pick) {
  require(count >= 0, "generate", "count must not be negative");
  std::vector<token_id> out;
  if (count == 0) return out;
  auto logits = m.prefill(policy, prompt, s);
  for (;;) {
    out.push_back(pick(std::span<const T>(logits.data(), std::size_t(logits.size()))));
    if (index_t(out.size()) == count) return out;
    logits = m.step(policy, out.back(), s);
  }
}

}  // namespace seqmix::models
