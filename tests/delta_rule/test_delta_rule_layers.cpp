// DeltaNet and GatedDeltaNet layers: loading by upstream names (with a prefix), forward in pieces
// versus one pass (recurrent and conv state carried), step() versus forward, policies against each
// other, shapes of the held-out kind (grouped value heads, expand_v 1.5, head dims 24 and 48),
// float versus double, save / load round trip, every weight required, bad configs and non-finite
// weights named, and error messages.
#include <seqmix/io/safetensors.hpp>
#include <seqmix/layers/delta_net.hpp>
#include <seqmix/layers/gated_delta_net.hpp>

#include <type_traits>

#include "support/compare.hpp"
#include "support/layer_checks.hpp"

using namespace seqmix;
using delta_net = layers::DeltaNet<float>;
using gated_delta_net = layers::GatedDeltaNet<float>;

namespace {

const std::string dn_medium = SEQMIX_TEST_DATA_DIR "/refs/delta_net/layer_medium.safetensors";
const std::string gdn_medium = SEQMIX_TEST_DATA_DIR "/refs/gated_delta_net/layer_medium.safetensors";
const std::string gdn_gva = SEQMIX_TEST_DATA_DIR "/refs/gated_delta_net/layer_gva.safetensors";
const std::string prefix = "model.layers.3.attn.";

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

// Bound of an output or the recurrent state: the projections (hidden, value_dim), the key dot
// products (head_k_dim) and the recurrence over the tokens (T).
template <class Layer>
double tol(const Layer& net, index_t T) {
  const auto& c = net.cfg();
  return test::tolerance<float>(double(c.hidden_size + c.value_dim() + c.head_k_dim() + T));
}

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
  SEQMIX_CHECK_WITHIN(y, y_full, tol(net, T));
  check_states(s, s_full, tol(net, T));
}

template <class Layer>
void step_equals_forward(const Layer& net, const tensor<float, 3>& x) {
  const index_t B = x.extent(0);
  auto s_full = net.make_state(B);
  const auto y_full = net.forward(exec::parallel{}, x.view().subrange(1, 0, 20), s_full);
  auto s = net.make_state(B);
  auto y = test::nan_tensor<float, 3>(y_full.extents());
  for (index_t t = 0; t < 20; ++t)  // the step's policy only gives the threads
    if (t % 2) net.step(exec::recurrent{}, x.view().slice(1, t), y.view().slice(1, t), s);
    else net.step(exec::automatic{2}, x.view().slice(1, t), y.view().slice(1, t), s);
  SEQMIX_CHECK_WITHIN(y, y_full, tol(net, 20));
  check_states(s, s_full, tol(net, 20));
}

template <class Layer>
void policies_agree(const Layer& net, const tensor<float, 3>& x) {
  const index_t B = x.extent(0);
  const double t = tol(net, x.extent(1));
  auto s_r = net.make_state(B), s_c = net.make_state(B), s_p = net.make_state(B), s_a = net.make_state(B);
  const auto y_r = net.forward(exec::recurrent{}, x, s_r);
  const auto y_c = net.forward(exec::chunkwise<16>{2}, x, s_c);
  const auto y_p = net.forward(exec::parallel{}, x, s_p);
  const auto y_a = net.forward(exec::automatic{2}, x, s_a);
  SEQMIX_CHECK_WITHIN(y_c, y_r, t);
  SEQMIX_CHECK_WITHIN(y_p, y_r, t);
  SEQMIX_CHECK_WITHIN(y_a, y_r, t);
  check_states(s_c, s_r, t);
  check_states(s_p, s_r, t);
  check_states(s_a, s_r, t);
}

}  // namespace

