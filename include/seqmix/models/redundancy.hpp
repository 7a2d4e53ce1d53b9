// Layer redundancy, after "What Matters in Transformers? Not All Attention Is Needed" (He et al.,
// 2024): a part (block, mixer or MLP) whose output hidden states barely differ from its input ones
// changes little, and dropping it costs little. importance() scores every part by 1 − cos(input,
// output) averaged over the calibration tokens; perplexity() measures what dropping parts really
// costs. tools/redundancy (seqmix-redundancy) ranks the parts and writes the config without the k
// least important (model_config::without). docs/models.md.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "model.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::models {

/// One part's importance score and what dropping it alone costs.
struct part_importance {
  layer_part where;
  double score = 0;  ///< 1 − cos(hidden in, hidden out), the mean over the calibration tokens
  /// Perplexity of the calibration tokens with this part dropped (NaN until measured or when it
  /// cannot be dropped).
  double dropped_perplexity = std::numeric_limits<double>::quiet_NaN();
  std::string cannot_drop;  ///< why a config without it is refused (empty: it can be dropped)
};

/// "block", "mixer", "mlp".
inline const char* part_name(part p) { return p == part::block ? "block" : p == part::mixer ? "mixer" : "mlp"; }

/// 1 − cos(a, b) of two rows in double; two zero rows are the same (0), one zero row is orthogonal.
template <class T>
double cosine_distance(const T* a, const T* b, index_t n) {
  double ab = 0, aa = 0, bb = 0;
  for (index_t i = 0; i < n; ++i) ab += double(a[i]) * double(b[i]), aa += double(a[i]) * double(a[i]), bb += double(b[i]) * double(b[i]);
  if (aa == 0 && bb == 0) return 0;
  if (aa == 0 || bb == 0) return 1;
  return 1 - ab / std::sqrt(aa * bb);
}

/// The importance of every part that runs (each block, and its mixer and MLP when it has them),
/// in model order, over the calibration sequences (each from a fresh state). Not yet ranked.
template <class T, class W, exec::policy P>
std::vector<part_importance> importance(const model<T, W>& m, const P& policy, std::span<const std::vector<token_id>> calibration) {
  require(!calibration.empty(), "redundancy", "no calibration sequences");
  const std::size_t L = m.num_layers();
  // sums[3 i + part]: Σ over tokens of 1 − cos; seen: whether part ran.
  std::vector<double> sums(3 * L, 0.0);
  std::vector<bool> seen(3 * L, false);
  double tokens = 0;
  run_options<T> opt;
  opt.observe = [&](layer_part where, tensor_view<const T, 2> in, tensor_view<const T, 2> out) {
    const std::size_t k = 3 * where.layer + std::size_t(where.what);
    seen[k] = true;
    for (index_t r = 0; r < in.extent(0); ++r) sums[k] += cosine_distance(in.ptr(r, 0), out.ptr(r, 0), in.extent(1));
  };
  for (const auto& seq : calibration) {
    auto s = m.make_state(index_t(seq.size()));
    (void)m.prefill(policy, seq, s, opt);
    tokens += double(seq.size());
  }
  std::vector<part_importance> out;
  for (std::size_t i = 0; i < L; ++i)
    for (part p : {part::block, part::mixer, part::mlp})
      if (const std::size_t k = 3 * i + std::size_t(p); seen[k]) {
        part_importance q;
        q.where = {i, p}, q.score = sums[k] / tokens;
        out.push_back(std::move(q));
      }
  return out;
}

/// exp(mean −log p(next token)) over the calibration sequences (each from a fresh state), with
/// `skip` not run (as the config m.cfg().without(skip) would compute).
template <class T, class W, exec::policy P>
double perplexity(const model<T, W>& m, const P& policy, std::span<const std::vector<token_id>> calibration,
                  std::span<const layer_part> skip = {}) {
  require(!calibration.empty(), "redundancy", "no calibration sequences");
  run_options<T> opt;
  opt.skip = skip;
  double nll = 0, count = 0;
  for (const auto& seq : calibration) {
    auto s = m.make_state(index_t(seq.size()));
    nll += m.negative_log_likelihood(policy, seq, s, opt);
    count += double(seq.size()) - 1;
  }
  return std::exp(nll / count);
}

/// Fills dropped_perplexity (or cannot_drop) of every part, one part dropped at a time.
template <class T, class W, exec::policy P>
void measure_drops(const model<T, W>& m, const P& policy, std::span<const std::vector<token_id>> calibration,
                   std::span<part_importance> parts) {
  for (auto& p : parts) {
    const layer_part skip[] = {p.where};
    try {
      (void)m.cfg().without(skip);
    } catch (const error& e) {
      p.cannot_drop = e.what();
      continue;
    }
    p.dropped_perplexity = perplexity(m, policy, calibration, skip);
  }
}

/// Most important first: by score, descending (ties in model order).
inline void rank(std::vector<part_importance>& parts) {
  std::stable_sort(parts.begin(), parts.end(), [](const auto& a, const auto& b) { return a.score > b.score; });
}

/// The k least important parts of kind `what` (part::mixer or part::block) that can be dropped
/// together, least important first: taken from the end of the ranking, skipping any whose drop the
/// config refuses (a cross-layer producer whose consumer stays).
template <class T>
std::vector<layer_part> least_important(const model_config<T>& cfg, std::vector<part_importance> parts, part what, std::size_t k) {
  rank(parts);
  std::vector<layer_part> drop;
  for (auto it = parts.rbegin(); it != parts.rend() && drop.size() < k; ++it) {
    if (it->where.what != what) continue;
    drop.push_back(it->where);
    try {
      (void)cfg.without(drop);
    } catch (const error&) {
      drop.pop_back();
    }
  }
  return drop;
}

}  // namespace seqmix::models
