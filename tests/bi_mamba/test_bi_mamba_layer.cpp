// BiMamba2 layer: the reference cases under every policy, policies against each other, a prefill
// split anywhere then step() equal to one pass, the block against Mamba2 with the same weights
// unpacked to float, save / load round trip in the spec's layout (the reference's tensors come
// back byte for byte), every weight required and named, non-finite weights and bad configs named,
// argument errors.
#include <cmath>
#include <string>
#include <vector>

#include <seqmix/io/safetensors.hpp>
#include <seqmix/layers/bi_mamba.hpp>
#include <seqmix/layers/mamba2.hpp>
#include <seqmix/tensor/random.hpp>

#include "support/compare.hpp"
#include "support/layer_checks.hpp"

using namespace seqmix;
using bimamba = layers::BiMamba2<float>;

namespace {

const std::string dir = SEQMIX_TEST_DATA_DIR "/refs/bi_mamba/";
const std::string prefix = "backbone.layers.3.mixer.";

// d_model 40: d_inner 80 (not a multiple of 16 or 32), 5 heads of 16, two groups of 8 states...
// nheads must be a multiple of ngroups: 4 heads of 20 in 2 groups.
bimamba::config odd_config() { return {.hidden_size = 40, .d_state = 8, .headdim = 20, .ngroups = 2}; }

bimamba::config medium_config() { return {.hidden_size = 64, .d_state = 32, .headdim = 32}; }  // layer_medium

// Bound of an output or the scan state: in_proj (hidden), out_proj (d_inner), the state dot
// product (d_state) and the recurrence over the tokens (T).
double tol(const bimamba& m, index_t T) {
  const auto& c = m.cfg();
  return test::tolerance<float>(double(c.hidden_size + c.d_inner() + c.d_state + T));
}

bool within_rule(const tensor<float, 3>& got, const tensor<float, 3>& want, double atol, double rtol) {
  for (index_t i = 0; i < got.size(); ++i)
    if (!(std::abs(double(got.data()[i]) - want.data()[i]) <= atol + rtol * std::abs(double(want.data()[i])))) return false;
  return true;
}

// The float weights of a 1-bit projection: W[o, i] = wscale_i s_oi + wbias_i.
nn::linear<float> unpacked(const nn::binary_linear<float>& b) {
  tensor<float, 2> w({b.out_features(), b.in_features()});
  for (index_t o = 0; o < b.out_features(); ++o)
    for (index_t i = 0; i < b.in_features(); ++i) w(o, i) = b.wscale(i) * (b.weight.bit(o, i) ? 1.0f : -1.0f) + b.wbias(i);
  return nn::linear<float>{w, b.bias};
}

}  // namespace

TEST_CASE("BiMamba2: the reference cases under every policy", "[bi_mamba][layer]") {
  for (const char* name : {"layer_medium", "layer_odd_T37", "layer_ngroups2", "layer_decode", "layer_cont_part2"}) {
    INFO(name);
    const auto f = io::safetensors::load(dir + name + std::string(".safetensors"));
    auto cfg = medium_config();
    cfg.d_state = f.get<float, 4>("state_out.ssm").extent(3), cfg.headdim = f.get<float, 4>("state_out.ssm").extent(2);
    cfg.ngroups = (f.get<float, 3>("state_out.conv").extent(1) - cfg.d_inner()) / (2 * cfg.d_state);
    const auto m = bimamba::load(f, cfg, "param.");
    const auto x = f.get<float, 3>("in.x");
    const auto want = f.get<float, 3>("out.y");
    auto fresh = [&] {
      auto s = m.make_state(x.extent(0));
      if (f.contains("state_in.ssm")) s.ssm = f.get<float, 4>("state_in.ssm"), s.conv = f.get<float, 3>("state_in.conv");
      return s;
    };
    auto s_r = fresh(), s_c = fresh(), s_p = fresh(), s_a = fresh();
    const auto y_r = m.forward(exec::recurrent{}, x, s_r);
    const auto y_c = m.forward(exec::chunkwise<16>{2}, x, s_c);
    const auto y_p = m.forward(exec::parallel{2}, x, s_p);
    const auto y_a = m.forward(exec::automatic{}, x, s_a);
    CHECK(within_rule(y_r, want, 1e-4, 1e-3));
    CHECK(within_rule(y_c, want, 1e-4, 1e-3));
    CHECK(within_rule(y_p, want, 1e-4, 1e-3));
    const double t = tol(m, x.extent(1));
    SEQMIX_CHECK_WITHIN(y_c, y_r, t);
    SEQMIX_CHECK_WITHIN(y_p, y_r, t);
    SEQMIX_CHECK_WITHIN(y_a, y_r, t);
    SEQMIX_CHECK_WITHIN(s_c.ssm, s_r.ssm, t);
    const auto ssm_want = f.get<float, 4>("state_out.ssm");
    SEQMIX_CHECK_WITHIN(s_p.ssm, ssm_want, 1e-4);
  }
}

TEST_CASE("BiMamba2: a prefill split anywhere, then step(), equals one pass", "[bi_mamba][layer]") {
  const auto m = bimamba::init(odd_config(), 3);
  const index_t L = 45;
  const auto x = uniform_tensor<float, 3>({2, L, 40}, -1, 1, 4);
  auto s_full = m.make_state(2);
  const auto y_full = m.forward(exec::chunkwise<16>{}, x, s_full);
  const double t = tol(m, L);
  for (const index_t split : {1, 17, 32}) {
    INFO("split at " << split);
    auto s = m.make_state(2);
    auto y = test::nan_tensor<float, 3>(y_full.extents());
    test::prefill_then_step(m, x, y, s, split, split + 5);
    SEQMIX_CHECK_WITHIN(y, y_full, t);
    SEQMIX_CHECK_WITHIN(s.ssm, s_full.ssm, t);
    SEQMIX_CHECK_WITHIN(s.conv, s_full.conv, t);
  }
}

