// DeltaNet and GatedDeltaNet layers: loading by upstream names (with a prefix), forward in pieces
// versus one pass (recurrent and conv state carried), step() versus forward, policies against each
// other, shapes of the held-out kind (grouped value heads, expand_v 1.5, head dims 24 and 48),
// float versus double, and error messages.
#include <seqmix/io/safetensors.hpp>
#include <seqmix/layers/delta_net.hpp>
#include <seqmix/layers/gated_delta_net.hpp>

#include "support/compare.hpp"

using namespace seqmix;
using delta_net = layers::DeltaNet<float>;
using gated_delta_net = layers::GatedDeltaNet<float>;

namespace {

const std::string dn_medium = SEQMIX_TEST_DATA_DIR "/refs/delta_net/layer_medium.safetensors";
const std::string gdn_medium = SEQMIX_TEST_DATA_DIR "/refs/gated_delta_net/layer_medium.safetensors";
const std::string gdn_gva = SEQMIX_TEST_DATA_DIR "/refs/gated_delta_net/layer_gva.safetensors";

delta_net::config dn_config() {
  delta_net::config c;
  c.hidden_size = 128, c.num_heads = 4;  // layer_medium: hidden 128, 4 heads, K = V = 32
  return c;
}

gated_delta_net::config gdn_config(index_t num_heads = 4) {
  gated_delta_net::config c;
  c.hidden_size = 64, c.head_dim = 16, c.num_heads = num_heads, c.num_v_heads = 4, c.expand_v = 2;
  return c;
}

// A layer_medium case: its file, the layer loaded from it and its input x [2, 128, hidden].
template <class Layer>
struct medium_case {
  io::safetensors file;
  Layer net;
  tensor<float, 3> x;
  medium_case(const std::string& path, const typename Layer::config& cfg)
      : file(io::safetensors::load(path)), net(Layer::load(file, cfg, "param.")), x(file.get<float, 3>("in.x")) {}
};

template <class State>
void check_states(const State& a, const State& b, double tol) {
  SEQMIX_CHECK_CLOSE(a.h, b.h, tol, tol);
  SEQMIX_CHECK_CLOSE(a.conv_q, b.conv_q, tol, tol);
  SEQMIX_CHECK_CLOSE(a.conv_k, b.conv_k, tol, tol);
  SEQMIX_CHECK_CLOSE(a.conv_v, b.conv_v, tol, tol);
}

template <class Layer>
void pieces_equal_one_pass(const Layer& net, const tensor<float, 3>& x) {
  const index_t B = x.extent(0), T = x.extent(1);
  auto s_full = net.make_state(B);
  const auto y_full = net.forward(exec::chunkwise<64>{}, x, s_full);
  auto s = net.make_state(B);
  auto y = test::nan_tensor<float, 3>(y_full.extents());
  // Cuts inside the conv window (1, 2), at and off a chunk boundary (64) and before the last token.
  std::vector<index_t> cuts{0, 1, 2};
  for (const index_t c : {T / 3, index_t(64), T - 1, T})
    if (c > cuts.back() && c <= T) cuts.push_back(c);
  for (std::size_t i = 0; i + 1 < cuts.size(); ++i) {
    const index_t t0 = cuts[i], n = cuts[i + 1] - cuts[i];
    net.forward(exec::automatic{}, x.view().subrange(1, t0, n), y.view().subrange(1, t0, n), s);
  }
  SEQMIX_CHECK_CLOSE(y, y_full, 1e-5, 1e-5);
  check_states(s, s_full, 1e-5);
}

template <class Layer>
void step_equals_forward(const Layer& net, const tensor<float, 3>& x) {
  const index_t B = x.extent(0);
  auto s_full = net.make_state(B);
  const auto y_full = net.forward(exec::parallel{}, x.view().subrange(1, 0, 20), s_full);
  auto s = net.make_state(B);
  auto y = test::nan_tensor<float, 3>(y_full.extents());
  for (index_t t = 0; t < 20; ++t) net.step(x.view().slice(1, t), y.view().slice(1, t), s);
  SEQMIX_CHECK_CLOSE(y, y_full, 1e-5, 1e-5);
  check_states(s, s_full, 1e-5);
}

template <class Layer>
void policies_agree(const Layer& net, const tensor<float, 3>& x) {
  const index_t B = x.extent(0);
  auto s_r = net.make_state(B), s_c = net.make_state(B), s_p = net.make_state(B);
  const auto y_r = net.forward(exec::recurrent{}, x, s_r);
  const auto y_c = net.forward(exec::chunkwise<16>{2}, x, s_c);
  const auto y_p = net.forward(exec::parallel{}, x, s_p);
  SEQMIX_CHECK_CLOSE(y_c, y_r, 1e-5, 1e-5);
  SEQMIX_CHECK_CLOSE(y_p, y_r, 1e-5, 1e-5);
  check_states(s_c, s_r, 1e-5);
  check_states(s_p, s_r, 1e-5);
}

// The layer's parameters re-saved under `prefix` (as a checkpoint names them).
io::safetensors resave(const io::safetensors& ref, const std::string& prefix) {
  io::safetensors_writer w;
  for (const auto& n : ref.names())
    if (n.rfind("param.", 0) == 0) {
      const auto& info = ref.info(n);
      if (info.shape.size() == 1) w.add<float, 1>(prefix + n.substr(6), ref.get<float, 1>(n).view());
      else if (info.shape.size() == 2) w.add<float, 2>(prefix + n.substr(6), ref.get<float, 2>(n).view());
      else w.add<float, 3>(prefix + n.substr(6), ref.get<float, 3>(n).view());
    }
  return io::safetensors::parse(w.bytes(), "ckpt");
}

// A GatedDeltaNet with random weights of the given shape (weights scaled like a trained layer's).
template <class T>
layers::GatedDeltaNet<T> random_gdn(const typename layers::GatedDeltaNet<T>::config& c, unsigned seed) {
  using L = layers::GatedDeltaNet<T>;
  const index_t D = c.hidden_size, kd = c.key_dim(), vd = c.value_dim(), HV = c.v_heads(), W = c.conv_size;
  const double w = 1.0 / std::sqrt(double(D));
  auto lin = [&](index_t out, index_t in, unsigned s) { return nn::linear<T>{uniform_tensor<T, 2>({out, in}, -w, w, s), {}}; };
  auto conv = [&](index_t C, unsigned s) { return nn::causal_conv1d<T>{uniform_tensor<T, 2>({C, W}, -0.5, 0.5, s), {}, true}; };
  typename L::weights wt{lin(kd, D, seed),
                         lin(kd, D, seed + 1),
                         lin(vd, D, seed + 2),
                         lin(HV, D, seed + 3),
                         lin(HV, D, seed + 4),
                         uniform_tensor<T, 1>({HV}, -1, 1.5, seed + 5),
                         uniform_tensor<T, 1>({HV}, -2, 1, seed + 6),
                         conv(kd, seed + 7),
                         conv(kd, seed + 8),
                         conv(vd, seed + 9),
                         lin(vd, D, seed + 10),
                         uniform_tensor<T, 1>({c.head_v_dim()}, 0.5, 1.5, seed + 11),
                         lin(D, vd, seed + 12)};
  return L(c, std::move(wt));
}

}  // namespace

