// Attention layer: forward in pieces versus one pass (also with a window, where the cache is a
// ring), step() versus forward, policies against each other, loading under a checkpoint prefix
// and error messages.
#include <seqmix/io/safetensors.hpp>
#include <seqmix/tensor/bf16.hpp>
#include <seqmix/layers/attention.hpp>

#include <cmath>
#include <utility>

#include "support/compare.hpp"
#include "support/layer_checks.hpp"

using namespace seqmix;
using layer = layers::Attention<float>;

namespace {

const std::string dir = SEQMIX_TEST_DATA_DIR "/refs/attention/";

// layer_medium: hidden 128, 4 heads of 32, MHA; layer_gqa_window: 4 query / 2 kv heads, window 16, theta 5e5.
template <class L = layer>
typename L::config config_of(const std::string& file) {
  typename L::config c;
  c.hidden_size = 128, c.num_heads = 4, c.head_dim = 32;
  if (file == "layer_gqa_window") c.num_kv_heads = 2, c.window = 16, c.rope_theta = 500000;
  return c;
}

struct ref_layer {
  io::safetensors file;
  layer attn;
  tensor<float, 3> x;
  explicit ref_layer(const std::string& name)
      : file(io::safetensors::load(dir + name + ".safetensors")), attn(layer::load(file, config_of(name), "param.")),
        x(file.get<float, 3>("in.x")) {}
};

}  // namespace

TEST_CASE("Attention: forward in pieces equals one pass", "[attention][layer]") {
  for (const std::string name : {"layer_medium", "layer_gqa_window"}) {
    INFO(name);
    const ref_layer c(name);
    const index_t B = c.x.extent(0), L = c.x.extent(1);
    auto s_full = c.attn.make_state(B);
    const auto y_full = c.attn.forward(exec::chunkwise<64>{}, c.x, s_full);
    const auto want = c.file.get<float, 3>("out.o");
    SEQMIX_CHECK_CLOSE(y_full, want, 1e-5, 1e-5);

    auto s = c.attn.make_state(B);
    auto y = test::nan_tensor<float, 3>(y_full.extents());
    const index_t cuts[] = {0, 1, 17, 40, L - 1, L};
    for (int i = 0; i + 1 < 6; ++i) {
      const index_t t0 = cuts[i], n = cuts[i + 1] - cuts[i];
      c.attn.forward(exec::automatic{}, c.x.view().subrange(1, t0, n), y.view().subrange(1, t0, n), s);
    }
    SEQMIX_CHECK_CLOSE(y, y_full, 1e-5, 1e-5);
    CHECK(s.length() == L);
  }
}

TEST_CASE("Attention: step() equals forward token by token", "[attention][layer]") {
  const ref_layer c("layer_gqa_window");
  auto s_full = c.attn.make_state(2);
  const auto y_full = c.attn.forward(exec::parallel{}, c.x.view().subrange(1, 0, 40), s_full);
  auto s = c.attn.make_state(2);
  auto y = test::nan_tensor<float, 3>(y_full.extents());
  for (index_t t = 0; t < 40; ++t) c.attn.step(exec::recurrent{}, c.x.view().slice(1, t), y.view().slice(1, t), s);
  SEQMIX_CHECK_CLOSE(y, y_full, 1e-5, 1e-5);
}

TEST_CASE("Attention: policies agree on the layer", "[attention][layer]") {
  const ref_layer c("layer_medium");
  auto s_r = c.attn.make_state(2), s_c = c.attn.make_state(2), s_p = c.attn.make_state(2);
  const auto y_r = c.attn.forward(exec::recurrent{}, c.x, s_r);
  const auto y_c = c.attn.forward(exec::chunkwise<16>{2}, c.x, s_c);
  const auto y_p = c.attn.forward(exec::parallel{2}, c.x, s_p);
  SEQMIX_CHECK_CLOSE(y_c, y_r, 1e-5, 1e-5);
  SEQMIX_CHECK_CLOSE(y_p, y_r, 1e-5, 1e-5);
  SEQMIX_CHECK_CLOSE(s_c.keys(), s_r.keys(), 0.0, 0.0);
}

TEST_CASE("Attention: a windowed layer's cache stays O(window)", "[attention][layer][cache]") {
  const ref_layer c("layer_gqa_window");
  auto s = c.attn.make_state(2, {.capacity = 1 << 20});
  CHECK(s.is_ring());
  CHECK(s.slots() <= 128);  // window 16 + a 64-token step, in 64-slot blocks
  for (int rep = 0; rep < 20; ++rep) c.attn.forward(exec::chunkwise<64>{}, c.x, s);
  CHECK(s.length() == 20 * 64);
}