TEST_CASE("Delta-rule layers: pieces, steps and policies agree with one pass", "[delta_rule][layer]") {
  const medium_case<delta_net> dn(dn_medium, dn_config());
  const medium_case<gated_delta_net> gdn(gdn_medium, gdn_config()), gva(gdn_gva, gdn_config(2));
  SECTION("forward in pieces equals one pass") {
    pieces_equal_one_pass(dn.net, dn.x);
    pieces_equal_one_pass(gdn.net, gdn.x);
  }
  SECTION("step() equals forward token by token") {
    step_equals_forward(dn.net, dn.x);
    step_equals_forward(gva.net, gva.x);
  }
  SECTION("policies agree on the layer") {
    policies_agree(dn.net, dn.x);
    policies_agree(gdn.net, gdn.x);
  }
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
    const auto net_d = layers::GatedDeltaNet<double>::init(cd, 3);
    const auto net_f = gated_delta_net::init(cf, 3);  // the same values, rounded to float
    const auto xd = uniform_tensor<double, 3>({2, 41, s.hidden}, -1, 1, 9);
    const auto xf = uniform_tensor<float, 3>({2, 41, s.hidden}, -1, 1, 9);
    auto sd = net_d.make_state(2);
    const auto yd = net_d.forward(exec::recurrent{}, xd, sd);
    policies_agree(net_f, xf);
    pieces_equal_one_pass(net_f, xf);
    auto sf = net_f.make_state(2);
    const auto yf = net_f.forward(exec::chunkwise<16>{}, xf, sf);
    SEQMIX_CHECK_WITHIN(yf, yd, tol(net_f, 41));  // float rounding only
    SEQMIX_CHECK_WITHIN(sf.h, sd.h, tol(net_f, 41));
  }
}

TEST_CASE("DeltaNet: held-out shapes run with every policy, in float and double", "[delta_rule][layer]") {
  // Head dims 48 and 24 (hidden 96 / 2 heads, 120 / 5 heads), with conv biases and the output gate.
  for (const auto& [hidden, heads] : {std::pair<index_t, index_t>{96, 2}, {120, 5}}) {
    INFO("hidden=" << hidden << " heads=" << heads);
    layers::DeltaNet<double>::config cd;
    cd.hidden_size = hidden, cd.num_heads = heads, cd.conv_bias = true, cd.use_gate = true;
    delta_net::config cf;
    cf.hidden_size = hidden, cf.num_heads = heads, cf.conv_bias = true, cf.use_gate = true;
    const auto net_d = layers::DeltaNet<double>::init(cd, 5);
    const auto net_f = delta_net::init(cf, 5);  // the same values, rounded to float
    const auto xd = uniform_tensor<double, 3>({2, 37, hidden}, -1, 1, 8);
    const auto xf = uniform_tensor<float, 3>({2, 37, hidden}, -1, 1, 8);
    auto sd = net_d.make_state(2);
    const auto yd = net_d.forward(exec::parallel{}, xd, sd);
    policies_agree(net_f, xf);
    pieces_equal_one_pass(net_f, xf);
    auto sf = net_f.make_state(2);
    const auto yf = net_f.forward(exec::recurrent{}, xf, sf);
    SEQMIX_CHECK_WITHIN(yf, yd, tol(net_f, 37));
    SEQMIX_CHECK_WITHIN(sf.h, sd.h, tol(net_f, 37));
  }
}