TEST_CASE("DeltaNet: forward in pieces equals one pass", "[delta_rule][layer]") {
  const medium_case<delta_net> c(dn_medium, dn_config());
  pieces_equal_one_pass(c.net, c.x);
}

TEST_CASE("GatedDeltaNet: forward in pieces equals one pass", "[delta_rule][layer]") {
  const medium_case<gated_delta_net> c(gdn_medium, gdn_config());
  pieces_equal_one_pass(c.net, c.x);
}

TEST_CASE("DeltaNet: step() equals forward token by token", "[delta_rule][layer]") {
  const medium_case<delta_net> c(dn_medium, dn_config());
  step_equals_forward(c.net, c.x);
}

TEST_CASE("GatedDeltaNet: step() equals forward token by token", "[delta_rule][layer]") {
  const medium_case<gated_delta_net> c(gdn_gva, gdn_config(2));
  step_equals_forward(c.net, c.x);
}

TEST_CASE("DeltaNet: policies agree on the layer", "[delta_rule][layer]") {
  const medium_case<delta_net> c(dn_medium, dn_config());
  policies_agree(c.net, c.x);
}

TEST_CASE("GatedDeltaNet: policies agree on the layer", "[delta_rule][layer]") {
  const medium_case<gated_delta_net> c(gdn_medium, gdn_config());
  policies_agree(c.net, c.x);
}

