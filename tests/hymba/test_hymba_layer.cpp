// HymbaBlock layer: the reference cases under every policy and the policies against each other; the
// block against a double evaluation of spec/hymba.md on sequences long enough for the ring cache;
// a prefill split anywhere then step() equal to one pass (meta tokens and windows crossing the
// split); the meta snapshot against running the meta tokens; bounded local-layer state; KV sharing
// through cross_layer without a copy; init / save / load; every weight required; bad configs,
// inputs and states named.
#include <cmath>
#include <vector>

#include <seqmix/io/safetensors.hpp>
#include <seqmix/layers/hymba.hpp>
#include <seqmix/tensor/random.hpp>

#include "support/compare.hpp"
#include "support/layer_checks.hpp"

using namespace seqmix;
using block = layers::HymbaBlock<float>;

namespace {

const std::string dir = SEQMIX_TEST_DATA_DIR "/refs/hymba/";
const std::string prefix = "model.layers.3.mamba.";

// The reference files' shape: C 64, I 128, 4 heads of 32, 2 KV heads, K 3, R 8, N 16.
block::config small_config(index_t window, index_t meta, bool kv_reuse = false) {
  block::config c;
  c.hidden_size = 64, c.intermediate_size = 128, c.num_attention_heads = 4, c.num_key_value_heads = 2;
  c.conv_kernel_size = 3, c.time_step_rank = 8, c.ssm_state_size = 16, c.attention_window_size = window;
  c.num_meta_tokens = meta, c.kv_reuse = kv_reuse, c.max_length = 1024;
  return c;
}

// Not a multiple of the SIMD lanes: C 36, I 72, 3 heads of 24, 1 KV head, K 4, R 5, N 6.
block::config odd_config(index_t window, index_t meta) {
  block::config c;
  c.hidden_size = 36, c.intermediate_size = 72, c.num_attention_heads = 3, c.num_key_value_heads = 1;
  c.conv_kernel_size = 4, c.time_step_rank = 5, c.ssm_state_size = 6, c.attention_window_size = window;
  c.num_meta_tokens = meta, c.max_length = 1024;
  return c;
}

// Bound of a block output: in_proj over C, attention over hd + keys, x_proj / dt_proj, the scan
// over N + T, the norms and out_proj over I.
double tol(const block& l, index_t T) {
  const auto& c = l.cfg();
  return test::tolerance<float>(double(c.hidden_size + c.dim() + 2 * c.inner() + c.ssm_state_size + T));
}

tensor<float, 3> inputs(index_t B, index_t T, index_t C, unsigned seed) { return uniform_tensor<float, 3>({B, T, C}, -1, 1, seed); }

// spec/hymba.md in double for x [B, T, C] from position 0 (meta tokens prepended as the config
// says): y [B, M + T, C] (M = 0 rows when not prepended).
tensor<double, 3> spec_block(const block& l, const tensor<float, 3>& x_in) {
  const auto& c = l.cfg();
  const auto& w = l.params();
  const index_t B = x_in.extent(0), M = c.prepends() ? c.num_meta_tokens : 0, T = M + x_in.extent(1), C = c.hidden_size;
  const index_t I = c.inner(), H = c.num_attention_heads, Hk = c.kv_heads(), D = c.dim(), K = c.conv_kernel_size,
                R = c.time_step_rank, N = c.ssm_state_size, Mm = c.num_meta_tokens;
  auto lin = [](const tensor<float, 2>& W, const std::vector<double>& in, const std::optional<tensor<float, 1>>& b) {
    std::vector<double> out(static_cast<std::size_t>(W.extent(0)), 0.0);
    for (index_t o = 0; o < W.extent(0); ++o) {
      double acc = b ? double((*b)(o)) : 0.0;
      for (index_t i = 0; i < W.extent(1); ++i) acc += double(W(o, i)) * in[std::size_t(i)];
      out[std::size_t(o)] = acc;
    }
    return out;
  };
  auto rms = [&](std::vector<double> v, index_t off, index_t n, const tensor<float, 1>& g) {
    double s = 0;
    for (index_t i = 0; i < n; ++i) s += v[std::size_t(off + i)] * v[std::size_t(off + i)];
    const double r = 1 / std::sqrt(s / double(n) + c.rms_eps);
    for (index_t i = 0; i < n; ++i) v[std::size_t(off + i)] *= r * double(g(i));
    return v;
  };
  auto silu = [](double v) { return v / (1 + std::exp(-v)); };
  auto rope = [&](std::vector<double>& v, index_t off, index_t p) {
    for (index_t i = 0; i < D / 2; ++i) {
      const double f = std::pow(c.rope_base, -double(2 * i) / double(D)), a = double(p) * f;
      const double x0 = v[std::size_t(off + i)], x1 = v[std::size_t(off + i + D / 2)];
      v[std::size_t(off + i)] = x0 * std::cos(a) - x1 * std::sin(a);
      v[std::size_t(off + i + D / 2)] = x1 * std::cos(a) + x0 * std::sin(a);
    }
  };
  tensor<double, 3> y({B, T, C});
  for (index_t b = 0; b < B; ++b) {
    std::vector<std::vector<double>> z(static_cast<std::size_t>(T));
    for (index_t t = 0; t < T; ++t) {
      std::vector<double> xr(static_cast<std::size_t>(C));
      for (index_t i = 0; i < C; ++i) xr[std::size_t(i)] = t < M ? double(w.meta_token(t, i)) : double(x_in(b, t - M, i));
      z[std::size_t(t)] = lin(nn::unpacked(w.in_proj.weight), xr, w.in_proj.bias);
      if (c.use_positional_embedding) {
        for (index_t h = 0; h < H; ++h) rope(z[std::size_t(t)], h * D, t);
        for (index_t h = 0; h < Hk; ++h) rope(z[std::size_t(t)], I + h * D, t);
      }
    }
    std::vector<std::vector<double>> h(static_cast<std::size_t>(I), std::vector<double>(static_cast<std::size_t>(N), 0.0));
    for (index_t t = 0; t < T; ++t) {
      const auto& zt = z[std::size_t(t)];
      std::vector<double> attn(static_cast<std::size_t>(I), 0.0), ssm(attn.size()), xc(attn.size());
      for (index_t hh = 0; hh < H; ++hh) {
        const index_t kh = hh / (H / Hk);
        std::vector<double> s;
        std::vector<index_t> js;
        for (index_t j = 0; j <= t; ++j) {
          const bool in_window = c.attention_window_size == 0 || t - j <= c.attention_window_size;
          if (!(in_window || (c.modify_attention_mask && j < Mm))) continue;
          double d = 0;
          for (index_t i = 0; i < D; ++i) d += zt[std::size_t(hh * D + i)] * z[std::size_t(j)][std::size_t(I + kh * D + i)];
          s.push_back(d / std::sqrt(double(D))), js.push_back(j);
        }
        double mx = -1e300, den = 0;
        for (double e : s) mx = std::max(mx, e);
        for (double& e : s) e = std::exp(e - mx), den += e;
        for (std::size_t n = 0; n < js.size(); ++n)
          for (index_t i = 0; i < D; ++i)
            attn[std::size_t(hh * D + i)] += s[n] / den * z[std::size_t(js[n])][std::size_t(I + Hk * D + kh * D + i)];
      }
      const index_t xs = I + 2 * Hk * D;
      for (index_t ch = 0; ch < I; ++ch) {
        double acc = w.conv1d.bias ? double((*w.conv1d.bias)(ch)) : 0.0;
        for (index_t k = 0; k < K; ++k) {
          const index_t s = t - (K - 1) + k;
          if (s >= 0) acc += double(w.conv1d.weight(ch, k)) * z[std::size_t(s)][std::size_t(xs + ch)];
        }
        xc[std::size_t(ch)] = silu(acc);
      }
      auto sp = lin(nn::unpacked(w.x_proj.weight), xc, std::nullopt);
      sp = rms(sp, 0, R, w.dt_norm), sp = rms(sp, R, N, w.B_norm), sp = rms(sp, R + N, N, w.C_norm);
      const auto dt = lin(nn::unpacked(w.dt_proj.weight), std::vector<double>(sp.begin(), sp.begin() + R), std::nullopt);
      for (index_t ch = 0; ch < I; ++ch) {
        const double v = dt[std::size_t(ch)] + double(w.dt_bias(ch)), delta = v > 20 ? v : std::log1p(std::exp(v));
        double out = 0;
        for (index_t n = 0; n < N; ++n) {
          auto& hn = h[std::size_t(ch)][std::size_t(n)];
          hn = std::exp(delta * -std::exp(double(w.A_log(ch, n)))) * hn + delta * xc[std::size_t(ch)] * sp[std::size_t(R + n)];
          out += hn * sp[std::size_t(R + N + n)];
        }
        ssm[std::size_t(ch)] = (out + double(w.D(ch)) * xc[std::size_t(ch)]) * silu(zt[std::size_t(xs + I + ch)]);
      }
      attn = rms(attn, 0, I, w.norm1), ssm = rms(ssm, 0, I, w.norm2);
      for (index_t ch = 0; ch < I; ++ch) attn[std::size_t(ch)] = (attn[std::size_t(ch)] + ssm[std::size_t(ch)]) / 2;
      const auto o = lin(nn::unpacked(w.out_proj.weight), attn, w.out_proj.bias);
      for (index_t i = 0; i < C; ++i) y(b, t, i) = o[std::size_t(i)];
    }
  }
  return y;
}

// Rows [from, from + n) of y along time.
template <class V>
auto rows(const V& y, index_t from, index_t n) {
  return tensor<double, 3>(tensor_view<const double, 3>(y.data() + from * y.extent(2), {y.extent(0), n, y.extent(2)},
                                                        {y.extent(1) * y.extent(2), y.extent(2), 1}));
}

tensor<double, 3> as_double(const tensor<float, 3>& t) {
  tensor<double, 3> d(t.extents());
  for (index_t i = 0; i < t.size(); ++i) d.data()[i] = t.data()[i];
  return d;
}

}  // namespace

