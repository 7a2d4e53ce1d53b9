// GatedLinearAttention layer: loading by upstream names (with a prefix), forward in pieces versus
// one pass, step() versus forward, policies against each other (outputs and state), save / load
// round trip, every weight required, bad configs and non-finite weights named, error messages.
#include <seqmix/io/safetensors.hpp>
#include <seqmix/layers/gla.hpp>

#include "support/compare.hpp"
#include "support/layer_checks.hpp"

using namespace seqmix;
using layer = layers::GatedLinearAttention<float>;

namespace {

const std::string medium = SEQMIX_TEST_DATA_DIR "/refs/gla/layer_medium.safetensors";
const std::string prefix = "model.layers.3.attn.";

// layer_medium: hidden 128, 4 heads, K 16, V 32.
layer::config medium_config() { return {.hidden_size = 128, .num_heads = 4}; }

// Not a multiple of the SIMD lanes anywhere: hidden 72, 3 heads, K 12, V 24, gate rank 10.
layer::config odd_config() { return {.hidden_size = 72, .num_heads = 3, .gate_low_rank_dim = 10}; }

// The layer_medium case: its file, the layer loaded from it and its input x [2, 128, 128].
struct medium_case {
  io::safetensors file = io::safetensors::load(medium);
  layer gla = layer::load(file, medium_config(), "param.");
  tensor<float, 3> x = file.get<float, 3>("in.x");
};

// Bound of a layer output or state: the projections (hidden), the key dot products (K) and the
// recurrence over the tokens (T).
double tol(const layer& l, index_t T) {
  return test::tolerance<float>(double(l.hidden_size() + l.cfg().head_k_dim() + T));
}

}  // namespace

TEST_CASE("GatedLinearAttention: forward in pieces equals one pass", "[gla][layer]") {
  const medium_case c;
  const auto& [file, gla, x] = c;
  auto s_full = gla.make_state(2);
  const auto y_full = gla.forward(exec::chunkwise<64>{}, x, s_full);

  auto s = gla.make_state(2);
  auto y = test::nan_tensor<float, 3>(y_full.extents());
  const index_t cuts[] = {0, 1, 50, 64, 127, 128};
  for (int i = 0; i + 1 < 6; ++i) {
    const index_t t0 = cuts[i], n = cuts[i + 1] - cuts[i];
    gla.forward(exec::automatic{}, x.view().subrange(1, t0, n), y.view().subrange(1, t0, n), s);
  }
  SEQMIX_CHECK_WITHIN(y, y_full, tol(gla, 128));
  SEQMIX_CHECK_WITHIN(s.h, s_full.h, tol(gla, 128));
}

TEST_CASE("GatedLinearAttention: step() equals forward token by token", "[gla][layer]") {
  const medium_case c;
  const auto& [file, gla, x] = c;
  auto s_full = gla.make_state(2);
  const auto y_full = gla.forward(exec::parallel{}, x.view().subrange(1, 0, 20), s_full);
  auto s = gla.make_state(2);
  auto y = test::nan_tensor<float, 3>(y_full.extents());
  for (index_t t = 0; t < 20; ++t)  // the step's policy only gives the threads
    if (t % 2) gla.step(exec::recurrent{}, x.view().slice(1, t), y.view().slice(1, t), s);
    else gla.step(exec::automatic{2}, x.view().slice(1, t), y.view().slice(1, t), s);
  SEQMIX_CHECK_WITHIN(y, y_full, tol(gla, 20));
  SEQMIX_CHECK_WITHIN(s.h, s_full.h, tol(gla, 20));
}

TEST_CASE("GatedLinearAttention: policies agree on the layer, outputs and state", "[gla][layer]") {
  const medium_case c;
  const auto& [file, gla, x] = c;
  auto s_r = gla.make_state(2), s_c = gla.make_state(2), s_p = gla.make_state(2), s_a = gla.make_state(2);
  const auto y_r = gla.forward(exec::recurrent{}, x, s_r);
  const auto y_c = gla.forward(exec::chunkwise<16>{2}, x, s_c);
  const auto y_p = gla.forward(exec::parallel{}, x, s_p);
  const auto y_a = gla.forward(exec::automatic{2}, x, s_a);
  const double t = tol(gla, 128);
  SEQMIX_CHECK_WITHIN(y_c, y_r, t);
  SEQMIX_CHECK_WITHIN(y_p, y_r, t);
  SEQMIX_CHECK_WITHIN(y_a, y_r, t);
  SEQMIX_CHECK_WITHIN(s_c.h, s_r.h, t);
  SEQMIX_CHECK_WITHIN(s_p.h, s_r.h, t);
  SEQMIX_CHECK_WITHIN(s_a.h, s_r.h, t);
}