TEST_CASE("GatedDeltaNet: held-out shapes run with every policy, in float and double", "[delta_rule][layer]") {
  // head_dim 24 with expand_v 1, 1.5, 2 (head_v_dim 24, 36, 48) and HV = 2H, 3H.
  struct shape {
    index_t hidden, head_dim, H, HV;
    double expand_v;
  };
  for (const shape s : {shape{48, 24, 2, 4, 1.0}, shape{72, 24, 2, 6, 1.5}, shape{40, 24, 1, 3, 2.0}}) {
    INFO("hidden=" << s.hidden << " head_dim=" << s.head_dim << " H=" << s.H << " HV=" << s.HV << " expand_v=" << s.expand_v);
    layers::GatedDeltaNet<double>::config cd;
    cd.hidden_size = s.hidden, cd.head_dim = s.head_dim, cd.num_heads = s.H, cd.num_v_heads = s.HV, cd.expand_v = s.expand_v;
    gated_delta_net::config cf;
    cf.hidden_size = s.hidden, cf.head_dim = s.head_dim, cf.num_heads = s.H, cf.num_v_heads = s.HV, cf.expand_v = s.expand_v;
    const auto net_d = random_gdn<double>(cd, 3);
    const auto net_f = random_gdn<float>(cf, 3);
    const auto xd = uniform_tensor<double, 3>({2, 41, s.hidden}, -1, 1, 9);
    const auto xf = uniform_tensor<float, 3>({2, 41, s.hidden}, -1, 1, 9);
    auto sd = net_d.make_state(2);
    const auto yd = net_d.forward(exec::recurrent{}, xd, sd);
    policies_agree(net_f, xf);
    pieces_equal_one_pass(net_f, xf);
    auto sf = net_f.make_state(2);
    const auto yf = net_f.forward(exec::chunkwise<16>{}, xf, sf);
    SEQMIX_CHECK_CLOSE(yf, yd, 1e-5, 1e-5);  // float rounding only
    SEQMIX_CHECK_CLOSE(sf.h, sd.h, 1e-5, 1e-5);
  }
}

// A DeltaNet with random weights (conv biases and the output gate on, to cover those paths).
template <class T>
layers::DeltaNet<T> random_dn(const typename layers::DeltaNet<T>::config& c, unsigned seed) {
  using L = layers::DeltaNet<T>;
  const index_t D = c.hidden_size, kd = c.key_dim(), vd = c.value_dim(), W = c.conv_size;
  const double w = 1.0 / std::sqrt(double(D));
  auto lin = [&](index_t out, index_t in, unsigned s) { return nn::linear<T>{uniform_tensor<T, 2>({out, in}, -w, w, s), {}}; };
  auto conv = [&](index_t C, unsigned s) {
    return nn::causal_conv1d<T>{uniform_tensor<T, 2>({C, W}, -0.5, 0.5, s), uniform_tensor<T, 1>({C}, -0.2, 0.2, s + 50), true};
  };
  typename L::weights wt{lin(kd, D, seed),      lin(kd, D, seed + 1), lin(vd, D, seed + 2), lin(c.num_heads, D, seed + 3),
                         conv(kd, seed + 4),    conv(kd, seed + 5),   conv(vd, seed + 6),   lin(vd, D, seed + 7),
                         uniform_tensor<T, 1>({c.head_v_dim()}, 0.5, 1.5, seed + 8), lin(D, vd, seed + 9)};
  return L(c, std::move(wt));
}

TEST_CASE("DeltaNet: held-out shapes run with every policy, in float and double", "[delta_rule][layer]") {
  // Head dims 48 and 24 (hidden 96 / 2 heads, 120 / 5 heads), with conv biases and the output gate.
  for (const auto& [hidden, heads] : {std::pair<index_t, index_t>{96, 2}, {120, 5}}) {
    INFO("hidden=" << hidden << " heads=" << heads);
    layers::DeltaNet<double>::config cd;
    cd.hidden_size = hidden, cd.num_heads = heads, cd.conv_bias = true, cd.use_gate = true;
    delta_net::config cf;
    cf.hidden_size = hidden, cf.num_heads = heads, cf.conv_bias = true, cf.use_gate = true;
    const auto net_d = random_dn<double>(cd, 5);
    const auto net_f = random_dn<float>(cf, 5);
    const auto xd = uniform_tensor<double, 3>({2, 37, hidden}, -1, 1, 8);
    const auto xf = uniform_tensor<float, 3>({2, 37, hidden}, -1, 1, 8);
    auto sd = net_d.make_state(2);
    const auto yd = net_d.forward(exec::parallel{}, xd, sd);
    policies_agree(net_f, xf);
    pieces_equal_one_pass(net_f, xf);
    auto sf = net_f.make_state(2);
    const auto yf = net_f.forward(exec::recurrent{}, xf, sf);
    SEQMIX_CHECK_CLOSE(yf, yd, 1e-5, 1e-5);
    SEQMIX_CHECK_CLOSE(sf.h, sd.h, 1e-5, 1e-5);
  }
}