TEST_CASE("HymbaBlock: reference cases under every policy, policies against each other", "[hymba][layer]") {
  for (const char* name : {"layer_meta_swa_T37", "layer_medium_global_meta", "layer_swa_nometa"}) {
    INFO(name);
    const auto file = io::safetensors::load(dir + name + std::string(".safetensors"));
    auto cfg = small_config(0, 0);
    const auto meta = file.contains("param.meta_token") ? file.get<float, 2>("param.meta_token").extent(0) : 0;
    cfg.num_meta_tokens = meta, cfg.prepend_meta_tokens = meta > 0;
    cfg.attention_window_size = std::string(name) == "layer_medium_global_meta" ? 0 : (meta > 0 ? 8 : 6);
    cfg.modify_attention_mask = std::string(name) == "layer_meta_swa_T37";
    cfg.num_key_value_heads = std::string(name) == "layer_medium_global_meta" ? 4 : 2;
    const auto l = block::load(file, cfg, "param.");
    const auto x = file.get<float, 3>("in.x");
    const auto want = file.get<double, 3>("out.y");
    const index_t B = x.extent(0), T = x.extent(1);
    const double t = tol(l, T + meta);
    // The snapshot path: meta rows from meta_outputs(), the rest from forward().
    std::vector<tensor<float, 3>> ys;
    auto run = [&](const auto& policy) {
      auto s = l.make_state(B);
      auto y = test::nan_tensor<float, 3>({B, T, cfg.hidden_size});
      l.forward(policy, x.view(), y.view(), s);
      CHECK(s.position == meta + T);
      ys.push_back(std::move(y));
    };
    run(exec::recurrent{}), run(exec::chunkwise<16>{2}), run(exec::parallel{2}), run(exec::automatic{});
    SEQMIX_CHECK_WITHIN(as_double(ys[0]), rows(want, meta, T), 1e-4);
    for (std::size_t i = 1; i < ys.size(); ++i) SEQMIX_CHECK_WITHIN(ys[i], ys[0], t);
    if (meta > 0) {
      tensor<double, 3> m({1, meta, cfg.hidden_size});
      for (index_t r = 0; r < meta; ++r)
        for (index_t c = 0; c < cfg.hidden_size; ++c) m(0, r, c) = l.meta_outputs()(r, c);
      SEQMIX_CHECK_WITHIN(m, rows(want, 0, meta).view().subrange(0, 0, 1), 1e-4);
    }
  }
}

