// Whole-model benchmarks (issue 20): models::model<float, W> of about 150M parameters, width 768,
// 12 blocks, vocabulary 32000, tied embedding, a SwiGLU MLP of 3072 (4C) in every block:
// - model/hybrid150m: Jamba-like, Mamba-2 and attention 5:1 (blocks 5 and 11 attention, the other
//   10 Mamba-2); 150,321,104 parameters;
// - model/attention150m: the same stack with every mixer the attention block (same width, depth,
//   MLP and attention config); 128,404,224 parameters.
// Mamba-2: d_state 128, headdim 64, expand 2 (d_inner 1536, 24 heads, one group), d_conv 4, the
// H24 P64 N128 shape of the SSD rule in policy/automatic.hpp. Attention: 12 heads of 64, 4 KV
// heads (grouped-query), RoPE, no biases.
// Parameters per block (from the weight tables; the `params` counter counts them there):
//   Mamba-2 mixer 3,764,552 (in_proj 3352×768, out_proj 768×1536, conv 1792×4 + bias, norm 1536,
//   dt_bias / A_log / D 3×24); attention mixer 1,572,864 (q, o 768×768; k, v 256×768); MLP
//   7,077,888 (gate, up 3072×768; down 768×3072); two norms 1536; embedding 24,576,000; final
//   norm 768.
//
// Rows (names read by scripts):
// - model/<name>/prefill/B:1/T:2048/weights:<f32|bf16>/threads:<1|2> (bf16: the hybrid only, its
//   embedding, head, MLPs and mixer projections in bf16, as model<float, bf16> loads a bf16 checkpoint): prefill() of 2048 tokens into a fresh sequence
//   with exec::automatic (what seqmix-run uses: Mamba-2's SSD as chunkwise<32>, attention as
//   chunkwise<64>). The state is made outside the timing (make_state zero-fills the KV slots); the
//   layers' scratch and the MLP buffers are allocated inside prefill(), as for every new sequence.
// - model/<name>/decode/B:1/T:1/context:2048/weights:<f32|bf16>/threads:<1|2>: one step() after 2048 prefilled
//   tokens. The prefilled state is built once per model (untimed, shared by both thread counts);
//   each row steps a copy of it, and every 16 steps the copy is made again from the prefilled one
//   with the timer paused, so the timed steps see 2048 .. 2063 cached tokens (the context does not
//   grow with the iteration count). The first step after each copy also allocates the layers'
//   small scratch and the MLP buffers (a copy does not take them; a few tens of KiB).
//
// Counters:
// - items_per_second: tokens/s;
// - GFLOPS: 2 per multiply-add of every block's projections (Mamba-2 in_proj and out_proj;
//   attention q, k, v, o; the MLP's gate, up, down) per token; 2 · V · C for the LM head, once per
//   call (prefill computes the logits of the last token only); Mamba-2: 4 · H · P · N per token for
//   the SSD (x ⊗ B into the state, C · h out; as bench/ssm.cpp) and 2 · d_conv · conv_dim for the
//   conv; attention: 4 · Hq · D per visible (query, key) pair (q · k and p · v, as bench/attention.cpp),
//   T(T+1)/2 pairs in a prefill and context + 1 in a step. Not counted: the norms, RoPE, softmax,
//   the gates, silu, exponentials, the embedding lookup. Per token that is 251.2 MFLOP of
//   projections for the hybrid (207.6 for attention-only), 0.80 MFLOP of SSD and conv per Mamba-2
//   layer (8.0 for the hybrid's 10), 3.1 MFLOP per attention layer at the 1024.5 average keys of a
//   2048-token prefill, 49.2 MFLOP for the head (a prefill: 543.9 GFLOP hybrid, 502.6 attention-only);
// - params: parameters of the model (tied: the embedding counted once);
// - weight_bytes (decode): the weights one step reads, sizeof(W) · params (with bf16 the norms,
//   conv, dt/A/D parameters stay float: under 0.1% of the parameters, not counted apart; every block's
//   weights, and the whole embedding as the tied LM head; the token's embedding row, read before
//   the blocks too, is not counted again);
//   bytes_per_second = weight_bytes / step time, to read against machine/triad/DRAM/float/... of
//   the same run (the KV rows and recurrent states a step also reads are state_read_bytes, not in
//   bytes_per_second);
// - state_read_bytes (decode): the states one step reads at 2048 tokens of context: Mamba-2's conv
//   and SSD states, the attention layers' 2048 KV rows (models/state_bytes.hpp of a state made for
//   exactly 2048 tokens);
// - state_bytes_8k (decode rows): models::state_bytes of make_state(8192): the states one
//   sequence holds at 8192 tokens of context (KV slots as allocated, 8192 per attention layer;
//   no scratch, no MLP buffers).
#include <seqmix/models/model.hpp>
#include <seqmix/models/state_bytes.hpp>

