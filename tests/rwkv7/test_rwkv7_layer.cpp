// RWKV7TimeMix layer: loading by checkpoint names (with a prefix), forward in pieces versus one
// pass, step() versus forward, policies against each other, the v_first hand-over through the
// cross-layer values, and errors.
#include <seqmix/io/safetensors.hpp>
#include <seqmix/layers/rwkv7.hpp>

#include <memory>

#include "support/compare.hpp"
#include "support/layer_checks.hpp"

using namespace seqmix;
using layer = layers::RWKV7TimeMix<float>;

namespace {

const std::string dir = SEQMIX_TEST_DATA_DIR "/refs/rwkv7/";

// The cases' LoRA ranks; hidden_size, head_size and layer_id per case.
layer::config make_config(index_t C, index_t N, index_t layer_id) {
  layer::config c;
  c.hidden_size = C, c.head_size = N, c.layer_id = layer_id;
  c.decay_lora = 16, c.aaa_lora = 16, c.mv_lora = 8, c.gate_lora = 32;
  return c;
}

// layer_medium: layer 2, C 128, 4 heads of 32, B 2, T 128, with state and v_first.
struct medium_case {
  io::safetensors file = io::safetensors::load(dir + "layer_medium.safetensors");
  layer tmix = layer::load(file, make_config(128, 32, 2), "param.att.");
  tensor<float, 3> x = file.get<float, 3>("in.x"), v_first = file.get<float, 3>("in.v_first");
  std::unique_ptr<layers::cross_layer<float>> cross = std::make_unique<layers::cross_layer<float>>();
  // layer 0's v for tokens [t0, t0 + n) of the case, as the model's cross-layer value
  void hand_over(index_t t0, index_t n) const { cross->v_first = tensor<float, 3>(v_first.view().subrange(1, t0, n)); }
  layer::State state() const {
    auto s = tmix.make_state(2, {.cross = cross.get()});
    s.shift = file.get<float, 2>("state_in.shift"), s.wkv = file.get<float, 4>("state_in.wkv");
    return s;
  }
};

}  // namespace

TEST_CASE("RWKV7TimeMix: forward in pieces equals one pass", "[rwkv7][layer]") {
  medium_case c;
  auto s_full = c.state();
  c.hand_over(0, 128);
  const auto y_full = c.tmix.forward(exec::recurrent{}, c.x, s_full);
  auto s = c.state();
  auto y = test::nan_tensor<float, 3>(y_full.extents());
  const index_t cuts[] = {0, 1, 50, 64, 127, 128};
  for (int i = 0; i + 1 < 6; ++i) {
    const index_t t0 = cuts[i], n = cuts[i + 1] - cuts[i];
    c.hand_over(t0, n);
    c.tmix.forward(exec::automatic{}, c.x.view().subrange(1, t0, n), y.view().subrange(1, t0, n), s);
  }
  SEQMIX_CHECK_CLOSE(y, y_full, 1e-5, 1e-5);
  SEQMIX_CHECK_CLOSE(s.wkv, s_full.wkv, 1e-5, 1e-5);
  SEQMIX_CHECK_CLOSE(s.shift, s_full.shift, 0.0, 0.0);
}

TEST_CASE("RWKV7TimeMix: step() equals forward token by token", "[rwkv7][layer]") {
  medium_case c;
  auto s_full = c.state();
  c.hand_over(0, 20);
  const auto y_full = c.tmix.forward(exec::parallel{}, c.x.view().subrange(1, 0, 20), s_full);
  auto s = c.state();
  auto y = test::nan_tensor<float, 3>(y_full.extents());
  for (index_t t = 0; t < 20; ++t) {
    c.hand_over(t, 1);
    c.tmix.step(exec::recurrent{}, c.x.view().slice(1, t), y.view().slice(1, t), s);
  }
  SEQMIX_CHECK_CLOSE(y, y_full, 1e-5, 1e-5);
  SEQMIX_CHECK_CLOSE(s.wkv, s_full.wkv, 1e-5, 1e-5);
}

TEST_CASE("RWKV7TimeMix: policies agree on the layer", "[rwkv7][layer]") {
  medium_case c;
  auto s_r = c.state(), s_c = c.state(), s_p = c.state();
  c.hand_over(0, 128);
  const auto y_r = c.tmix.forward(exec::recurrent{}, c.x, s_r);
  const auto y_c = c.tmix.forward(exec::chunkwise<16>{2}, c.x, s_c);
  const auto y_p = c.tmix.forward(exec::parallel{}, c.x, s_p);
  SEQMIX_CHECK_CLOSE(y_c, y_r, 1e-5, 1e-5);
  SEQMIX_CHECK_CLOSE(y_p, y_r, 1e-5, 1e-5);
  SEQMIX_CHECK_CLOSE(s_c.wkv, s_r.wkv, 1e-5, 1e-5);
  SEQMIX_CHECK_CLOSE(s_p.wkv, s_r.wkv, 1e-5, 1e-5);
}