TEST_CASE("HymbaBlock: the block against spec/hymba.md in double, windows and the ring cache", "[hymba][layer]") {
  struct variant {
    block::config cfg;
    index_t T;
  };
  auto swa_nomask = odd_config(5, 3);
  swa_nomask.modify_attention_mask = false;
  auto no_rope = small_config(0, 2);
  no_rope.use_positional_embedding = false;
  auto not_prepended = small_config(8, 4);
  not_prepended.prepend_meta_tokens = false;  // x carries the meta positions; the mask still sees them
  for (const auto& v : {variant{small_config(8, 4), 600}, variant{odd_config(5, 3), 150}, variant{swa_nomask, 150},
                        variant{small_config(0, 0), 70}, variant{no_rope, 40}, variant{not_prepended, 200}}) {
    INFO("C=" << v.cfg.hidden_size << " W=" << v.cfg.attention_window_size << " M=" << v.cfg.num_meta_tokens
              << " T=" << v.T << " mask=" << v.cfg.modify_attention_mask << " rope=" << v.cfg.use_positional_embedding);
    const auto l = block::init(v.cfg, 17);
    const auto x = inputs(2, v.T, v.cfg.hidden_size, 3);
    const auto want = spec_block(l, x);
    const index_t M = v.cfg.prepends() ? v.cfg.num_meta_tokens : 0;
    for (int p = 0; p < 3; ++p) {
      auto s = l.make_state_without_snapshot(2);
      auto y = test::nan_tensor<float, 3>({2, M + v.T, v.cfg.hidden_size});
      if (M > 0) {
        if (p == 0) l.forward_with_meta(exec::recurrent{}, x.view(), y.view(), s);
        if (p == 1) l.forward_with_meta(exec::chunkwise<64>{}, x.view(), y.view(), s);
        if (p == 2) l.forward_with_meta(exec::parallel{2}, x.view(), y.view(), s);
      } else {
        if (p == 0) l.forward(exec::recurrent{}, x.view(), y.view(), s);
        if (p == 1) l.forward(exec::chunkwise<64>{}, x.view(), y.view(), s);
        if (p == 2) l.forward(exec::parallel{2}, x.view(), y.view(), s);
      }
      INFO("policy " << p << " ring " << s.kv.is_ring());
      SEQMIX_CHECK_WITHIN(as_double(y), want, tol(l, M + v.T));
    }
    if (v.T >= 600) CHECK(l.make_state(1).kv.is_ring());  // the long case: the ring cache, two passes of 512 rows
  }
}

