// MultiheadDiffAttn layer: forward in pieces versus one pass, step() versus forward, policies
// against each other, lambda_init from the depth, and error messages.
#include <seqmix/io/safetensors.hpp>
#include <seqmix/layers/diff_attn.hpp>

#include "support/compare.hpp"

using namespace seqmix;
using layer = layers::MultiheadDiffAttn<float>;

namespace {

const std::string gqa = SEQMIX_TEST_DATA_DIR "/refs/diff_attn/layer_gqa.safetensors";

// layer_gqa: embed 128, 4 heads (d 16), 2 kv heads, depth 11.
layer::config gqa_config() {
  layer::config c;
  c.hidden_size = 128, c.num_heads = 4, c.num_kv_heads = 2, c.depth = 11;
  return c;
}

struct gqa_case {
  io::safetensors file = io::safetensors::load(gqa);
  layer attn = layer::load(file, gqa_config(), "param.");
  tensor<float, 3> x = file.get<float, 3>("in.x");
};

}  // namespace

TEST_CASE("MultiheadDiffAttn: lambda_init from the depth reproduces the reference", "[diff_attn][layer]") {
  const gqa_case c;
  auto s = c.attn.make_state(2);
  const auto want = c.file.get<float, 3>("out.o");
  SEQMIX_CHECK_CLOSE(c.attn.forward(exec::chunkwise<64>{}, c.x, s), want, 1e-5, 1e-5);
}

TEST_CASE("MultiheadDiffAttn: forward in pieces and step() equal one pass", "[diff_attn][layer]") {
  const gqa_case c;
  auto s_full = c.attn.make_state(2);
  const auto y_full = c.attn.forward(exec::parallel{}, c.x, s_full);
  auto s = c.attn.make_state(2);
  auto y = test::nan_tensor<float, 3>(y_full.extents());
  c.attn.forward(exec::chunkwise<16>{}, c.x.view().subrange(1, 0, 30), y.view().subrange(1, 0, 30), s);
  for (index_t t = 30; t < 40; ++t) c.attn.step(exec::recurrent{}, c.x.view().slice(1, t), y.view().slice(1, t), s);
  c.attn.forward(exec::recurrent{}, c.x.view().subrange(1, 40, 8), y.view().subrange(1, 40, 8), s);
  SEQMIX_CHECK_CLOSE(y, y_full, 1e-5, 1e-5);
  SEQMIX_CHECK_CLOSE(s.keys(), s_full.keys(), 1e-6, 1e-6);
  SEQMIX_CHECK_CLOSE(s.values(), s_full.values(), 1e-6, 1e-6);  // projections of other row counts round differently
}

TEST_CASE("MultiheadDiffAttn: bad shapes and missing weights raise seqmix::error", "[diff_attn][layer][errors]") {
  const gqa_case c;
  tensor<float, 3> x({2, 3, 64}), y({2, 3, 128});
  auto s = c.attn.make_state(2);
  REQUIRE_THROWS_WITH(c.attn.forward(exec::recurrent{}, x.view(), y.view(), s),
                      Catch::Contains("MultiheadDiffAttn: x has shape [2, 3, 64], expected [2, 3, 128]"));
  REQUIRE_THROWS_WITH(layer::load(c.file, gqa_config(), "model."),
                      Catch::Contains("MultiheadDiffAttn: weight 'model.q_proj.weight' not found"));
  layer::config wrong = gqa_config();
  wrong.num_kv_heads = 4;
  REQUIRE_THROWS_WITH(layer::load(c.file, wrong, "param."), Catch::Contains("k_proj.weight") && Catch::Contains("[64, 128]"));
}