#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "common.hpp"

namespace seqmix::bench {
namespace {

template <class W = float>
using model_t = models::model<float, W>;
using block_t = models::block_config<float>;
using mamba2 = layers::Mamba2<float>;
using attention = layers::Attention<float>;

constexpr index_t V = 32000, C = 768, I = 3072, depth = 12, T = 2048, context = 2048, refork = 16, context_8k = 8192;

block_t mamba2_block() {
  mamba2::config c;
  c.hidden_size = C, c.d_state = 128, c.headdim = 64, c.expand = 2, c.d_conv = 4;
  return block_t::of<mamba2>(c, I);
}
block_t attention_block() {
  attention::config c;
  c.hidden_size = C, c.num_heads = 12, c.num_kv_heads = 4, c.max_length = context_8k;
  return block_t::of<attention>(c, I);
}

// hybrid: blocks 5 and 11 (0-based) attention, the other 10 Mamba-2; otherwise every block attention.
model_t<>::config make_config(bool hybrid) {
  model_t<>::config cfg;
  cfg.vocab_size = V, cfg.hidden_size = C, cfg.tie_word_embeddings = true;
  for (index_t i = 0; i < depth; ++i) cfg.layers.push_back(!hybrid || i % 6 == 5 ? attention_block() : mamba2_block());
  return cfg;
}

// Elements of every weight a table lists as present.
struct count_weights {
  double* n;
  template <std::size_t R, class Member>
  void operator()(const layers::weight_spec<R>& s, Member&) const {
    if (!s.present) return;
    double p = 1;
    for (index_t e : s.shape) p *= double(e);
    *n += p;
  }
};

double parameters(const model_t<>::config& cfg) {
  double n = 0;
  model_t<>::weights top;
  model_t<>::each_weight(cfg, top, count_weights{&n});
  for (const auto& b : cfg.layers) {
    models::block_weights<float> bw;
    models::block_weights<float>::each_weight(cfg.hidden_size, b.mlp_size, bw, count_weights{&n});
    std::visit(
        [&](const auto& c) {
          using L = typename std::decay_t<decltype(c)>::layer;
          typename L::weights w;
          L::each_weight(c.value, w, count_weights{&n});
        },
        b.mixer);
  }
  return n;
}

// FLOPs of one call of `tokens` tokens after `cached` ones (the counting above).
double model_flops(const model_t<>::config& cfg, index_t cached, index_t tokens) {
  const double n = double(tokens);
  double f = 2.0 * double(cfg.vocab_size) * double(cfg.hidden_size);  // head, last token only
  for (const auto& b : cfg.layers) {
    f += n * 2.0 * 3.0 * double(cfg.hidden_size) * double(b.mlp_size);
    if (const auto* m = std::get_if<models::config_of<mamba2>>(&b.mixer)) {
      const auto& c = m->value;
      const double proj = double(c.d_in_proj()) * double(c.hidden_size) + double(c.hidden_size) * double(c.d_inner());
      f += n * (2.0 * proj + 4.0 * double(c.nheads() * c.headdim * c.d_state) + 2.0 * double(c.d_conv * c.conv_dim()));
    } else if (const auto* a = std::get_if<models::config_of<attention>>(&b.mixer)) {
      const auto& c = a->value;
      const double q = double(c.num_heads * c.dim()), kv = double(c.kv_heads() * c.dim());
      const double proj = double(c.hidden_size) * (2.0 * q + 2.0 * kv);
      // keys seen by the queries at positions cached .. cached + tokens − 1
      const double pairs = n * double(cached) + n * (n + 1) / 2;
      f += n * 2.0 * proj + 4.0 * q * pairs;
    }
  }
  return f;
}

std::vector<models::token_id> prompt(index_t n) {
  std::vector<models::token_id> t(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) t[std::size_t(i)] = models::token_id((7 + 31 * i) % V);
  return t;
}

// A model built once (on the first row that needs it), its prefilled sequence once (decode rows).
template <class W>
struct fixture {
  explicit fixture(model_t<>::config c) : cfg(std::move(c)) {}
  model_t<>::config cfg;
  std::optional<model_t<W>> m;
  std::optional<typename model_t<W>::State> prefilled;
  std::once_flag built, filled;

