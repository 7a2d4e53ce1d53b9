// Reference-case runner for attention (op and layer levels, spec/attention.md).
#pragma once

#include <cmath>
#include <vector>

#include <seqmix/kernels/attention/attention.hpp>
#include <seqmix/layers/attention.hpp>
#include "case.hpp"
#include "layer.hpp"

namespace seqmix::refcheck::attention {

/// Compares a cache's stored keys / values with the file's state_out.k / state_out.v. A windowed
/// cache keeps only the positions its window needs: those rows are compared.
template <class T>
void compare_cache(result& r, const ref_case& c, const kernels::attention::kv_cache<T>& cache) {
  if (!c.has("state_out.k")) return;
  const auto pos = cache.positions();
  for (const bool keys : {true, false}) {
    const std::string name = keys ? "state_out.k" : "state_out.v";
    const auto got = keys ? cache.keys() : cache.values();
    const auto want = c.file.get<double, 4>(name);
    if (want.extent(1) != cache.length() || got.extent(0) != want.extent(0) || got.extent(2) != want.extent(2) ||
        got.extent(3) != want.extent(3)) {
      r.state = result::status::fail;
      r.reason = name + " has shape " + shape_string(want.extents()) + ", the cache holds " + shape_string(got.extents()) +
                 " of " + std::to_string(cache.length()) + " positions";
      return;
    }
    bool ok = true;
    for (index_t b = 0; b < got.extent(0); ++b)
      for (index_t i = 0; i < got.extent(1); ++i)
        for (index_t h = 0; h < got.extent(2); ++h)
          for (index_t d = 0; d < got.extent(3); ++d) {
            const double w = want(b, pos[std::size_t(i)], h, d), e = std::abs(double(got(b, i, h, d)) - w);
            if (!(e <= c.atol + c.rtol * std::abs(w))) ok = false;
            r.max_abs_err = std::isnan(e) ? e : std::max(r.max_abs_err, e);
          }
    if (!ok && r.state == result::status::pass) r.state = result::status::fail, r.reason = name + " out of tolerance";
  }
}

/// The file's cache prefix (state_in.k / state_in.v), if any, appended to `cache`.
template <class T>
void load_prefix(const ref_case& c, kernels::attention::kv_cache<T>& cache) {
  if (c.has("state_in.k")) cache.append(c.get<T, 4>("state_in.k"), c.get<T, 4>("state_in.v"));
}

inline index_t prefix_length(const ref_case& c) {
  if (!c.has("state_in.k")) return 0;
  const auto& shape = c.file.info("state_in.k").shape;
  if (shape.size() != 4) throw error("refcheck " + c.path.string() + ": state_in.k has shape " + shape_string(shape) + ", expected rank 4");
  return index_t(shape[1]);
}

inline index_t window_of(const ref_case& c) { return c.cfg_or<index_t>("window", 0); }

/// ref_case::reserve for a KV cache of `batch` sequences and `capacity` tokens whose heads and
/// dims are `s` (the cache rounds its slots up, which the budget's allowance covers).
inline void reserve_cache(const ref_case& c, index_t batch, index_t capacity, index_t key_width, index_t value_width) {
  c.reserve(std::array<index_t, 3>{batch, capacity, key_width}, "the KV cache's keys");
  c.reserve(std::array<index_t, 3>{batch, capacity, value_width}, "the KV cache's values");
}

inline result run(const ref_case& c, policy_kind p) {
  result r = make_result(c, p);
  namespace A = kernels::attention;
  if (c.level == "op") {
    const auto q = c.get<float, 4>("in.q"), k = c.get<float, 4>("in.k"), v = c.get<float, 4>("in.v");
    const index_t B = q.extent(0), L = q.extent(1), Hk = k.extent(2), Dv = v.extent(3);
    reserve_cache(c, B, prefix_length(c) + L, Hk * q.extent(3), v.extent(2) * Dv);
    c.reserve(std::array<index_t, 4>{B, L, q.extent(2), Dv}, "out.o");
    A::kv_cache<float> cache({B, Hk, q.extent(3), v.extent(2), Dv}, prefix_length(c) + L, {window_of(c), 0});
    load_prefix(c, cache);
    tensor<float, 4> o({B, L, q.extent(2), Dv}, std::nanf(""));
    const A::options<float> opt{c.cfg<float>("scale")};
    with_policy(p, [&](auto policy) { A::forward(policy, q, k, v, o, cache, opt); });
    compare<float, 4>(r, c, "out.o", o);
    compare_cache(r, c, cache);
    return r;
  }
  if (c.level == "layer") {
    if (c.cfg<bool>("qk_norm")) return skipped(c, p, "attention: qk_norm is not supported");
    using layer = layers::Attention<float>;
    const auto attn = layer::load(c.file, config_from<layer::config>(c), "param.");
    const auto x = c.get<float, 3>("in.x");
    const index_t capacity = prefix_length(c) + x.extent(1);
    {
      const auto one = attn.make_state(1, {.capacity = capacity});
      const auto d = one.dims();
      reserve_cache(c, x.extent(0), capacity, d.key_heads * d.key_dim, d.value_heads * d.value_dim);
    }
    auto state = attn.make_state(x.extent(0), {.capacity = capacity});
    load_prefix(c, state);
    const auto y = with_policy(p, [&](auto policy) { return attn.forward(policy, x, state); });
    compare<float, 3>(r, c, "out.o", y);
    compare_cache(r, c, state);
    return r;
  }
  return skipped(c, p, "attention: unknown level '" + c.level + "'");
}

}  // namespace seqmix::refcheck::attention