TEST_CASE("BiMamba2: the block is Mamba2 with the 1-bit weights unpacked to float", "[bi_mamba][layer]") {
  for (const auto& cfg : {odd_config(), medium_config()}) {
    const auto b = bimamba::init(cfg, 11);
    const auto& w = b.params();
    layers::Mamba2<float>::config mc;
    mc.hidden_size = cfg.hidden_size, mc.d_state = cfg.d_state, mc.headdim = cfg.headdim, mc.ngroups = cfg.ngroups;
    const layers::Mamba2<float> m(mc, {unpacked(w.in_proj), w.conv1d, w.dt_bias, w.A_log, w.D, w.norm, unpacked(w.out_proj)});
    const auto x = uniform_tensor<float, 3>({2, 33, cfg.hidden_size}, -1, 1, 12);
    auto sb = b.make_state(2);
    auto sm = m.make_state(2);
    const auto yb = b.forward(exec::chunkwise<16>{}, x, sb);
    const auto ym = m.forward(exec::chunkwise<16>{}, x, sm);
    SEQMIX_CHECK_WITHIN(yb, ym, tol(b, 33));
    SEQMIX_CHECK_WITHIN(sb.ssm, sm.ssm, tol(b, 33));
  }
}

TEST_CASE("BiMamba2: init is reproducible; load(save(init)) is the same layer; save writes the spec's layout",
          "[bi_mamba][layer][io]") {
  test::check_init_round_trip<bimamba>(odd_config(), 7, uniform_tensor<float, 3>({2, 19, 40}, -1, 1, 4), prefix);
  // The reference's tensors come back byte for byte (weight_sign, the unpacked copy, is not kept).
  const auto ref = io::safetensors::load(dir + "layer_medium.safetensors");
  const auto file = test::checkpoint(bimamba::load(ref, medium_config(), "param."), prefix);
  index_t count = 0;
  for (const auto& n : ref.names())
    if (n.rfind("param.", 0) == 0 && n.find("weight_sign") == std::string::npos) {
      INFO(n);
      ++count;
      REQUIRE(file.contains(prefix + n.substr(6)));
      CHECK(file.info(prefix + n.substr(6)).type == ref.info(n).type);
      CHECK(file.info(prefix + n.substr(6)).shape == ref.info(n).shape);
      const auto got = file.raw(prefix + n.substr(6)), want = ref.raw(n);
      CHECK(std::equal(got.begin(), got.end(), want.begin(), want.end()));
    }
  CHECK(index_t(file.names().size()) == count);
  // Weights: 1 bit per projection weight plus float scales; at most 1/25 of Mamba2's float32 bytes
  // for a 780M-like block's projections (C 1536).
  bimamba::config big;
  big.hidden_size = 1536, big.headdim = 64;
  const auto l = bimamba::init(big, 1);
  const double proj_f32 = double(big.d_in_proj() * 1536 + 1536 * big.d_inner()) * 4;
  CHECK(double(l.params().in_proj.memory_bytes() + l.params().out_proj.memory_bytes()) * 25 <= proj_f32);
}

TEST_CASE("BiMamba2: a checkpoint without any one weight is refused naming it", "[bi_mamba][layer][io][errors]") {
  test::check_each_weight_required(bimamba::init(odd_config(), 5), prefix);
}

TEST_CASE("BiMamba2: non-finite weights and bad configs are named", "[bi_mamba][layer][errors]") {
  // The two packed sign tensors (which cannot hold a NaN) are checkpoint entries the float visitors do not see.
  test::check_finite_named(bimamba::init(odd_config(), 2), 2);
  const auto file = test::checkpoint(bimamba::init(odd_config(), 1), prefix);
  test::check_configs_rejected<bimamba>(odd_config(), file, prefix, {
      SEQMIX_ZEROED(hidden_size), SEQMIX_ZEROED(d_state), SEQMIX_ZEROED(headdim),
      {"headdim", [](auto& c) { c.headdim = 7; }},
      {"ngroups", [](auto& c) { c.ngroups = 3; }},
      {"dt_min", [](auto& c) { c.dt_min = 1, c.dt_max = 0.5; }},
  });
  // A packed tensor of the wrong width is named with both shapes.
  io::safetensors_writer w;
  for (const auto& n : file.names())
    if (n != prefix + "out_proj.weight_packed") w.add_raw(n, file.info(n).type, file.info(n).shape, file.raw(n));
  w.add(prefix + "out_proj.weight_packed", tensor<std::uint8_t, 2>({40, 11}));
  const auto bad = io::safetensors::parse(w.bytes(), "mem");
  REQUIRE_THROWS_WITH(bimamba::load(bad, odd_config(), prefix),
                      Catch::Contains("BiMamba2: weight '" + prefix + "out_proj.weight_packed' has shape [40, 11], expected [40, 10]"));
}

TEST_CASE("BiMamba2: bad inputs and a mismatched state raise seqmix::error", "[bi_mamba][layer][errors]") {
  const auto m = bimamba::init(odd_config(), 1);
  auto s = m.make_state(2);
  test::check_input_errors(m, s, 39, {"BiMamba2: state.conv"});
  tensor<float, 3> x0({2, 0, 40}), y0({2, 0, 40});
  m.forward(exec::parallel{}, x0.view(), y0.view(), s);  // no tokens: nothing happens
}