TEST_CASE("HymbaBlock: a prefill split anywhere, then step(), equals one pass", "[hymba][layer]") {
  for (const auto& cfg : {small_config(8, 4), small_config(0, 4), odd_config(5, 0)}) {
    const auto l = block::init(cfg, 5);
    const index_t L = 200, C = cfg.hidden_size;
    const auto x = inputs(2, L, C, 9);
    auto s_full = l.make_state(2);
    const auto y_full = l.forward(exec::chunkwise<64>{}, x, s_full);
    const double t = tol(l, L + cfg.num_meta_tokens);
    for (const index_t split : {1, 3, 9, 64, 150}) {
      INFO("W=" << cfg.attention_window_size << " M=" << cfg.num_meta_tokens << " split at " << split);
      // One state from the snapshot, one that runs the meta tokens in its first call.
      for (const bool snapshot : {true, false}) {
        auto s = snapshot ? l.make_state(2) : l.make_state_without_snapshot(2);
        auto y = test::nan_tensor<float, 3>(y_full.extents());
        test::prefill_then_step(l, x, y, s, split, std::min<index_t>(split + 40, L));
        SEQMIX_CHECK_WITHIN(y, y_full, t);
        SEQMIX_CHECK_WITHIN(s.ssm, s_full.ssm, t);
        SEQMIX_CHECK_WITHIN(s.conv, s_full.conv, t);
        SEQMIX_CHECK_WITHIN(s.kv.keys(), s_full.kv.keys(), t);
        CHECK(s.position == L + cfg.num_meta_tokens);
      }
    }
  }
}

