// GatedLinearAttention layer: loading by upstream names (with a prefix), forward in pieces versus
// one pass, step() versus forward, policies against each other and error messages.
#include <seqmix/io/safetensors.hpp>
#include <seqmix/layers/gla.hpp>

#include "support/compare.hpp"

using namespace seqmix;
using layer = layers::GatedLinearAttention<float>;

namespace {

const std::string medium = SEQMIX_TEST_DATA_DIR "/refs/gla/layer_medium.safetensors";

layer::config medium_config() {
  layer::config c;
  c.hidden_size = 128, c.num_heads = 4;  // layer_medium: hidden 128, 4 heads, K 16, V 32
  return c;
}

// The layer_medium case: its file, the layer loaded from it and its input x [2, 128, 128].
struct medium_case {
  io::safetensors file = io::safetensors::load(medium);
  layer gla = layer::load(file, medium_config(), "param.");
  tensor<float, 3> x = file.get<float, 3>("in.x");
};

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
  SEQMIX_CHECK_CLOSE(y, y_full, 1e-5, 1e-5);
  SEQMIX_CHECK_CLOSE(s.h, s_full.h, 1e-5, 1e-5);
}

TEST_CASE("GatedLinearAttention: step() equals forward token by token", "[gla][layer]") {
  const medium_case c;
  const auto& [file, gla, x] = c;
  auto s_full = gla.make_state(2);
  const auto y_full = gla.forward(exec::parallel{}, x.view().subrange(1, 0, 20), s_full);
  auto s = gla.make_state(2);
  auto y = test::nan_tensor<float, 3>(y_full.extents());
  for (index_t t = 0; t < 20; ++t) gla.step(x.view().slice(1, t), y.view().slice(1, t), s);
  SEQMIX_CHECK_CLOSE(y, y_full, 1e-5, 1e-5);
  SEQMIX_CHECK_CLOSE(s.h, s_full.h, 1e-5, 1e-5);
}

TEST_CASE("GatedLinearAttention: policies agree on the layer", "[gla][layer]") {
  const medium_case c;
  const auto& [file, gla, x] = c;
  auto s_r = gla.make_state(2), s_c = gla.make_state(2), s_p = gla.make_state(2);
  const auto y_r = gla.forward(exec::recurrent{}, x, s_r);
  const auto y_c = gla.forward(exec::chunkwise<16>{2}, x, s_c);
  const auto y_p = gla.forward(exec::parallel{}, x, s_p);
  SEQMIX_CHECK_CLOSE(y_c, y_r, 1e-5, 1e-5);
  SEQMIX_CHECK_CLOSE(y_p, y_r, 1e-5, 1e-5);
  SEQMIX_CHECK_CLOSE(s_c.h, s_r.h, 1e-5, 1e-5);
}

TEST_CASE("GatedLinearAttention: weights load under a checkpoint prefix", "[gla][layer][io]") {
  const auto ref = io::safetensors::load(medium);
  io::safetensors_writer w;
  for (const auto& n : ref.names())
    if (n.rfind("param.", 0) == 0) {
      const auto& info = ref.info(n);
      if (info.shape.size() == 1) w.add<float, 1>("model.layers.3.attn." + n.substr(6), ref.get<float, 1>(n).view());
      else w.add<float, 2>("model.layers.3.attn." + n.substr(6), ref.get<float, 2>(n).view());
    }
  const auto file = io::safetensors::parse(w.bytes(), "ckpt");
  const auto a = layer::load(file, medium_config(), "model.layers.3.attn.");
  const auto b = layer::load(ref, medium_config(), "param.");
  const auto x = ref.get<float, 3>("in.x");
  auto sa = a.make_state(2), sb = b.make_state(2);
  SEQMIX_CHECK_CLOSE(a.forward(exec::recurrent{}, x, sa), b.forward(exec::recurrent{}, x, sb), 0.0, 0.0);

  REQUIRE_THROWS_WITH(layer::load(file, medium_config(), "model.layers.4.attn."),
                      Catch::Contains("GatedLinearAttention") &&
                          Catch::Contains("model.layers.4.attn.q_proj.weight") && Catch::Contains("not found"));
  layer::config wrong = medium_config();
  wrong.num_heads = 8;  // head_v_dim 16: g_norm_swish_gate.weight [32] no longer fits
  REQUIRE_THROWS_WITH(layer::load(file, wrong, "model.layers.3.attn."),
                      Catch::Contains("g_norm_swish_gate.weight") && Catch::Contains("[32]") &&
                          Catch::Contains("[16]"));
}

TEST_CASE("GatedLinearAttention: bad input shapes raise seqmix::error", "[gla][layer][errors]") {
  const auto file = io::safetensors::load(medium);
  const auto gla = layer::load(file, medium_config(), "param.");
  tensor<float, 3> x({2, 5, 64}), y({2, 5, 128});
  auto s = gla.make_state(2);
  REQUIRE_THROWS_WITH(gla.forward(exec::recurrent{}, x.view(), y.view(), s),
                      Catch::Contains("GatedLinearAttention: x has shape [2, 5, 64], expected [2, 5, 128]"));
  tensor<float, 3> x2({3, 5, 128}), y2({3, 5, 128});
  REQUIRE_THROWS_WITH(gla.forward(exec::recurrent{}, x2.view(), y2.view(), s),
                      Catch::Contains("state.h has shape [2, 4, 16, 32], expected [3, 4, 16, 32]"));
}
