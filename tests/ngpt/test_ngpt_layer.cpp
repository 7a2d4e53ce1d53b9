// NGPTBlock layer: the reference outputs and KV cache under every policy, policies against each
// other, a prefill split anywhere then step() equal to one pass, the folded scalars against an
// unfolded double evaluation, save / load round trip, every weight required and named, non-finite
// weights and bad configs named, argument errors.
#include <cmath>
#include <vector>

#include <seqmix/io/safetensors.hpp>
#include <seqmix/kernels/attention/ref.hpp>
#include <seqmix/layers/ngpt.hpp>

#include "support/compare.hpp"
#include "support/layer_checks.hpp"

using namespace seqmix;
using block = layers::NGPTBlock<float>;

namespace {

const std::string dir = SEQMIX_TEST_DATA_DIR "/refs/ngpt/";
const std::string prefix = "transformer.h.3.";

// layer_medium: n_embd 128, 4 heads of 32, base_scale 1/√128 (the other scalings follow it).
block::config medium_config() { return {.hidden_size = 128, .num_heads = 4, .base_scale = 1 / std::sqrt(128.0)}; }

// Not a multiple of the SIMD lanes: n_embd 36, 3 heads of 12, scalings away from 1.
block::config odd_config() {
  return {.hidden_size = 36, .num_heads = 3, .base_scale = 0.2, .sqk_init_value = 1.5, .suv_init_value = 0.7,
          .suv_init_scaling = 1.3};
}

struct medium_case {
  io::safetensors file = io::safetensors::load(dir + "layer_medium.safetensors");
  block ngpt = block::load(file, medium_config(), "param.");
  tensor<float, 3> x = file.get<float, 3>("in.x");
};

// Bound of a block output: projections over C and 4C, the attention over hd + T keys, three norms.
double tol(const block& l, index_t T) {
  return test::tolerance<float>(double(4 * l.hidden_size() + l.cfg().dim() + T));
}

// Unit rows, as nGPT hidden states are.
tensor<float, 3> unit_rows(index_t B, index_t T, index_t C, unsigned seed) {
  auto x = uniform_tensor<float, 3>({B, T, C}, -1, 1, seed);
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < T; ++t) {
      double s = 0;
      for (index_t c = 0; c < C; ++c) s += double(x(b, t, c)) * x(b, t, c);
      for (index_t c = 0; c < C; ++c) x(b, t, c) = float(x(b, t, c) / std::sqrt(s));
    }
  return x;
}