TEST_CASE("HymbaBlock: the meta snapshot is the state after the meta tokens", "[hymba][layer]") {
  const auto l = block::init(small_config(8, 4), 21);
  REQUIRE(l.has_snapshot());
  auto s = l.make_state(3);
  CHECK(s.position == 4);
  CHECK(s.kv.length() == 4);
  CHECK_FALSE(s.meta_pending);
  // Running the meta tokens gives the same state and, per sequence, the same meta rows.
  auto r = l.make_state_without_snapshot(3);
  CHECK(r.meta_pending);
  const auto x = inputs(3, 1, 64, 2);
  tensor<float, 3> y({3, 5, 64});
  l.forward_with_meta(exec::recurrent{}, x.view(), y.view(), r);
  const double t = tol(l, 5);
  for (index_t b = 0; b < 3; ++b)
    for (index_t m = 0; m < 4; ++m)
      for (index_t c = 0; c < 64; ++c) CHECK(std::abs(y(b, m, c) - l.meta_outputs()(m, c)) <= t);
  auto s2 = l.make_state(3);
  tensor<float, 3> y2({3, 1, 64});
  l.forward(exec::recurrent{}, x.view(), y2.view(), s2);
  const tensor<float, 3> y_tail(y.view().subrange(1, 4, 1));
  SEQMIX_CHECK_WITHIN(y2, y_tail, t);
  SEQMIX_CHECK_WITHIN(s2.ssm, r.ssm, t);
  SEQMIX_CHECK_WITHIN(s2.kv.keys(), r.kv.keys(), t);
  // restart() gives either start again in the same storage.
  const auto x9 = inputs(3, 9, 64, 6);
  auto fresh = l.make_state(3);
  const auto y9 = l.forward(exec::chunkwise<64>{}, x9, fresh);
  l.restart(s2);
  SEQMIX_CHECK_IDENTICAL(l.forward(exec::chunkwise<64>{}, x9, s2), y9);
  SEQMIX_CHECK_IDENTICAL(s2.kv.keys(), fresh.kv.keys());
  SEQMIX_CHECK_IDENTICAL(s2.ssm, fresh.ssm);
  l.restart(s2, false);
  CHECK(s2.position == 0);
  CHECK(s2.meta_pending);
  auto fresh2 = l.make_state_without_snapshot(3);
  SEQMIX_CHECK_IDENTICAL(l.forward(exec::recurrent{}, x9, s2), l.forward(exec::recurrent{}, x9, fresh2));
  // No snapshot without meta tokens, with them in x, or with kv_reuse (its meta rows read the
  // layer before's cache).
  CHECK_FALSE(block::init(small_config(8, 0), 1).has_snapshot());
  auto np = small_config(8, 4);
  np.prepend_meta_tokens = false;
  CHECK_FALSE(block::init(np, 1).has_snapshot());
  CHECK_FALSE(block::init(small_config(8, 4, true), 1).has_snapshot());
  auto c2 = block::init(small_config(8, 4, true), 1);
  REQUIRE_THROWS_WITH(c2.take_snapshot_from(block::init(small_config(0, 4), 1)), Catch::Contains("HymbaBlock: the producer has other"));
  REQUIRE_THROWS_WITH(block::init(small_config(8, 4), 1).take_snapshot_from(l), Catch::Contains("take_snapshot_from is for kv_reuse"));
  REQUIRE_THROWS_WITH(l.forward_with_meta(exec::recurrent{}, x.view(), y.view(), s2),
                      Catch::Contains("HymbaBlock: forward_with_meta needs a state that has not run its meta tokens"));
}

TEST_CASE("HymbaBlock: a local layer's state is bounded, a global layer's grows", "[hymba][layer]") {
  auto local = small_config(8, 4), global = small_config(0, 4);
  local.max_length = global.max_length = 1 << 16;
  const auto a = block::init(local, 1), g = block::init(global, 1);
  CHECK(a.make_state(1, {.capacity = 1024}).bytes() == a.make_state(1, {.capacity = 16384}).bytes());
  CHECK(g.make_state(1, {.capacity = 16384}).bytes() > 8 * g.make_state(1, {.capacity = 1024}).bytes());
  CHECK(a.cache_bytes_per_token(16384) * 10 < a.cache_bytes_per_token(1024));
  // Global: K and V of 2 heads of 32 floats per token, plus the fixed conv and SSM state.
  const double kv_per_token = 2.0 * 2 * 32 * sizeof(float), fixed = (128.0 * 2 + 128 * 16) * sizeof(float);
  CHECK(g.cache_bytes_per_token(8192) == Approx(kv_per_token + fixed / 8192).epsilon(0.01));
  // Decode through the ring: the state does not grow, and stays correct (checked above).
  auto s = a.make_state(1, {.capacity = 4096});
  const auto before = s.bytes();
  const auto x = inputs(1, 600, 64, 4);
  a.forward(exec::chunkwise<64>{}, x.view(), s);
  CHECK(s.bytes() == before);
  CHECK(s.kv.slots() < 300);
  // forward()'s buffers: one pass's worth, released on request; a copy starts without them.
  const index_t row = 3 * 128 + 2 * 64 + 4 * 128 + 8 + 2 * 16;  // z, attn, u, ys, delta, xdbl
  CHECK(s.buffer_bytes() == row * 600 * index_t(sizeof(float)));
  CHECK(block::State(s).buffer_bytes() == 0);
  s.release_buffers();
  CHECK(s.buffer_bytes() == 0);
  a.forward(exec::recurrent{}, inputs(1, 1, 64, 5), s);
  CHECK(s.buffer_bytes() == row * index_t(sizeof(float)));
}