  const model_t<W>& get() {
    std::call_once(built, [&] { m.emplace(model_t<W>::init(cfg, 1)); });
    return *m;
  }
  // models::state_bytes of a fresh state with KV slots for `capacity` tokens (a multiple of 64:
  // as many slots as tokens). At capacity = context: what a step at that context reads besides
  // the weights (Mamba-2's conv and SSD states, every attention layer's KV rows of the context).
  double state_bytes(index_t capacity) {
    const auto& mm = get();
    return double(models::state_bytes(mm, mm.make_state(capacity)));
  }
  const typename model_t<W>::State& context_state() {
    const auto& mm = get();
    std::call_once(filled, [&] {
      auto s = mm.make_state(context + refork);
      mm.prefill(exec::automatic{.threads = 2}, prompt(context), s);
      prefilled.emplace(std::move(s));
    });
    return *prefilled;
  }
};

template <class W>
fixture<W>& shared(bool hybrid) {
  static fixture<W> h{make_config(true)}, a{make_config(false)};
  return hybrid ? h : a;
}

template <class W>
void prefill_row(const char* model_name, bool hybrid, int threads) {
  const auto cfg = make_config(hybrid);
  const double params = parameters(cfg);
  add(with_weights<W>(name(std::string("model/") + model_name + "/prefill", {{"B", 1}, {"T", T}, {"threads", threads}})),
      double(T), model_flops(cfg, 0, T), [=](benchmark::State& state) {
        const auto& m = shared<W>(hybrid).get();
        const auto tokens = prompt(T);
        const exec::automatic policy{.threads = threads};
        std::optional<typename model_t<W>::State> s;
        for (auto _ : state) {
          state.PauseTiming();  // the last sequence released and a fresh one made, untimed
          s.reset();
          s.emplace(m.make_state(T));
          state.ResumeTiming();
          const auto logits = m.prefill(policy, tokens, *s);
          benchmark::DoNotOptimize(logits.data());
        }
        state.counters["params"] = params;
      });
}

template <class W>
void decode_row(const char* model_name, bool hybrid, int threads) {
  const auto cfg = make_config(hybrid);
  const double params = parameters(cfg);
  // the timed steps see context + 0 .. refork − 1 cached tokens: counted at context + 7
  const double flops = model_flops(cfg, context + (refork - 1) / 2, 1);
  add(with_weights<W>(name(std::string("model/") + model_name + "/decode",
                           {{"B", 1}, {"T", 1}, {"context", context}, {"threads", threads}})),
      1, flops, [=](benchmark::State& state) {
        auto& f = shared<W>(hybrid);
        const auto& m = f.get();
        const auto& base = f.context_state();
        const exec::recurrent policy{.threads = threads};
        auto s = base;
        index_t steps = 0;
        for (auto _ : state) {
          if (steps == refork) {
            state.PauseTiming();
            s = base;
            steps = 0;
            state.ResumeTiming();
          }
          const auto logits = m.step(policy, models::token_id(42), s);
          benchmark::DoNotOptimize(logits.data());
          ++steps;
        }
        const double weight_bytes = double(sizeof(W)) * params;
        state.SetBytesProcessed(int64_t(weight_bytes * double(state.iterations())));
        state.counters["params"] = params;
        state.counters["weight_bytes"] = weight_bytes;
        state.counters["state_read_bytes"] = f.state_bytes(context);
        state.counters["state_bytes_8k"] = f.state_bytes(context_8k);
      });
}

const bool registered = [] {
  for (const auto& [model_name, hybrid] : {std::pair{"hybrid150m", true}, std::pair{"attention150m", false}}) {
    for (int threads : {1, 2}) prefill_row<float>(model_name, hybrid, threads);
    for (int threads : {1, 2}) decode_row<float>(model_name, hybrid, threads);
  }
  // The hybrid with bf16 weights beside its float rows: half the bytes a step reads.
  for (int threads : {1, 2}) prefill_row<bf16>("hybrid150m", true, threads);
  for (int threads : {1, 2}) decode_row<bf16>("hybrid150m", true, threads);
  return true;
}();

}  // namespace
}  // namespace seqmix::bench