TEST_CASE("Delta-rule layers: weights load under a checkpoint prefix", "[delta_rule][layer][io]") {
  {
    const medium_case<delta_net> c(dn_medium, dn_config());
    const auto file = test::checkpoint(c.net, prefix);  // the reference weights re-saved under a prefix
    for (const auto& n : c.file.names())                 // the same tensors as the reference's param.*
      if (n.rfind("param.", 0) == 0) CHECK(file.contains(prefix + n.substr(6)));
    const auto a = delta_net::load(file, dn_config(), prefix);
    auto sa = a.make_state(2), sb = c.net.make_state(2);
    SEQMIX_CHECK_IDENTICAL(a.forward(exec::recurrent{}, c.x, sa), c.net.forward(exec::recurrent{}, c.x, sb));
    REQUIRE_THROWS_MATCHES(delta_net::load(file, dn_config(), "model.layers.4.attn."), seqmix::error,
                           test::error_containing({"DeltaNet", "model.layers.4.attn.q_proj.weight", "not found"}));
    delta_net::config wrong = dn_config();
    wrong.num_heads = 8;  // b_proj.weight [4, 128] no longer fits
    REQUIRE_THROWS_MATCHES(delta_net::load(file, wrong, prefix), seqmix::error,
                           test::error_containing({"DeltaNet", "b_proj.weight", "has shape [4, 128], expected [8, 128]"}));
    delta_net::config gate = dn_config();
    gate.use_gate = true;
    REQUIRE_THROWS_MATCHES(delta_net::load(file, gate, prefix), seqmix::error,
                           test::error_containing({"DeltaNet", prefix + "g_proj.weight", "not found"}));
  }
  {
    const medium_case<gated_delta_net> c(gdn_gva, gdn_config(2));
    const auto file = test::checkpoint(c.net, "blocks.0.mixer.");
    const auto a = gated_delta_net::load(file, gdn_config(2), "blocks.0.mixer.");
    auto sa = a.make_state(2), sb = c.net.make_state(2);
    CHECK(sa.h.extents() == std::array<index_t, 4>{2, 4, 16, 32});
    CHECK(sa.conv_q.extents() == std::array<index_t, 3>{2, 32, 3});
    CHECK(sa.conv_v.extents() == std::array<index_t, 3>{2, 128, 3});
    SEQMIX_CHECK_IDENTICAL(a.forward(exec::recurrent{}, c.x, sa), c.net.forward(exec::recurrent{}, c.x, sb));
    REQUIRE_THROWS_MATCHES(gated_delta_net::load(file, gdn_config(4), "blocks.0.mixer."), seqmix::error,
                           test::error_containing({"GatedDeltaNet", "q_proj.weight", "[32, 64]", "[64, 64]"}));
  }
}

// Configs covering every optional entry: conv biases and the output gate on (DeltaNet), and off
// (GatedDeltaNet), grouped value heads.
delta_net::config dn_full() {
  delta_net::config c;
  c.hidden_size = 96, c.num_heads = 2, c.conv_bias = true, c.use_gate = true;  // K = V = 48
  return c;
}
gated_delta_net::config gdn_plain() {
  gated_delta_net::config c = gdn_config(2);  // HV = 4, K 16, V 32
  c.use_gate = false, c.conv_bias = true, c.conv_size = 3;
  return c;
}

TEST_CASE("Delta-rule layers: init is reproducible; load(save(init)) is the same layer", "[delta_rule][layer][io]") {
  // Both layers, with and without the output gate (g_proj empty when off).
  auto check = [](auto layer_type, const auto& cfg, unsigned x_seed) {
    using L = typename decltype(layer_type)::type;
    INFO(L::name << " use_gate=" << cfg.use_gate);
    const auto x = uniform_tensor<float, 3>({2, 21, cfg.hidden_size}, -1, 1, x_seed);
    const auto a = test::check_init_round_trip<L>(cfg, 7, x, prefix);
    CHECK(a.params().g_proj.weight.size() == (cfg.use_gate ? cfg.value_dim() * cfg.hidden_size : 0));
  };
  for (const auto& cfg : {dn_config(), dn_full()}) check(std::type_identity<delta_net>{}, cfg, 1);
  for (const auto& cfg : {gdn_config(), gdn_plain()}) check(std::type_identity<gated_delta_net>{}, cfg, 2);
  // A gate-less layer runs like any other (the empty g_proj is never used).
  const auto p = gated_delta_net::init(gdn_plain(), 3);
  const auto x = uniform_tensor<float, 3>({1, 30, 64}, -1, 1, 4);
  policies_agree(p, x);
  pieces_equal_one_pass(p, x);
}