TEST_CASE("HymbaBlock: KV sharing through cross_layer, no copy, split equals one pass", "[hymba][layer]") {
  for (const index_t W : {0, 8}) {
    INFO("window " << W);
    const auto prod = block::init(small_config(W, 4), 3), cons = block::init(small_config(W, 4, true), 4);
    CHECK(cons.params().in_proj.weight.extent(0) == 3 * 128);
    const index_t L = 60;
    const auto x = inputs(2, L, 64, 5);
    layers::cross_layer<float> cross;
    auto sp = prod.make_state(2, {.cross = &cross}), sc = cons.make_state(2, {.cross = &cross});
    CHECK(sc.kv.slots() == 0);  // the consumer holds no keys or values
    CHECK(sc.bytes() * 4 < sp.bytes());
    // One pass: the consumer's first call runs its meta tokens, attending the producer's snapshot.
    const auto h = prod.forward(exec::chunkwise<64>{}, x, sp);
    CHECK(cross.shared_kv == &sp.kv);  // the producer's own cache, shared by pointer
    const auto y = cons.forward(exec::chunkwise<64>{}, h, sc);
    CHECK(sc.position == sp.position);
    // The consumer against spec_block's attention over the producer's keys: one long pass of both
    // (a consumer's meta outputs and its state are the same whichever way the tokens are split).
    layers::cross_layer<float> cross2;
    auto sp2 = prod.make_state(2, {.cross = &cross2}), sc2 = cons.make_state(2, {.cross = &cross2});
    auto y2 = test::nan_tensor<float, 3>(y.extents());
    for (index_t t0 = 0; t0 < L;) {
      const index_t n = t0 < 30 ? 13 : 1;
      const index_t m = std::min(n, L - t0);
      tensor<float, 3> hh({2, m, 64});
      prod.forward(exec::automatic{}, x.view().subrange(1, t0, m), hh.view(), sp2);
      cons.forward(exec::automatic{}, hh.view(), y2.view().subrange(1, t0, m), sc2);
      t0 += m;
    }
    // The second run feeds the consumer the producer's outputs of each chunk; they equal the first
    // run's within rounding, so compare with the tolerance of two blocks.
    SEQMIX_CHECK_WITHIN(y2, y, 2 * tol(cons, L + 4));
    SEQMIX_CHECK_WITHIN(sc2.ssm, sc.ssm, 2 * tol(cons, L + 4));
  }
  // A consumer with its own snapshot (taken against the producer's): the same outputs, and on a
  // ring cache its first call attends only its own tokens.
  for (const index_t W : {0, 8}) {
    INFO("window " << W);
    const auto prod = block::init(small_config(W, 4), 3);
    const auto plain = block::init(small_config(W, 4, true), 4);
    auto cons = block::init(small_config(W, 4, true), 4);
    cons.take_snapshot_from(prod);
    REQUIRE(cons.has_snapshot());
    const auto x = inputs(2, 90, 64, 8);
    layers::cross_layer<float> c1, c2;
    auto p1 = prod.make_state(2, {.cross = &c1}), q1 = plain.make_state(2, {.cross = &c1});
    auto p2 = prod.make_state(2, {.cross = &c2}), q2 = cons.make_state(2, {.cross = &c2});
    CHECK(q2.position == 4);
    tensor<float, 3> y1({2, 90, 64}), y2({2, 90, 64});
    for (index_t t0 = 0; t0 < 90; t0 += 30) {  // 4 + 30 rows in the plain consumer's first call
      const auto h1 = prod.forward(exec::chunkwise<64>{}, tensor<float, 3>(x.view().subrange(1, t0, 30)), p1);
      const auto h2 = prod.forward(exec::chunkwise<64>{}, tensor<float, 3>(x.view().subrange(1, t0, 30)), p2);
      plain.forward(exec::chunkwise<64>{}, h1.view(), y1.view().subrange(1, t0, 30), q1);
      cons.forward(exec::recurrent{}, h2.view(), y2.view().subrange(1, t0, 30), q2);
    }
    SEQMIX_CHECK_WITHIN(y2, y1, tol(cons, 94));
    SEQMIX_CHECK_WITHIN(q2.ssm, q1.ssm, tol(cons, 94));
    for (index_t m = 0; m < 4; ++m)
      for (index_t c = 0; c < 64; ++c) CHECK(std::abs(cons.meta_outputs()(m, c)) < 1e3f);
  }
  // A sharing pair of local layers in calls longer than the ring's default step (300 and 200
  // tokens, window 8): the producer's ring grows for the call and shrinks back on the next short
  // one; the same outputs as chunks of 20.
  {
    const auto prod = block::init(small_config(8, 4), 3);
    auto cons = block::init(small_config(8, 4, true), 4);
    cons.take_snapshot_from(prod);
    const auto x = inputs(2, 501, 64, 9);
    layers::cross_layer<float> c1, c2;
    auto p1 = prod.make_state(2, {.cross = &c1}), q1 = cons.make_state(2, {.cross = &c1});
    auto p2 = prod.make_state(2, {.cross = &c2}), q2 = cons.make_state(2, {.cross = &c2});
    const index_t decode_slots = p1.kv.slots();
    REQUIRE(p1.kv.is_ring());
    auto y1 = test::nan_tensor<float, 3>({2, 501, 64}), y2 = test::nan_tensor<float, 3>({2, 501, 64});
    auto both = [&](block::State& ps, block::State& q, index_t t0, index_t n, tensor<float, 3>& y) {
      tensor<float, 3> h({2, n, 64});
      prod.forward(exec::chunkwise<64>{}, x.view().subrange(1, t0, n), h.view(), ps);
      cons.forward(exec::chunkwise<64>{}, h.view(), y.view().subrange(1, t0, n), q);
    };
    both(p1, q1, 0, 300, y1);
    CHECK(p1.kv.slots() > decode_slots);
    both(p1, q1, 300, 200, y1);
    both(p1, q1, 500, 1, y1);  // a decode step: the ring is back to its bounded size
    CHECK(p1.kv.slots() == decode_slots);
    for (index_t t0 = 0; t0 < 501; t0 += 20) both(p2, q2, t0, std::min<index_t>(20, 501 - t0), y2);
    SEQMIX_CHECK_WITHIN(y1, y2, 2 * tol(cons, 505));
    SEQMIX_CHECK_WITHIN(q1.ssm, q2.ssm, 2 * tol(cons, 505));
  }
  // Errors: no shared cache, a cache of another length or window.
  const auto cons = block::init(small_config(8, 4, true), 4);
  const auto x = inputs(1, 3, 64, 1);
  auto alone = cons.make_state(1);
  REQUIRE_THROWS_WITH(cons.forward(exec::recurrent{}, x, alone), Catch::Contains("HymbaBlock: kv_reuse needs the shared KV cache"));
  layers::cross_layer<float> cross;
  const auto prod = block::init(small_config(8, 4), 3), global = block::init(small_config(0, 4), 3);
  auto sp = prod.make_state(1, {.cross = &cross}), sc = cons.make_state(1, {.cross = &cross});
  prod.forward(exec::recurrent{}, x, sp);
  prod.forward(exec::recurrent{}, x, sp);  // now 6 tokens ahead of the consumer
  REQUIRE_THROWS_WITH(cons.forward(exec::recurrent{}, x, sc),
                      Catch::Contains("HymbaBlock: the shared KV cache holds 10 positions, this call ends at position 7"));
  auto sg = global.make_state(1, {.cross = &cross}), sc3 = cons.make_state(1, {.cross = &cross});
  global.forward(exec::recurrent{}, x, sg);
  REQUIRE_THROWS_WITH(cons.forward(exec::recurrent{}, x, sc3), Catch::Contains("another window"));
}