TEST_CASE("Attention with a bf16 KV cache runs as the float-cache layer within bf16 rounding", "[attention][layer][bf16]") {
  // The same weights (the reference files'), a prefill of the case's tokens in two pieces and
  // five decode steps. Keys and values are rounded to bf16 (2^-8 relative) as they are cached:
  // a value's rounding moves o by at most 2^-8 of max|v|, a key's moves every score by at most
  // 2^-8 of Σ|q·k| and the softmax weights by e^(2Δ) - 1; o_proj passes the relative error on.
  // Bound: 8 · 2^-8 of max|y| (measured: 0.41 and 0.37 · 2^-8).
  using bf16_cache = layers::Attention<float, float, bf16>;
  for (const std::string name : {"layer_medium", "layer_gqa_window"}) {
    INFO(name);
    const ref_layer c(name);
    const bf16_cache attn_b = bf16_cache::load(c.file, config_of<bf16_cache>(name), "param.");
    const index_t B = c.x.extent(0), L = c.x.extent(1), C = c.x.extent(2), half = L / 2;
    auto sf = c.attn.make_state(B);
    auto sb = attn_b.make_state(B);
    tensor<float, 3> yf({B, L, C}), yb({B, L, C});
    for (const auto& [t0, n] : {std::pair{index_t(0), half}, std::pair{half, L - half - 5}}) {
      const auto xs = c.x.view().subrange(1, t0, n);
      c.attn.forward(exec::chunkwise<16>{}, xs, yf.view().subrange(1, t0, n), sf);
      attn_b.forward(exec::chunkwise<16>{}, xs, yb.view().subrange(1, t0, n), sb);
    }
    for (index_t t = L - 5; t < L; ++t) {
      c.attn.step(exec::recurrent{}, c.x.view().slice(1, t), yf.view().slice(1, t), sf);
      attn_b.step(exec::recurrent{}, c.x.view().slice(1, t), yb.view().slice(1, t), sb);
    }
    double scale = 0, err = 0;
    for (index_t i = 0; i < yf.size(); ++i) {
      REQUIRE(std::isfinite(yb.data()[i]));
      scale = std::max(scale, std::abs(double(yf.data()[i])));
      err = std::max(err, std::abs(double(yb.data()[i]) - double(yf.data()[i])));
    }
    INFO("max error " << err << " = " << err / scale << " of max |y|");
    CHECK(err <= 8 * 0x1p-8 * scale);
    CHECK(err > 0);  // the cache did round
    CHECK(sb.slots() == sf.slots());
  }
}

TEST_CASE("Attention: weights load under a checkpoint prefix", "[attention][layer][io]") {
  const auto ref = io::safetensors::load(dir + "layer_medium.safetensors");
  io::safetensors_writer w;
  for (const auto& n : ref.names())
    if (n.rfind("param.", 0) == 0) w.add<float, 2>("model.layers.3.attn." + n.substr(6), ref.get<float, 2>(n).view());
  const auto file = io::safetensors::parse(w.bytes(), "ckpt");
  const auto a = layer::load(file, config_of("layer_medium"), "model.layers.3.attn.");
  const auto x = ref.get<float, 3>("in.x");
  auto s = a.make_state(2);
  const auto want = ref.get<float, 3>("out.o");
  SEQMIX_CHECK_CLOSE(a.forward(exec::chunkwise<64>{}, x, s), want, 1e-5, 1e-5);

  REQUIRE_THROWS_WITH(layer::load(file, config_of("layer_medium"), "model.layers.4.attn."),
                      Catch::Contains("Attention") && Catch::Contains("model.layers.4.attn.q_proj.weight") &&
                          Catch::Contains("not found"));
  layer::config wrong = config_of("layer_medium");
  wrong.num_kv_heads = 2;  // k_proj would be [64, 128]
  REQUIRE_THROWS_WITH(layer::load(file, wrong, "model.layers.3.attn."),
                      Catch::Contains("k_proj.weight") && Catch::Contains("[128, 128]") && Catch::Contains("[64, 128]"));
}

TEST_CASE("Attention: bad inputs, a mismatched state and a full cache raise seqmix::error", "[attention][layer][errors]") {
  const ref_layer c("layer_medium");
  auto s = c.attn.make_state(2, {.capacity = 8});
  test::check_input_errors(c.attn, s, 64, {"Attention: state", "[2, 4, 32, 4, 32], expected [3, 4, 32, 4, 32]"});
  tensor<float, 3> x2({2, 5, 128}), y({2, 5, 128});
  c.attn.forward(exec::recurrent{}, x2.view(), y.view(), s);
  REQUIRE_THROWS_WITH(c.attn.forward(exec::recurrent{}, x2.view(), y.view(), s),
                      Catch::Contains("Attention: KV cache capacity 8 exceeded (holds 5 tokens, appending 5)"));
}