// The block of spec/ngpt.md in double, every scalar applied where upstream applies it (nothing
// folded), for x [1, T, C] from position 0.
tensor<double, 3> unfolded(const block& l, const tensor<float, 3>& x) {
  const auto& c = l.cfg();
  const auto& w = l.params();
  const index_t T = x.extent(1), C = c.hidden_size, H = c.num_heads, D = c.dim();
  auto lin = [&](const tensor<float, 2>& W, const std::vector<double>& in) {
    std::vector<double> out(std::size_t(W.extent(0)), 0.0);
    for (index_t o = 0; o < W.extent(0); ++o)
      for (index_t i = 0; i < W.extent(1); ++i) out[std::size_t(o)] += double(W(o, i)) * in[std::size_t(i)];
    return out;
  };
  auto norm = [](std::vector<double> v, index_t off, index_t n) {
    double s = 0;
    for (index_t i = off; i < off + n; ++i) s += v[std::size_t(i)] * v[std::size_t(i)];
    for (index_t i = off; i < off + n; ++i) v[std::size_t(i)] /= std::sqrt(s);
    return v;
  };
  auto update = [&](const std::vector<double>& h, const std::vector<double>& m, const tensor<float, 1>& alpha) {
    const auto A = norm(h, 0, C), Bn = norm(m, 0, C);
    std::vector<double> z(static_cast<std::size_t>(C));
    for (index_t i = 0; i < C; ++i) {
      const double lr = std::abs(double(alpha(i)) * (c.alpha_init_value / c.alpha_scaling()));
      z[std::size_t(i)] = A[std::size_t(i)] + lr * (Bn[std::size_t(i)] - A[std::size_t(i)]);
    }
    return norm(z, 0, C);
  };
  std::vector<std::vector<double>> hs(static_cast<std::size_t>(T)), qs(hs.size()), ks(hs.size()), vs(hs.size());
  for (index_t t = 0; t < T; ++t) {
    std::vector<double> h(static_cast<std::size_t>(C));
    for (index_t i = 0; i < C; ++i) h[std::size_t(i)] = x(0, t, i);
    hs[std::size_t(t)] = h;
    auto q = lin(nn::unpacked(w.query.weight), h), k = lin(nn::unpacked(w.key.weight), h);
    vs[std::size_t(t)] = lin(nn::unpacked(w.value.weight), h);
    for (auto* v : {&q, &k}) {
      auto r = *v;
      for (index_t hh = 0; hh < H; ++hh)
        for (index_t i = 0; i < D / 2; ++i) {
          auto e = [&](index_t j) {  // model.py's table: e[2i] = sin, e[2i+1] = cos
            const double f = std::exp(double(2 * (j / 2)) * -(std::log(c.rope_base) / double(D)));
            return j % 2 == 0 ? std::sin(double(t) * f) : std::cos(double(t) * f);
          };
          const index_t o = hh * D;
          r[std::size_t(o + 2 * i)] = -(*v)[std::size_t(o + 2 * i + 1)] * e(D / 2 + i);
          r[std::size_t(o + 2 * i + 1)] = (*v)[std::size_t(o + 2 * i)] * e(i);
        }
      for (index_t hh = 0; hh < H; ++hh) r = norm(r, hh * D, D);
      for (index_t i = 0; i < C; ++i) r[std::size_t(i)] *= double(w.sqk(i)) * (c.sqk_init_value / c.sqk_scaling());
      *v = r;
    }
    qs[std::size_t(t)] = q, ks[std::size_t(t)] = k;
  }
  tensor<double, 3> y({1, T, C});
  for (index_t t = 0; t < T; ++t) {
    std::vector<double> att(std::size_t(C), 0.0);
    for (index_t hh = 0; hh < H; ++hh) {
      std::vector<double> s(std::size_t(t + 1));
      double mx = -1e300, den = 0;
      for (index_t j = 0; j <= t; ++j) {
        double d = 0;
        for (index_t i = hh * D; i < (hh + 1) * D; ++i) d += qs[std::size_t(t)][std::size_t(i)] * ks[std::size_t(j)][std::size_t(i)];
        s[std::size_t(j)] = d * c.attention_scale(), mx = std::max(mx, s[std::size_t(j)]);
      }
      for (auto& e : s) e = std::exp(e - mx), den += e;
      for (index_t j = 0; j <= t; ++j)
        for (index_t i = hh * D; i < (hh + 1) * D; ++i) att[std::size_t(i)] += s[std::size_t(j)] / den * vs[std::size_t(j)][std::size_t(i)];
    }
    auto h = update(hs[std::size_t(t)], lin(nn::unpacked(w.att_c_proj.weight), att), w.attn_alpha);
    auto uv = lin(nn::unpacked(w.c_fc.weight), h);
    const double su = c.suv_init_value / c.suv_init_scaling * std::sqrt(double(C));
    std::vector<double> xm(std::size_t(4 * C));
    for (index_t i = 0; i < 4 * C; ++i) {
      const double u = uv[std::size_t(i)] * double(w.suv(i)) * su, v = uv[std::size_t(4 * C + i)] * double(w.suv(4 * C + i)) * su;
      xm[std::size_t(i)] = u * v / (1 + std::exp(-v));
    }
    h = update(h, lin(nn::unpacked(w.mlp_c_proj.weight), xm), w.mlp_alpha);
    for (index_t i = 0; i < C; ++i) y(0, t, i) = h[std::size_t(i)];
  }
  return y;
}

}  // namespace

TEST_CASE("NGPTBlock: the reference case under every policy, outputs and KV cache", "[ngpt][layer]") {
  const medium_case c;
  const auto want = c.file.get<float, 3>("out.h");
  auto s_r = c.ngpt.make_state(2), s_c = c.ngpt.make_state(2), s_p = c.ngpt.make_state(2), s_a = c.ngpt.make_state(2);
  const auto y_r = c.ngpt.forward(exec::recurrent{}, c.x, s_r);
  const auto y_c = c.ngpt.forward(exec::chunkwise<16>{2}, c.x, s_c);
  const auto y_p = c.ngpt.forward(exec::parallel{2}, c.x, s_p);
  const auto y_a = c.ngpt.forward(exec::automatic{}, c.x, s_a);
  const double t = tol(c.ngpt, 128);
  SEQMIX_CHECK_WITHIN(y_r, want, t);
  SEQMIX_CHECK_WITHIN(y_c, y_r, t);
  SEQMIX_CHECK_WITHIN(y_p, y_r, t);
  SEQMIX_CHECK_WITHIN(y_a, y_r, t);
  SEQMIX_CHECK_IDENTICAL(s_c.keys(), s_r.keys());  // the cache holds what the projections and norms made
  SEQMIX_CHECK_IDENTICAL(s_p.values(), s_r.values());
  CHECK(s_r.length() == 128);
}