TEST_CASE("HymbaBlock: init is reproducible; load(save(init)) is the same layer", "[hymba][layer][io]") {
  for (const auto& cfg : {odd_config(5, 3), small_config(8, 0)}) {
    INFO("hidden_size=" << cfg.hidden_size);
    test::check_init_round_trip<block>(cfg, 7, inputs(2, 19, cfg.hidden_size, 4), prefix);
  }
  // save() writes the upstream tensors: a reference file's come back bit for bit.
  const auto ref = io::safetensors::load(dir + "layer_kv_reuse.safetensors");
  auto cfg = small_config(0, 2, true);
  cfg.modify_attention_mask = false;
  const auto file = test::checkpoint(block::load(ref, cfg, "param."), prefix);
  for (const auto& n : ref.names())
    if (n.rfind("param.", 0) == 0) {
      INFO(n);
      REQUIRE(file.contains(prefix + n.substr(6)));
      CHECK(std::equal(file.raw(prefix + n.substr(6)).begin(), file.raw(prefix + n.substr(6)).end(), ref.raw(n).begin(),
                       ref.raw(n).end()));
    }
}

TEST_CASE("HymbaBlock: a checkpoint without any one weight is refused naming it", "[hymba][layer][io][errors]") {
  test::check_each_weight_required(block::init(odd_config(5, 3), 5), prefix);
  test::check_each_weight_required(block::init(small_config(8, 0, true), 5), prefix);
}