TEST_CASE("GatedLinearAttention: weights load under a checkpoint prefix", "[gla][layer][io]") {
  const medium_case c;
  const auto file = test::checkpoint(c.gla, prefix);  // the reference weights re-saved under a prefix
  const auto a = layer::load(file, medium_config(), prefix);
  auto sa = a.make_state(2), sb = c.gla.make_state(2);
  SEQMIX_CHECK_IDENTICAL(a.forward(exec::recurrent{}, c.x, sa), c.gla.forward(exec::recurrent{}, c.x, sb));
  for (const auto& n : c.file.names())  // the same tensors as the reference's param.*
    if (n.rfind("param.", 0) == 0) CHECK(file.contains(prefix + n.substr(6)));

  REQUIRE_THROWS_MATCHES(layer::load(file, medium_config(), "model.layers.4.attn."), seqmix::error,
                         test::error_containing({"GatedLinearAttention", "model.layers.4.attn.q_proj.weight", "not found"}));
  layer::config wrong = medium_config();
  wrong.num_heads = 8;  // head_v_dim 16: g_norm_swish_gate.weight [32] no longer fits
  REQUIRE_THROWS_MATCHES(layer::load(file, wrong, prefix), seqmix::error,
                         test::error_containing({"GatedLinearAttention", "g_norm_swish_gate.weight", "[32]", "[16]"}));
}

TEST_CASE("GatedLinearAttention: init is reproducible; load(save(init)) is the same layer", "[gla][layer][io]") {
  for (const auto& cfg : {odd_config(), medium_config()}) {
    INFO("hidden_size=" << cfg.hidden_size << " num_heads=" << cfg.num_heads);
    const auto x = uniform_tensor<float, 3>({2, 23, cfg.hidden_size}, -1, 1, 3);
    CHECK(test::check_init_round_trip<layer>(cfg, 7, x, prefix).hidden_size() == cfg.hidden_size);
  }
}

TEST_CASE("GatedLinearAttention: a checkpoint without any one weight is refused naming it", "[gla][layer][io][errors]") {
  test::check_each_weight_required(layer::init(odd_config(), 5), prefix);
}

TEST_CASE("GatedLinearAttention: zero or inconsistent configs are refused naming the field", "[gla][layer][errors]") {
  const auto file = test::checkpoint(layer::init(medium_config(), 1), prefix);
  test::check_configs_rejected<layer>(medium_config(), file, prefix, {
      SEQMIX_ZEROED(hidden_size), SEQMIX_ZEROED(num_heads),
      {"key_dim", [](auto& c) { c.num_heads = 3; }},  // 64 keys
      {"value_dim", [](auto& c) { c.expand_v = 0.25; c.num_heads = 64; }},  // 64 keys fit 64 heads, 32 values do not
      SEQMIX_ZEROED(expand_k), SEQMIX_ZEROED(gate_low_rank_dim), SEQMIX_ZEROED(gate_logit_normalizer),
  });
}

TEST_CASE("GatedLinearAttention: validate_finite() names a non-finite weight", "[gla][layer][errors]") {
  test::check_finite_named(layer::init(odd_config(), 9));
}

TEST_CASE("GatedLinearAttention: bad input shapes raise seqmix::error", "[gla][layer][errors]") {
  const auto file = io::safetensors::load(medium);
  const auto gla = layer::load(file, medium_config(), "param.");
  auto s = gla.make_state(2);
  test::check_input_errors(gla, s, 64, {"GatedLinearAttention: state.h has shape [2, 4, 16, 32], expected [3, 4, 16, 32]"});
  tensor<float, 2> xt({2, 100}), yt({2, 128});
  REQUIRE_THROWS_MATCHES(gla.step(exec::recurrent{}, xt.view(), yt.view(), s), seqmix::error,
                         test::error_containing({"GatedLinearAttention: x has shape [2, 100], expected [2, 128]"}));
}