TEST_CASE("NGPTBlock: a prefill split anywhere, then step(), equals one pass", "[ngpt][layer]") {
  const medium_case c;
  const index_t L = 128;
  auto s_full = c.ngpt.make_state(2);
  const auto y_full = c.ngpt.forward(exec::chunkwise<64>{}, c.x, s_full);
  const double t = tol(c.ngpt, L);
  for (const index_t split : {1, 17, 64, 100}) {
    INFO("split at " << split);
    auto s = c.ngpt.make_state(2);
    auto y = test::nan_tensor<float, 3>(y_full.extents());
    test::prefill_then_step(c.ngpt, c.x, y, s, split, std::min<index_t>(split + 5, L));
    SEQMIX_CHECK_WITHIN(y, y_full, t);
    SEQMIX_CHECK_WITHIN(s.keys(), s_full.keys(), t);
    CHECK(s.length() == L);
  }
}

TEST_CASE("NGPTBlock: the folded scalars give the unfolded block", "[ngpt][layer]") {
  auto w = block::init(odd_config(), 3).params();
  // Scalars away from their init: negative alphas (abs()), uneven sqk and suv.
  for (index_t i = 0; i < w.attn_alpha.size(); ++i) w.attn_alpha(i) = 0.3f * std::sin(float(i)), w.mlp_alpha(i) = -0.2f + 0.01f * float(i);
  for (index_t i = 0; i < w.sqk.size(); ++i) w.sqk(i) = 0.15f + 0.01f * float(i % 7);
  for (index_t i = 0; i < w.suv.size(); ++i) w.suv(i) = 0.5f + 0.003f * float(i % 50);
  const block l(odd_config(), std::move(w));
  const auto x = unit_rows(1, 21, 36, 9);
  auto s = l.make_state(1);
  const auto y = l.forward(exec::chunkwise<16>{}, x, s);
  SEQMIX_CHECK_WITHIN(y, unfolded(l, x), tol(l, 21));
}

TEST_CASE("NGPTBlock: init is reproducible; load(save(init)) is the same layer", "[ngpt][layer][io]") {
  for (const auto& cfg : {odd_config(), medium_config()}) {
    INFO("hidden_size=" << cfg.hidden_size);
    test::check_init_round_trip<block>(cfg, 7, unit_rows(2, 19, cfg.hidden_size, 4), prefix);
  }
  // save() writes the upstream parameters, not the folded ones: the reference's tensors come back.
  const medium_case c;
  const auto file = test::checkpoint(c.ngpt, prefix);
  for (const auto& n : c.file.names())
    if (n.rfind("param.", 0) == 0) {
      INFO(n);
      REQUIRE(file.contains(prefix + n.substr(6)));
      CHECK(file.raw(prefix + n.substr(6)).size() == c.file.raw(n).size());
      CHECK(std::equal(file.raw(prefix + n.substr(6)).begin(), file.raw(prefix + n.substr(6)).end(), c.file.raw(n).begin()));
    }
}

TEST_CASE("NGPTBlock: a checkpoint without any one weight is refused naming it", "[ngpt][layer][io][errors]") {
  test::check_each_weight_required(block::init(odd_config(), 5), prefix);
}

TEST_CASE("NGPTBlock: non-finite weights and bad configs are named", "[ngpt][layer][errors]") {
  test::check_finite_named(block::init(odd_config(), 2));
  const auto file = test::checkpoint(block::init(medium_config(), 1), prefix);
  test::check_configs_rejected<block>(medium_config(), file, prefix, {
      SEQMIX_ZEROED(hidden_size), SEQMIX_ZEROED(num_heads),
      {"head_dim", [](auto& c) { c.head_dim = 16; }},
      {"head_dim", [](auto& c) { c.num_heads = 128; }},  // odd: 1
      {"bias", [](auto& c) { c.bias = true; }},
      SEQMIX_ZEROED(suv_init_scaling),
  });
}

TEST_CASE("NGPTBlock: bad inputs, a mismatched state and a full cache raise seqmix::error", "[ngpt][layer][errors]") {
  const medium_case c;
  auto s = c.ngpt.make_state(2, {.capacity = 8});
  test::check_input_errors(c.ngpt, s, 64, {"NGPTBlock: state", "expected [3, 4, 32, 4, 32]"});
  tensor<float, 3> y({2, 5, 128});
  const auto x2 = unit_rows(2, 5, 128, 1);
  c.ngpt.forward(exec::recurrent{}, x2.view(), y.view(), s);
  REQUIRE_THROWS_WITH(c.ngpt.forward(exec::recurrent{}, x2.view(), y.view(), s),
                      Catch::Contains("NGPTBlock: KV cache capacity 8 exceeded (holds 5 tokens, appending 5)"));
}