TEST_CASE("HymbaBlock: non-finite weights and bad configs are named", "[hymba][layer][errors]") {
  test::check_finite_named(block::init(odd_config(5, 3), 2));
  const auto file = test::checkpoint(block::init(small_config(8, 4), 1), prefix);
  test::check_configs_rejected<block>(small_config(8, 4), file, prefix, {
      SEQMIX_ZEROED(hidden_size), SEQMIX_ZEROED(num_attention_heads),
      {"num_key_value_heads", [](auto& c) { c.num_key_value_heads = 3; }},
      {"attention_head_size", [](auto& c) { c.attention_head_size = 16; }},
      {"intermediate_size", [](auto& c) { c.intermediate_size = 0, c.mamba_expand = 0; }},
      SEQMIX_ZEROED(conv_kernel_size), SEQMIX_ZEROED(time_step_rank), SEQMIX_ZEROED(ssm_state_size),
      {"attention_window_size", [](auto& c) { c.attention_window_size = -1; }},
      {"num_meta_tokens", [](auto& c) { c.num_meta_tokens = -2; }},
      SEQMIX_ZEROED(rms_eps), SEQMIX_ZEROED(rope_base), SEQMIX_ZEROED(max_length),
  });
}

TEST_CASE("HymbaBlock: bad inputs, a mismatched state and a full cache raise seqmix::error", "[hymba][layer][errors]") {
  const auto l = block::init(small_config(0, 4), 1);
  auto s = l.make_state(2, {.capacity = 12});
  test::check_input_errors(l, s, 32, {"HymbaBlock: state.conv has shape [2, 128, 2], expected [3, 128, 2]"});
  tensor<float, 3> y({2, 5, 64});
  const auto x2 = inputs(2, 5, 64, 1);
  l.forward(exec::recurrent{}, x2.view(), y.view(), s);  // 4 meta + 5 tokens
  REQUIRE_THROWS_WITH(l.forward(exec::recurrent{}, x2.view(), y.view(), s),
                      Catch::Contains("HymbaBlock: KV cache capacity 12 exceeded (holds 9 tokens, appending 5)"));
  auto wrong = block::init(small_config(8, 4), 1).make_state(2);
  REQUIRE_THROWS_WITH(l.forward(exec::recurrent{}, x2.view(), y.view(), wrong),
                      Catch::Contains("HymbaBlock: state.kv was made for another window"));
  tensor<float, 3> yw({2, 6, 64});
  auto fresh = l.make_state_without_snapshot(2);
  REQUIRE_THROWS_WITH(l.forward_with_meta(exec::recurrent{}, x2.view(), yw.view(), fresh),
                      Catch::Contains("HymbaBlock: y has shape [2, 6, 64], expected [2, 9, 64]"));
  // Empty calls leave the state as it was.
  tensor<float, 3> x0({2, 0, 64}), y0({2, 0, 64});
  auto e = l.make_state(2);
  l.forward(exec::parallel{2}, x0.view(), y0.view(), e);
  CHECK(e.position == 4);
}
