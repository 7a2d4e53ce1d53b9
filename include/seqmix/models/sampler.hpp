// Choosing the next token from logits: greedy (argmax), or temperature / top-k / top-p (nucleus)
// sampling from a generator the sampler owns and seeds, so a seed gives the same tokens on every
// platform and no state is shared between samplers.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "../error.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::models {

using token_id = std::int32_t;

struct sampling_options {
  double temperature = 1;  ///< 0: greedy
  index_t top_k = 0;       ///< keep the k most likely tokens; 0: all
  double top_p = 1;        ///< keep the fewest most likely tokens whose probability reaches top_p; 1: all

  void validate() const {
    require(temperature >= 0 && std::isfinite(temperature), "sampler", "temperature must be finite and >= 0");
    require(top_k >= 0, "sampler", "top_k must not be negative");
    require(top_p > 0 && top_p <= 1, "sampler", "top_p must be in (0, 1]");
  }
};

/// The first index of the largest logit (NaN logits never win).
template <class T>
token_id argmax(std::span<const T> logits) {
  require(!logits.empty(), "sampler", "no logits");
  std::size_t best = 0;
  for (std::size_t i = 1; i < logits.size(); ++i)
    if (logits[i] > logits[best] || std::isnan(logits[best])) best = i;
  return static_cast<token_id>(best);
}

class sampler {
 public:
  explicit sampler(sampling_options options = {}, std::uint64_t seed = 0) : options_(options), rng_(seed) {
    options_.validate();
  }

  /// The next token. Candidates are ordered by logit, ties by token id, so top_k = 1 is greedy.
  template <class T>
  token_id operator()(std::span<const T> logits) {
    if (options_.temperature == 0) return argmax(logits);
    require(!logits.empty(), "sampler", "no logits");
    const std::size_t n = logits.size();
    for (std::size_t i = 0; i < n; ++i)  // a NaN would break the ordering below
      if (std::isnan(logits[i])) throw error("sampler: logit " + std::to_string(i) + " is NaN");
    order_.resize(n);
    std::iota(order_.begin(), order_.end(), token_id(0));
    // A total order (logit, then id), so sorting only the top k gives the same first k.
    const auto before = [&](token_id a, token_id b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
    std::size_t keep = options_.top_k > 0 ? std::min<std::size_t>(n, std::size_t(options_.top_k)) : n;
    std::partial_sort(order_.begin(), order_.begin() + std::ptrdiff_t(keep), order_.end(), before);
    // Softmax in double over the kept candidates (the largest logit first, so exp never overflows).
    prob_.resize(keep);
    const double top = double(logits[order_[0]]);
    double sum = 0;
    for (std::size_t i = 0; i < keep; ++i) sum += prob_[i] = std::exp((double(logits[order_[i]]) - top) / options_.temperature);
    if (options_.top_p < 1) {
      double mass = 0;
      std::size_t i = 0;
      while (i < keep && mass < options_.top_p * sum) mass += prob_[i++];
      keep = std::max<std::size_t>(i, 1), sum = mass > 0 ? mass : prob_[0];
    }
    // One uniform draw from the generator's bits (std::uniform_real_distribution is not portable).
    const double u = double(rng_() >> 11) * 0x1p-53 * sum;
    double acc = 0;
    for (std::size_t i = 0; i < keep; ++i)
      if ((acc += prob_[i]) > u) return order_[i];
    return order_[keep - 1];
  }

  const sampling_options& options() const { return options_; }

 private:
  sampling_options options_;
  std::mt19937_64 rng_;
  std::vector<token_id> order_;
  std::vector<double> prob_;
};

}  // namespace seqmix::models