TEST_CASE("Delta-rule layers: a checkpoint without any one weight is refused naming it", "[delta_rule][layer][io][errors]") {
  test::check_each_weight_required(delta_net::init(dn_full(), 1), prefix);
  test::check_each_weight_required(delta_net::init(dn_config(), 2), prefix);
  test::check_each_weight_required(gated_delta_net::init(gdn_config(2), 3), prefix);
  test::check_each_weight_required(gated_delta_net::init(gdn_plain(), 4), prefix);
}

TEST_CASE("Delta-rule layers: zero or inconsistent configs are refused naming the field", "[delta_rule][layer][errors]") {
  {
    const auto file = test::checkpoint(delta_net::init(dn_config(), 1), prefix);
    test::check_configs_rejected<delta_net>(dn_config(), file, prefix, {
        SEQMIX_ZEROED(hidden_size), SEQMIX_ZEROED(num_heads),
        {"key_dim", [](auto& c) { c.num_heads = 3; }},  // 128
        {"value_dim", [](auto& c) { c.expand_v = 0.75; c.num_heads = 64; }},  // 128 keys fit 64 heads, 96 values do not
        SEQMIX_ZEROED(expand_k), SEQMIX_ZEROED(conv_size),
    });
  }
  {
    const auto file = test::checkpoint(gated_delta_net::init(gdn_config(), 2), prefix);
    test::check_configs_rejected<gated_delta_net>(gdn_config(), file, prefix, {
        SEQMIX_ZEROED(hidden_size), SEQMIX_ZEROED(num_heads), SEQMIX_ZEROED(head_dim),
        {"num_v_heads", [](auto& c) { c.num_heads = 3; }},  // 4 value heads
        {"num_v_heads", [](auto& c) { c.num_v_heads = -4; }},
        {"expand_v", [](auto& c) { c.expand_v = 0.01; }},
        SEQMIX_ZEROED(conv_size),
    });
  }
}

TEST_CASE("Delta-rule layers: validate_finite() names a non-finite weight", "[delta_rule][layer][errors]") {
  test::check_finite_named(delta_net::init(dn_full(), 1));
  test::check_finite_named(gated_delta_net::init(gdn_config(2), 2));
  test::check_finite_named(gated_delta_net::init(gdn_plain(), 3));
}

TEST_CASE("Delta-rule layers: bad input shapes raise seqmix::error", "[delta_rule][layer][errors]") {
  const medium_case<gated_delta_net> c(gdn_medium, gdn_config());
  auto s = c.net.make_state(2);
  test::check_input_errors(c.net, s, 32, {"GatedDeltaNet: state.h has shape [2, 4, 16, 32], expected [3, 4, 16, 32]"});
  tensor<float, 3> x3({3, 5, 64}), y3({3, 5, 64});
  s.conv_v = tensor<float, 3>({2, 128, 2});
  REQUIRE_THROWS_MATCHES(c.net.forward(exec::recurrent{}, x3.view().subrange(0, 0, 2), y3.view().subrange(0, 0, 2), s),
                         seqmix::error,
                         test::error_containing({"GatedDeltaNet: state.conv_v has shape [2, 128, 2], expected [2, 128, 3]"}));
  const medium_case<delta_net> d(dn_medium, dn_config());
  tensor<float, 2> xt({2, 100}), yt({2, 128});
  auto sd = d.net.make_state(2);
  REQUIRE_THROWS_MATCHES(d.net.step(exec::recurrent{}, xt.view(), yt.view(), sd), seqmix::error,
                         test::error_containing({"DeltaNet: x has shape [2, 100], expected [2, 128]"}));
  // Weights of a gated config do not fit a gate-less one (and the other way round).
  delta_net::config no_gate = dn_full();
  no_gate.use_gate = false;
  REQUIRE_THROWS_MATCHES(delta_net(no_gate, delta_net::init(dn_full(), 1).params()), seqmix::error,
                         test::error_containing({"DeltaNet", "g_proj.weight"}));
  REQUIRE_THROWS_MATCHES(delta_net(dn_full(), delta_net::init(no_gate, 1).params()), seqmix::error,
                         test::error_containing({"DeltaNet", "g_proj.weight"}));
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
