// Hymba benchmarks (issue 17), shape of a 1024-wide layer: C=1024, I=2048, H=16 heads of 128,
// Hkv=4, N=16, K=4, R=64, W=1024 (1025 keys), M=128 meta tokens.
// - hymba/op: the head combination and out_proj (kernels::hymba), T=2048;
// - hymba/layer/<policy>/prefill: the block on T=2048 tokens after the meta snapshot, 1 and 2
//   threads; ".../prefill_meta/...": the same from a state without the snapshot (M + T rows run);
// - hymba/parts/...: the layer's parts timed alone on the same shapes and weights (projections;
//   RoPE + attention op; conv + dt/B/C norms + scan; the op), whose sum the layer row compares with;
// - hymba/layer/recurrent/decode: one token after 1024 and 16384 cached tokens, local (window:1024)
//   and global (window:none) layers, with the state's bytes as a counter; beside them an Attention
//   layer of the same width (16 heads of 64, 4 KV heads) with a full cache;
// - hymba/stack: cache bytes per token of context for a Hymba-1.5B-like stack against an
//   attention-only stack, from the real State sizes (counters; the time is not a figure).
#include <seqmix/kernels/attention/attention.hpp>
#include <seqmix/kernels/hymba/hymba.hpp>
#include <seqmix/kernels/ssm/selective_scan.hpp>
#include <seqmix/layers/attention.hpp>
#include <seqmix/layers/hymba.hpp>

#include <map>
#include <memory>

#include "common.hpp"

