// What seqmix-run reports: each block's state bytes (models/state_bytes.hpp) by hand for Mamba-2 and
// attention, equal to Hymba's own bytes(), defined for every family; and the per-block time array
// of prefill()/step() (filled only when given, the logits unchanged).
#include <seqmix/models/json_config.hpp>
#include <seqmix/models/model.hpp>
#include <seqmix/models/state_bytes.hpp>

#include <numeric>
#include <vector>

#include "support/all_layers.hpp"
#include "support/compare.hpp"

using namespace seqmix;
using namespace seqmix::models;
using Catch::Matchers::Contains;

namespace {
using M = model<float>;
const std::vector<token_id> prompt{1, 5, 9, 13, 2, 40, 7};
}  // namespace

TEST_CASE("state bytes: Mamba-2 and attention by hand, not counting forward()'s buffers", "[models]") {
  const M m = M::init(parse_model_config(R"({"vocab_size": 50, "hidden_size": 64, "layers": [
      {"family": "mamba2", "config": {"d_state": 16, "headdim": 16, "ngroups": 2}, "mlp_size": 96},
      {"family": "attention", "config": {"num_heads": 4, "num_kv_heads": 2}}]})"), 1);
  auto s = m.make_state(/*capacity=*/100);
  // Mamba-2: conv [1, d_inner + 2·G·N = 192, 3], ssm [1, 8 heads, 16, 16]. Attention: 128 slots
  // (100 rounded up to 64s) of 2 KV heads' keys and values of 16.
  const index_t mamba2 = (192 * 3 + 8 * 16 * 16) * 4, attention = 128 * 2 * (16 + 16) * 4;
  CHECK(state_bytes(m, s, 0) == mamba2);
  CHECK(state_bytes(m, s, 1) == attention);
  m.prefill(exec::automatic{}, prompt, s);  // the scratch buffers now hold rows: not state
  CHECK(state_bytes(m, s) == mamba2 + attention);
  const auto fork = s;
  CHECK(state_bytes(m, fork) == mamba2 + attention);
  REQUIRE_THROWS_WITH(state_bytes(m, s, 2), Contains("block 2"));
  // A layer with a bf16 KV cache: half the bytes.
  using bf16_cache = layers::Attention<float, float, bf16>;
  const auto half = bf16_cache::init({.hidden_size = 64, .num_heads = 4, .num_kv_heads = 2}, 1);
  CHECK(state_bytes(half, half.make_state(1, {.capacity = 100})) == attention / 2);
}

TEST_CASE("state bytes: Hymba's own bytes(), and every family", "[models]") {
  namespace al = test::all_layers;
  model_config<float> cfg;
  cfg.vocab_size = 50, cfg.hidden_size = al::width;
  const auto add = [&]<class L>(std::type_identity<L>, const typename L::config& c) {
    cfg.layers.push_back(block_config<float>::of<L>(c));
  };
  al::each_family_config(add);
  add(std::type_identity<al::hymba>{}, al::hymba_config(true));
  const M m = M::init(cfg, 3);
  auto s = m.make_state(64);
  m.prefill(exec::automatic{}, prompt, s);
  index_t sum = 0;
  for (std::size_t i = 0; i < m.num_layers(); ++i) {
    INFO(cfg.who(i));
    const index_t b = state_bytes(m, s, i);
    CHECK(b > 0);
    sum += b;
    if (const auto* h = std::get_if<state_of<al::hymba>>(s.layer(i))) CHECK(b == h->value.bytes());
  }
  CHECK(state_bytes(m, s) == sum);
}

TEST_CASE("prefill and step add each block's time to a given array, and change nothing else", "[models]") {
  const M m = M::init(parse_model_config(R"({"vocab_size": 50, "hidden_size": 64, "layers": [
      {"family": "gated_delta_net", "config": {"head_dim": 16, "num_heads": 2}, "mlp_size": 96},
      {"family": "attention", "config": {"num_heads": 4}}]})"), 2);
  auto a = m.make_state(), b = m.make_state();
  std::vector<double> seconds(2);
  SEQMIX_CHECK_IDENTICAL(m.prefill(exec::automatic{}, prompt, a, seconds), m.prefill(exec::automatic{}, prompt, b));
  CHECK(seconds[0] > 0);
  CHECK(seconds[1] > 0);
  const auto after_prefill = seconds;
  SEQMIX_CHECK_IDENTICAL(m.step(exec::recurrent{}, 3, a, seconds), m.step(exec::recurrent{}, 3, b));
  CHECK(seconds[0] > after_prefill[0]);
  CHECK(seconds[1] > after_prefill[1]);
  std::vector<double> wrong(3);
  REQUIRE_THROWS_WITH(m.step(exec::recurrent{}, 3, a, wrong), Contains("block_seconds"));
}