TEST_CASE("RWKV7TimeMix: layer 0 emits v_first; later layers require it", "[rwkv7][layer]") {
  const auto file = io::safetensors::load(dir + "layer_t37.safetensors");  // layer 0, C 64, 4 heads of 16
  const auto l0 = layer::load(file, make_config(64, 16, 0), "param.att.");
  const auto x = file.get<float, 3>("in.x");
  layers::cross_layer<float> cross;
  cross.v_first = test::nan_tensor<float, 3>({1, 3, 64});  // a stale value of another shape is replaced
  auto s = l0.make_state(1, {.cross = &cross});
  const auto y = l0.forward(exec::chunkwise<16>{}, x, s);
  const auto& vf = cross.v_first;
  const auto vf_want = file.get<float, 3>("out.v_first"), y_want = file.get<float, 3>("out.y");
  SEQMIX_CHECK_CLOSE(vf, vf_want, 1e-5, 1e-5);
  SEQMIX_CHECK_CLOSE(y, y_want, 1e-4, 1e-4);
  auto s2 = l0.make_state(1);  // without cross-layer values, layer 0 gives the same y
  SEQMIX_CHECK_CLOSE(l0.forward(exec::recurrent{}, x, s2), y, 1e-5, 1e-5);

  const medium_case c;
  auto sm = c.tmix.make_state(2);
  REQUIRE_THROWS_WITH(c.tmix.forward(exec::recurrent{}, c.x, sm), Catch::Contains("RWKV7TimeMix") && Catch::Contains("v_first"));
  auto sc = c.state();
  c.hand_over(0, 5);
  REQUIRE_THROWS_WITH(c.tmix.forward(exec::recurrent{}, c.x, sc),
                      Catch::Contains("v_first has shape [2, 5, 128], expected [2, 128, 128]"));
}

TEST_CASE("RWKV7TimeMix: weights load under a checkpoint prefix", "[rwkv7][layer][io]") {
  const auto ref = io::safetensors::load(dir + "layer_medium.safetensors");
  io::safetensors_writer w;
  for (const auto& n : ref.names())
    if (n.rfind("param.att.", 0) == 0) {
      const std::string name = "blocks.2.att." + n.substr(10);
      switch (ref.info(n).shape.size()) {
        case 1: w.add<float, 1>(name, ref.get<float, 1>(n).view()); break;
        case 2: w.add<float, 2>(name, ref.get<float, 2>(n).view()); break;
        default: w.add<float, 3>(name, ref.get<float, 3>(n).view()); break;
      }
    }
  const auto file = io::safetensors::parse(w.bytes(), "ckpt");
  const auto a = layer::load(file, make_config(128, 32, 2), "blocks.2.att.");
  const auto b = layer::load(ref, make_config(128, 32, 2), "param.att.");
  auto x = ref.get<float, 3>("in.x");
  layers::cross_layer<float> cross{ref.get<float, 3>("in.v_first")};
  auto sa = a.make_state(2, {.cross = &cross}), sb = b.make_state(2, {.cross = &cross});
  SEQMIX_CHECK_CLOSE(a.forward(exec::recurrent{}, x, sa), b.forward(exec::recurrent{}, x, sb), 0.0, 0.0);

  REQUIRE_THROWS_WITH(layer::load(file, make_config(128, 32, 2), "blocks.3.att."),
                      Catch::Contains("RWKV7TimeMix") && Catch::Contains("blocks.3.att.x_r") && Catch::Contains("not found"));
  REQUIRE_THROWS_WITH(layer::load(file, make_config(128, 16, 2), "blocks.2.att."),
                      Catch::Contains("blocks.2.att.r_k") && Catch::Contains("[4, 32]") && Catch::Contains("[8, 16]"));
  layer::config wrong_rank = make_config(128, 32, 2);
  wrong_rank.decay_lora = 64;
  REQUIRE_THROWS_WITH(layer::load(file, wrong_rank, "blocks.2.att."),
                      Catch::Contains("blocks.2.att.w1") && Catch::Contains("[128, 16]") && Catch::Contains("[128, 64]"));
}

TEST_CASE("RWKV7TimeMix: bad input shapes raise seqmix::error", "[rwkv7][layer][errors]") {
  const medium_case c;
  auto s = c.state();
  c.hand_over(0, 5);
  test::check_input_errors(c.tmix, s, 64, {"RWKV7TimeMix: state.shift has shape [2, 128], expected [3, 128]"});
}