namespace seqmix::bench {
namespace {

using hymba = layers::HymbaBlock<float>;
constexpr index_t C = 1024, I = 2048, H = 16, Hkv = 4, D = I / H, N = 16, K = 4, R = 64, W = 1024, M = 128, T = 2048;

template <class L = hymba>
typename L::config layer_config(index_t window, index_t max_length = 4096) {
  typename L::config c;
  c.hidden_size = C, c.intermediate_size = I, c.num_attention_heads = H, c.num_key_value_heads = Hkv;
  c.conv_kernel_size = K, c.time_step_rank = R, c.ssm_state_size = N, c.attention_window_size = window;
  c.num_meta_tokens = M, c.max_length = max_length;
  return c;
}

std::vector<std::pair<const char*, long>> shape_args(int threads) {
  return {{"B", 1}, {"T", T}, {"C", C}, {"I", I}, {"H", H}, {"Hkv", Hkv}, {"N", N}, {"K", K}, {"W", W}, {"M", M},
          {"threads", threads}};
}

// FLOPs, as counted for every row here: 2 per multiply-add of the projections (in_proj 3I + 2·Hkv·D
// rows, x_proj R + 2N, dt_proj I, out_proj C), 4·H·D per visible (query, key) pair (q·k and p·v),
// 2·K·I for the conv and 6·I·N for the scan (three multiply-adds per state element). Norms, RoPE,
// softmax, exp and silu are not counted.
double projection_flops(index_t rows) {
  return 2.0 * double(rows) * (double(C) * double(3 * I + 2 * Hkv * D) + double(I) * double(R + 2 * N) + double(R) * double(I));
}
double out_flops(index_t rows) { return 2.0 * double(rows) * double(I) * double(C); }
double ssm_flops(index_t rows) { return double(rows) * (2.0 * K * I + 6.0 * I * N); }
// Visible pairs of queries at positions first .. first + n − 1: W + 1 keys, the M meta tokens always.
double attention_flops(index_t first, index_t n, index_t window) {
  double pairs = 0;
  for (index_t p = first; p < first + n; ++p) {
    const index_t keys = window > 0 ? std::min(p + 1, window + 1) : p + 1;
    pairs += double(keys) + (window > 0 && p - window > 0 ? double(std::min(M, p - window)) : 0.0);
  }
  return pairs * 4.0 * double(H * D);
}
double layer_flops(index_t first, index_t rows, index_t window) {
  return projection_flops(rows) + out_flops(rows) + ssm_flops(rows) + attention_flops(first, rows, window);
}

// The block with float (WT = float) or bf16 weights, built once per shape.
template <class WT = float>
const layers::HymbaBlock<float, WT>& shared_layer(index_t window, index_t max_length) {
  using L = layers::HymbaBlock<float, WT>;
  static std::map<std::pair<index_t, index_t>, std::unique_ptr<L>> cache;
  auto& p = cache[{window, max_length}];
  if (!p) p = std::make_unique<L>(L::init(layer_config<L>(window, max_length), 1));
  return *p;
}

template <class WT, class P>
void prefill(const char* policy_name, P policy, int threads, bool snapshot) {
  policy.threads = threads;
  const std::string phase = snapshot ? "/prefill" : "/prefill_meta";
  const double flops = snapshot ? layer_flops(M, T, W) : layer_flops(0, M + T, W);
  add(with_weights<WT>(name(std::string("hymba/layer/") + policy_name + phase, shape_args(threads))), double(T), flops,
      [=](benchmark::State& state) {
        const auto& l = shared_layer<WT>(W, 4096);
        const auto x = uniform_tensor<float, 3>({1, T, C}, -1, 1, 2);
        tensor<float, 3> y({1, T, C});
        auto s = l.make_state(1);  // one state, restarted for each sequence (its storage reused)
        l.forward(policy, x.view(), y.view(), s);  // warm: the state's buffers and cache touched once
        for (auto _ : state) {
          l.restart(s, snapshot);
          l.forward(policy, x.view(), y.view(), s);
          benchmark::DoNotOptimize(y.data());
        }
      });
}

// The parts of one prefill (T rows after the snapshot), each alone.
void parts(int threads) {
  const auto args = shape_args(threads);
  const exec::chunkwise<64> policy{threads};
  add(name("hymba/parts/projections/prefill", args), double(T), projection_flops(T), [=](benchmark::State& state) {
    const auto& w = shared_layer(W, 4096).params();
    const auto x = uniform_tensor<float, 2>({T, C}, -1, 1, 2), u = uniform_tensor<float, 2>({T, I}, -1, 1, 3);
    tensor<float, 2> z({T, 3 * I + 2 * Hkv * D}), xd({T, R + 2 * N}), dt({T, I});
    for (auto _ : state) {
      w.in_proj(x.view(), z.view(), "bench", threads);
      w.x_proj(u.view(), xd.view(), "bench", threads);
      w.dt_proj(tensor_view<const float, 2>(xd.data(), {T, R}, {R + 2 * N, 1}), dt.view(), "bench", threads);
      benchmark::DoNotOptimize(dt.data());
    }
  });
  add(name("hymba/parts/attention/prefill", args), double(T), attention_flops(M, T, W), [=](benchmark::State& state) {
    const auto& l = shared_layer(W, 4096);
    auto q = uniform_tensor<float, 4>({1, T, H, D}, -1, 1, 4);
    auto k = uniform_tensor<float, 4>({1, T, Hkv, D}, -1, 1, 5);
    const auto v = uniform_tensor<float, 4>({1, T, Hkv, D}, -1, 1, 6);
    tensor<float, 4> o({1, T, H, D});
    const nn::rotary<float> rope{D, 10000, nn::rope_layout::half_split};
    std::vector<float> cs, sn;
    for (auto _ : state) {
      auto s = l.make_state(1);  // the meta tokens' keys from the snapshot
      rope.tables(M, T, cs, sn);
      rope.apply(q.view(), cs, sn, "bench", threads), rope.apply(k.view(), cs, sn, "bench", threads);
      kernels::attention::forward(policy, q, k, v, o, s.kv, {1 / std::sqrt(float(D))});
      benchmark::DoNotOptimize(o.data());
    }
  });
  add(name("hymba/parts/conv_scan/prefill", args), double(T), ssm_flops(T), [=](benchmark::State& state) {
    const auto& l = shared_layer(W, 4096);
    const auto& w = l.params();
    const auto xs = uniform_tensor<float, 3>({1, T, I}, -1, 1, 7), gate = uniform_tensor<float, 3>({1, T, I}, -1, 1, 8);
    auto xd = uniform_tensor<float, 2>({T, R + 2 * N}, -1, 1, 9);
    const auto delta = uniform_tensor<float, 3>({1, T, I}, -1, 1, 10);
    tensor<float, 2> A({I, N});
    for (index_t i = 0; i < A.size(); ++i) A.data()[i] = -std::exp(w.A_log.data()[i]);
    tensor<float, 3> u({1, T, I}), ys({1, T, I}), conv({1, I, K - 1}), ssm({1, I, N});
    for (auto _ : state) {
      w.conv1d(xs.view(), u.view(), conv.view(), "bench", threads);
      parallel_for(threads, T, [&](index_t r) {
        float* row = xd.view().ptr(r, 0);
        nn::rmsnorm_row(row, w.dt_norm.data(), row, R, 1e-6f);
        nn::rmsnorm_row(row + R, w.B_norm.data(), row + R, N, 1e-6f);
        nn::rmsnorm_row(row + R + N, w.C_norm.data(), row + R + N, N, 1e-6f);
      });
      const tensor_view<const float, 4> Bm(xd.data() + R, {1, T, 1, N}, {T * (R + 2 * N), R + 2 * N, N, 1});
      const tensor_view<const float, 4> Cm(xd.data() + R + N, {1, T, 1, N}, {T * (R + 2 * N), R + 2 * N, N, 1});
      const kernels::ssm::selective_scan::inputs<float> in{u, delta, A, Bm, Cm, w.D, gate, w.dt_bias};
      kernels::ssm::selective_scan::forward(policy, in, ys, ssm);
      benchmark::DoNotOptimize(ys.data());
    }
  });
  add(name("hymba/op/chunkwise/prefill", args), double(T), out_flops(T), [=](benchmark::State& state) {
    const auto& w = shared_layer(W, 4096).params();
    const auto attn = uniform_tensor<float, 3>({1, T, I}, -1, 1, 11), ssm = uniform_tensor<float, 3>({1, T, I}, -1, 1, 12);
    tensor<float, 3> y({1, T, I}), o({1, T, C});
    const auto w_out = nn::unpacked(w.out_proj.weight);
    const kernels::hymba::inputs<float> in{attn, ssm, w.norm1, w.norm2, w_out, *w.out_proj.bias};
    for (auto _ : state) {
      kernels::hymba::forward(policy, in, y.view(), o.view());
      benchmark::DoNotOptimize(o.data());
    }
  });
}

// Random keys and values for `cached` positions (what the cache holds does not change the time).
template <class Cache>
void fill(Cache& kv, index_t cached, index_t heads, index_t dim) {
  const index_t chunk = 1024;
  for (index_t t = 0; t < cached; t += chunk) {
    const index_t n = std::min(chunk, cached - t);
    const auto k = uniform_tensor<float, 4>({1, n, heads, dim}, -1, 1, unsigned(t + 1));
    kv.append(k.view(), k.view());
  }
}

std::string decode_name(const char* family, index_t cached, index_t window) {
  return std::string(family) + "/recurrent/decode/B:1/T:1/cache:" + std::to_string(cached) +
         "/window:" + (window > 0 ? std::to_string(window) : std::string("none")) + "/threads:1";
}

template <class WT>
void decode(index_t cached, index_t window) {
  const double flops = layer_flops(cached, 1, window);
  add(with_weights<WT>(decode_name("hymba/layer", cached, window)), 1, flops, [=](benchmark::State& state) {
    const auto& l = shared_layer<WT>(window, 16384 + 64);
    auto s = l.make_state_without_snapshot(1, {.capacity = cached + 64});
    s.meta_pending = false;
    fill(s.kv, cached, Hkv, D);
    s.position = cached;
    const auto x = uniform_tensor<float, 2>({1, C}, -1, 1, 3);
    tensor<float, 2> y({1, C});
    for (auto _ : state) {
      s.kv.truncate(cached), s.position = cached;
      l.step(exec::recurrent{}, x.view(), y.view(), s);
      benchmark::DoNotOptimize(y.data());
    }
    state.counters["state_bytes"] = double(s.bytes());
  });
}

void attention_decode(index_t cached) {
  using attention = layers::Attention<float>;
  const double flops = 2.0 * C * C * 2.5 + 4.0 * double(cached + 1) * C;  // q, o: C·C; k, v: C·C/4 each
  add(with_weights<float>(decode_name("hymba/attention_layer", cached, 0)), 1, flops, [=](benchmark::State& state) {
    attention::config c;
    c.hidden_size = C, c.num_heads = H, c.num_kv_heads = Hkv, c.max_length = cached + 64;
    const auto l = attention::init(c, 1);
    auto s = l.make_state(1);
    fill(s, cached, Hkv, C / H);
    const auto x = uniform_tensor<float, 2>({1, C}, -1, 1, 3);
    tensor<float, 2> y({1, C});
    for (auto _ : state) {
      s.truncate(cached);
      l.step(exec::recurrent{}, x.view(), y.view(), s);
      benchmark::DoNotOptimize(y.data());
    }
    const auto& d = s.dims();
    state.counters["state_bytes"] = double(d.batch * (d.key_heads * d.key_dim + d.value_heads * d.value_dim) * s.slots() * 4);
  });
}

// Hymba-1.5B-like: C=1600, I=3200, 25 heads (of 128), 5 KV heads, N=16, K=4, R=100, 32 layers of
// which 0, 15 and 31 global, the local ones sharing their cache in pairs (1-2, 3-4, ..., 29-30),
// W=1024, M=128. Attention-only: 32 Attention layers of width 1600, 25 heads of 64, 5 KV heads, a
// full cache. Each layer's state for one sequence of 8192 tokens (meta tokens included), measured
// by its State (make_state; one layer of each kind built, the others have the same state).
void stack() {
  const index_t ctx = 8192;
  add("hymba/stack/cache_bytes_per_token/context:8192/layers:32", 0, 0, [=](benchmark::State& state) {
    static const auto figures = [] {
      hymba::config c;
      c.hidden_size = 1600, c.intermediate_size = 3200, c.num_attention_heads = 25, c.num_key_value_heads = 5;
      c.conv_kernel_size = 4, c.time_step_rank = 100, c.ssm_state_size = 16, c.num_meta_tokens = 128;
      c.max_length = ctx;
      auto kind = [&](index_t window, bool reuse) {
        auto k = c;
        k.attention_window_size = window, k.kv_reuse = reuse;
        return double(hymba::init(k, 1).make_state(1, {.capacity = ctx}).bytes());
      };
      const double global = kind(0, false), local = kind(W, false), consumer = kind(W, true);
      const double hymba_bytes = 3 * global + 15 * local + 14 * consumer;
      layers::Attention<float>::config a;
      a.hidden_size = 1600, a.num_heads = 25, a.num_kv_heads = 5, a.max_length = ctx;
      const auto s = layers::Attention<float>::init(a, 1).make_state(1);
      const auto& d = s.dims();
      const double attn_bytes = 32.0 * double(d.batch * (d.key_heads * d.key_dim + d.value_heads * d.value_dim) * s.slots() * 4);
      return std::array<double, 3>{hymba_bytes / ctx, attn_bytes / ctx, attn_bytes / hymba_bytes};
    }();
    for (auto _ : state) benchmark::DoNotOptimize(figures.data());
    state.counters["hymba_bytes_per_token"] = figures[0];
    state.counters["attention_bytes_per_token"] = figures[1];
    state.counters["attention_over_hymba"] = figures[2];
  });
}

const bool registered = [] {
  for (int threads : {1, 2}) {
    prefill<float>("chunkwise", exec::chunkwise<64>{}, threads, true);
    prefill<bf16>("chunkwise", exec::chunkwise<64>{}, threads, true);
    parts(threads);
  }
  // No exec::parallel row: the parallel selective scan is quadratic in T (kernels/ssm; 25 s at
  // T = 2048 in one run), which would only time that kernel.
  prefill<float>("recurrent", exec::recurrent{}, 1, true);
  prefill<float>("chunkwise", exec::chunkwise<64>{}, 1, false);
  for (index_t cached : {1024, 16384}) {
    decode<float>(cached, W);
    decode<bf16>(cached, W);
    decode<float>(cached, 0);
    attention_decode(cached);
  }
  stack();
  return true;
}();

}  // namespace
}  // namespace seqmix::bench