TEST_CASE("Delta-rule layers: weights load under a checkpoint prefix", "[delta_rule][layer][io]") {
  {
    const auto ref = io::safetensors::load(dn_medium);
    const auto file = resave(ref, "model.layers.3.attn.");
    const auto a = delta_net::load(file, dn_config(), "model.layers.3.attn.");
    const auto b = delta_net::load(ref, dn_config(), "param.");
    const auto x = ref.get<float, 3>("in.x");
    auto sa = a.make_state(2), sb = b.make_state(2);
    SEQMIX_CHECK_CLOSE(a.forward(exec::recurrent{}, x, sa), b.forward(exec::recurrent{}, x, sb), 0.0, 0.0);
    REQUIRE_THROWS_WITH(delta_net::load(file, dn_config(), "model.layers.4.attn."),
                        Catch::Contains("DeltaNet") && Catch::Contains("model.layers.4.attn.q_proj.weight") &&
                            Catch::Contains("not found"));
    delta_net::config wrong = dn_config();
    wrong.num_heads = 8;  // b_proj.weight [4, 128] no longer fits
    REQUIRE_THROWS_WITH(delta_net::load(file, wrong, "model.layers.3.attn."),
                        Catch::Contains("b_proj.weight") && Catch::Contains("has shape [4, 128], expected [8, 128]"));
    delta_net::config gate = dn_config();
    gate.use_gate = true;
    REQUIRE_THROWS_WITH(delta_net::load(file, gate, "model.layers.3.attn."), Catch::Contains("g_proj.weight"));
  }
  {
    const auto ref = io::safetensors::load(gdn_gva);
    const auto file = resave(ref, "blocks.0.mixer.");
    const auto a = gated_delta_net::load(file, gdn_config(2), "blocks.0.mixer.");
    const auto x = ref.get<float, 3>("in.x");
    auto sa = a.make_state(2);
    CHECK(sa.h.extents() == std::array<index_t, 4>{2, 4, 16, 32});
    CHECK(sa.conv_q.extents() == std::array<index_t, 3>{2, 32, 3});
    CHECK(sa.conv_v.extents() == std::array<index_t, 3>{2, 128, 3});
    a.forward(exec::recurrent{}, x, sa);
    REQUIRE_THROWS_WITH(gated_delta_net::load(file, gdn_config(4), "blocks.0.mixer."),
                        Catch::Contains("GatedDeltaNet") && Catch::Contains("q_proj.weight") &&
                            Catch::Contains("[32, 64]") && Catch::Contains("[64, 64]"));
  }
}

TEST_CASE("Delta-rule layers: bad input shapes raise seqmix::error", "[delta_rule][layer][errors]") {
  const medium_case<gated_delta_net> c(gdn_medium, gdn_config());
  tensor<float, 3> x({2, 5, 32}), y({2, 5, 64});
  auto s = c.net.make_state(2);
  REQUIRE_THROWS_WITH(c.net.forward(exec::recurrent{}, x.view(), y.view(), s),
                      Catch::Contains("GatedDeltaNet: x has shape [2, 5, 32], expected [2, 5, 64]"));
  tensor<float, 3> x3({3, 5, 64}), y3({3, 5, 64});
  REQUIRE_THROWS_WITH(c.net.forward(exec::recurrent{}, x3.view(), y3.view(), s),
                      Catch::Contains("state.h has shape [2, 4, 16, 32], expected [3, 4, 16, 32]"));
  s.conv_v = tensor<float, 3>({2, 128, 2});
  REQUIRE_THROWS_WITH(c.net.forward(exec::recurrent{}, x3.view().subrange(0, 0, 2), y3.view().subrange(0, 0, 2), s),
                      Catch::Contains("state.conv_v has shape [2, 128, 2], expected [2, 128, 3]"));
  const medium_case<delta_net> d(dn_medium, dn_config());
  tensor<float, 2> xt({2, 100}), yt({2, 128});
  auto sd = d.net.make_state(2);
  REQUIRE_THROWS_WITH(d.net.step(xt.view(), yt.view(), sd), Catch::Contains("DeltaNet: x has shape [2, 100], expected [2, 128]"));
}

TEST_CASE("Delta-rule layers: an empty input leaves the state unchanged", "[delta_rule][layer]") {
  const medium_case<gated_delta_net> c(gdn_medium, gdn_config());
  auto s = c.net.make_state(2);
  c.net.forward(exec::recurrent{}, c.x.view().subrange(1, 0, 5), s);
  const auto before = s;
  tensor<float, 3> x({2, 0, 64}), y({2, 0, 64});
  c.net.forward(exec::chunkwise<64>{}, x.view(), y.view(), s);
  c.net.forward(exec::recurrent{}, x.view(), y.view(), s);
  check_states(s, before, 0.0);
}
