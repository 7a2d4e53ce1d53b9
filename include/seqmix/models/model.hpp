// seqmix::models::model: a language model made of any of the library's layers — token embedding,
// blocks (pre-norm residual around a sequence mixer, optional SwiGLU MLP), final RMSNorm, LM head
// (tied to the embedding or not) — with upstream-style weight names:
//   model.embed_tokens.weight [V, C]            model.norm.weight [C]        lm_head.weight [V, C]
//   model.layers.N.input_layernorm.weight       model.layers.N.post_attention_layernorm.weight
//   model.layers.N.<mixer prefix>.<the layer's own names>
//   model.layers.N.mlp.{gate_proj,up_proj,down_proj}.weight
// init/load/save as the layers do, so a random model round-trips through safetensors bit for bit.
// docs/models.md.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../error.hpp"
#include "../io/safetensors.hpp"
#include "../io/weights.hpp"
#include "../layers/weight_table.hpp"
#include "../policy/execution.hpp"
#include "../policy/threads.hpp"
#include "../simd/vec.hpp"
#include "block.hpp"
#include "config.hpp"
#include "families.hpp"
#include "sampler.hpp"
#include "state.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::models {

/// Instrumentation of a forward pass; everything is off when left empty (no clock is read, nothing
/// is copied).
template <class T>
struct run_options {
  /// One entry per block; each block's wall time (norms, mixer, MLP) is added to its entry.
  std::span<double> block_seconds;
  /// Parts not run: the hidden states pass them unchanged (a skipped mixer's state does not
  /// advance). What the config `cfg.without(skip)` computes, and refused as that would be.
  std::span<const layer_part> skip;
  /// Called after each part that ran (part::block: after the whole block, also when all of it was
  /// skipped) with the hidden states of all tokens [N, C] before and after it.
  std::function<void(layer_part, tensor_view<const T, 2> before, tensor_view<const T, 2> after)> observe;
};

/// T: the activations, states and norms; W: the weights of the embedding, the head, the MLPs and
/// the mixers' projections — T, or bf16 with T = float (a bf16 checkpoint loads without a float
/// copy; the config is the same).
template <class T = float, class W = T>
class model {
 public:
  using value_type = T;
  using weight_type = W;
  using config = model_config<T>;
  using State = model_state<T, W>;
  using mixer_type = typename families_with_t<T, W>::mixer;

  /// Weights outside the blocks; head is empty when tied to the embedding. Both are projections
  /// (packed once, as every projection's weights): the head's product streams its panels, and
  /// a token's embedding row is read out of them.
  struct weights {
    nn::linear<T, W> embed;  // model.embed_tokens.weight [V, C] (no bias)
    tensor<T, 1> norm;
    nn::linear<T, W> head;   // lm_head.weight [V, C] (no bias)
  };

  /// A model with reproducible random weights: the top-level weights from `seed`, block N's (its
  /// norms, MLP and mixer) from a seed derived from `seed` and "model.layers.N.".
  static model init(const config& cfg, std::uint64_t seed) {
    cfg.validate();
    weights w;
    each_weight(cfg, w, layers::weight_initializer<T>{seed});
    std::vector<block> blocks;
    for (std::size_t i = 0; i < cfg.layers.size(); ++i) {
      const std::uint64_t s = layers::detail::weight_seed(seed, block_prefix(cfg, i));
      blocks.push_back(make_block(cfg, i, layers::weight_initializer<T>{s},
                                  [&](auto tag, const auto& c) { return decltype(tag)::type::init(c, s); }));
    }
    return model(cfg, std::move(w), std::move(blocks));
  }

  /// Loads every weight by its upstream name; a missing weight or a wrong shape raises
  /// seqmix::error naming the layer index, the family and the weight.
  static model load(const io::safetensors& file, const config& cfg) {
    cfg.validate();
    weights w;
    const io::weight_source top(file, "", "model");
    each_weight(cfg, w, layers::weight_loader<T>{top});
    std::vector<block> blocks;
    for (std::size_t i = 0; i < cfg.layers.size(); ++i) {
      const io::weight_source src(file, block_prefix(cfg, i), cfg.who(i));
      blocks.push_back(make_block(cfg, i, layers::weight_loader<T>{src}, [&](auto tag, const auto& c) {
        return decltype(tag)::type::load(file, c, block_prefix(cfg, i) + cfg.layers[i].mixer_prefix() + ".");
      }));
    }
    return model(cfg, std::move(w), std::move(blocks));
  }

  /// Writes every weight under its upstream name; load() of the result is this model bit for bit.
  void save(io::safetensors_writer& out) const {
    const std::string none;
    each_weight(cfg_, w_, layers::weight_saver<T>{out, none});
    for (std::size_t i = 0; i < blocks_.size(); ++i) {
      const std::string prefix = block_prefix(cfg_, i);
      block_weights<T, W>::each_weight(cfg_.hidden_size, cfg_.layers[i].mlp_size, blocks_[i].w, layers::weight_saver<T>{out, prefix});
      if (blocks_[i].mixer)
        std::visit([&](const auto& m) { m.save(out, prefix + cfg_.layers[i].mixer_prefix() + "."); }, *blocks_[i].mixer);
    }
  }

  /// A fresh sequence; `capacity`: KV-cache tokens of the attention layers (0: their config's max_length).
  State make_state(index_t capacity = 0) const {
    State s;
    s.capacity_ = capacity;
    for (const auto& b : blocks_) {
      s.layers_.emplace_back();
      if (b.mixer)
        std::visit(
            [&](const auto& m) {
              using L = std::decay_t<decltype(m)>;
              s.layers_.back().emplace(std::in_place_type<state_of<L>>,
                                       state_of<L>{m.make_state(1, {.capacity = capacity, .cross = s.cross_.get()})});
            },
            *b.mixer);
    }
    return s;
  }

  /// Starts `s` again as a fresh sequence with the same capacity (new layer states: the layers'
  /// in-place restarts that keep the KV storage are not used yet).
  void reset(State& s) const { s = make_state(s.capacity_); }

  /// Runs `tokens` through the model after what `s` has seen; returns the logits [vocab] of the last
  /// one. After an exception the state is unusable: reset() it. `block_seconds` (profiling, off
  /// when empty: no clock is read) has one entry per block, and each block's wall time (norms,
  /// mixer, MLP) is added to its entry.
  template <exec::policy P>
  tensor<T, 1> prefill(const P& policy, std::span<const token_id> tokens, State& s,
                       std::span<double> block_seconds = {}) const {
    run_options<T> options;
    options.block_seconds = block_seconds;
    return prefill(policy, tokens, s, options);
  }
  /// prefill() with instrumentation: skipped parts, an observer of the hidden states.
  template <exec::policy P>
  tensor<T, 1> prefill(const P& policy, std::span<const token_id> tokens, State& s, const run_options<T>& options) const {
    exec::check(policy, "model");
    require(!tokens.empty(), "model", "prefill needs at least one token");
    const index_t ends[] = {0, index_t(tokens.size())};
    return logits(policy, run(policy, tokens, ends, std::span<State>(&s, 1), options)).first_row();
  }

  /// A packed batch of B sequences (padding-free, as engines pass variable-length batches):
  /// sequence b is tokens[offsets[b], offsets[b+1]), continuing states[b]. Returns the logits
  /// [B, vocab] of each sequence's last token, as B prefill() calls would: the embedding, norms and
  /// MLPs run over all N tokens at once (one GEMM per projection), each mixer over each sequence.
  template <exec::policy P>
  tensor<T, 2> prefill_packed(const P& policy, std::span<const token_id> tokens, std::span<const index_t> offsets,
                              std::span<State> states, const run_options<T>& options = {}) const {
    exec::check(policy, "model");
    return logits(policy, run(policy, tokens, offsets, states, options)).all;
  }

  /// One decoding step: `token` after what `s` has seen; returns its logits [vocab]. The layers'
  /// recurrent kernels with the policy's threads (as layer.step()); `block_seconds` as in prefill().
  template <exec::policy P>
  tensor<T, 1> step(const P& policy, token_id token, State& s, std::span<double> block_seconds = {}) const {
    run_options<T> options;
    options.block_seconds = block_seconds;
    return step(policy, token, s, options);
  }
  template <exec::policy P>
  tensor<T, 1> step(const P& policy, token_id token, State& s, const run_options<T>& options) const {
    exec::check(policy, "model");
    const index_t ends[] = {0, 1};
    const auto r = exec::rebind<exec::recurrent>(policy);
    return logits(r, run(r, std::span<const token_id>(&token, 1), ends, std::span<State>(&s, 1), options)).first_row();
  }

  /// −Σ log p(tokens[t+1] | tokens[..t]) over the L−1 predicted tokens, after what `s` has seen
  /// (natural log, accumulated in double); the perplexity is exp(nll / (L−1)). Every token's
  /// logits are computed (L × vocab), in blocks of 64 rows.
  template <exec::policy P>
  double negative_log_likelihood(const P& policy, std::span<const token_id> tokens, State& s,
                                 const run_options<T>& options = {}) const {
    exec::check(policy, "model");
    const pool_scope scope(policy);  // the policy's pool runs the blocks and the head
    require(tokens.size() >= 2, "model", "a log-likelihood needs at least two tokens");
    const index_t L = index_t(tokens.size()), C = cfg_.hidden_size, V = cfg_.vocab_size, rows = 64;
    const index_t ends[] = {0, L};
    const auto x = run(policy, tokens, ends, std::span<State>(&s, 1), options);
    tensor<T, 2> hn({std::min(rows, L), C}), z({std::min(rows, L), V});
    double nll = 0;
    for (index_t r0 = 0; r0 + 1 < L; r0 += rows) {
      const index_t n = std::min(rows, L - 1 - r0);
      const auto hv = hn.view().subrange(0, 0, n), zv = z.view().subrange(0, 0, n);
      rmsnorm_rows<T>(x.rows.subrange(0, r0, n), w_.norm, hv, cfg_.rms_norm_eps);
      head()(hv, zv, "model", policy.threads);
      for (index_t r = 0; r < n; ++r) {
        const T* zr = zv.ptr(r, 0);
        const double top = *std::max_element(zr, zr + V);
        double sum = 0;
        for (index_t v = 0; v < V; ++v) sum += std::exp(double(zr[v]) - top);
        nll += top + std::log(sum) - double(zr[tokens[std::size_t(r0 + r + 1)]]);
      }
    }
    return nll;
  }

  const config& cfg() const { return cfg_; }
  index_t hidden_size() const { return cfg_.hidden_size; }
  index_t vocab_size() const { return cfg_.vocab_size; }
  std::size_t num_layers() const { return blocks_.size(); }
  /// Block i's mixer; nullptr when its config drops it.
  const mixer_type* mixer(std::size_t i) const { return blocks_.at(i).mixer ? &*blocks_.at(i).mixer : nullptr; }
  const weights& params() const { return w_; }

  /// The top-level weight table (full names).
  template <class Weights, class F>
  static void each_weight(const config& c, Weights& w, F&& f) {
    using layers::init_rule, layers::weight_spec;
    const index_t V = c.vocab_size, C = c.hidden_size;
    // Embedding and head ±1/√C: a random model's logits are O(1), not peaked at the input token.
    f(weight_spec<2>{"model.embed_tokens.weight", {V, C}}, w.embed.weight);
    f(weight_spec<1>{"model.norm.weight", {C}, init_rule::ones()}, w.norm);
    f(weight_spec<2>{"lm_head.weight", {V, C}, {}, !c.tie_word_embeddings}, w.head.weight);
  }

 private:
  struct block {
    std::optional<mixer_type> mixer;  // none when the config drops it
    block_weights<T, W> w;
  };

  // "model.layers.N." with N the block's weights index.
  static std::string block_prefix(const config& cfg, std::size_t i) {
    return "model.layers." + std::to_string(cfg.layers[i].weights_index(i)) + ".";
  }

  // Block i: its norms and MLP through `visitor`, its mixer from make(layer type tag, layer config);
  // errors of the layer get the block's name in front.
  template <class V, class Make>
  static block make_block(const config& cfg, std::size_t i, const V& visitor, Make&& make) {
    const auto& bc = cfg.layers[i];
    block_weights<T, W> w;
    block_weights<T, W>::each_weight(cfg.hidden_size, bc.mlp_size, w, visitor);
    if (bc.drop_mixer) return block{std::nullopt, std::move(w)};
    return std::visit(
        [&](const auto& c) {
          using L = with_weights_t<typename std::decay_t<decltype(c)>::layer, W>;
          try {
            return block{mixer_type(std::in_place_type<L>, make(std::type_identity<L>{}, layers::config_cast<typename L::config>(c.value))),
                         std::move(w)};
          } catch (const error& e) {
            throw error(cfg.who(i) + ": " + e.what());
          }
        },
        bc.mixer);
  }

  model(const config& cfg, weights w, std::vector<block> blocks) : cfg_(cfg), w_(std::move(w)), blocks_(std::move(blocks)) {
    // Hymba kv_reuse blocks take their meta-token snapshot from the block whose cache they attend.
    using hymba = layers::HymbaBlock<T, W>;
    std::optional<std::size_t> producer;
    for (std::size_t i = 0; i < blocks_.size(); ++i) {
      auto* h = blocks_[i].mixer ? std::get_if<hymba>(&*blocks_[i].mixer) : nullptr;
      if (!h) continue;
      if (!h->cfg().kv_reuse) producer = i;
      else if (h->cfg().prepends() && !h->has_snapshot() && producer) {
        try {
          h->take_snapshot_from(std::get<hymba>(*blocks_[*producer].mixer));
        } catch (const error& e) {
          throw error(cfg_.who(i) + ": " + e.what());
        }
      }
    }
  }

  const nn::linear<T, W>& head() const { return cfg_.tie_word_embeddings ? w_.embed : w_.head; }

  // The packed tokens (sequence b: tokens[offsets[b], offsets[b+1]) after states[b]) through every
  // block; returns the final hidden rows [N, C] (in states[0]'s buffers) and the sequences' ends.
  struct hidden {
    tensor_view<const T, 2> rows;
    std::span<const index_t> offsets;
  };
  template <exec::policy P>
  hidden run(const P& policy, std::span<const token_id> tokens, std::span<const index_t> offsets,
             std::span<State> states, const run_options<T>& opt) const {
    const pool_scope scope(policy);  // the policy's pool runs the MLPs too, not only the mixers
    const index_t N = index_t(tokens.size()), C = cfg_.hidden_size;
    const std::size_t B = states.size();
    require(B > 0 && offsets.size() == B + 1, "model",
            "a packed batch needs one offset per sequence and one more (" + std::to_string(B + 1) + "), not " +
                std::to_string(offsets.size()));
    require(offsets.front() == 0 && offsets.back() == N, "model",
            "the offsets must run from 0 to the token count " + std::to_string(N) + ", not " + std::to_string(offsets.front()) +
                " to " + std::to_string(offsets.back()));
    for (std::size_t b = 0; b < B; ++b) {
      require(offsets[b] < offsets[b + 1], "model", "sequence " + std::to_string(b) + " of the batch has no tokens");
      require(states[b].layers_.size() == blocks_.size(), "model", "the state was made by a model of another depth");
    }
    require(opt.block_seconds.empty() || opt.block_seconds.size() == blocks_.size(), "model",
            "block_seconds needs one entry per block (" + std::to_string(blocks_.size()) + "), not " +
                std::to_string(opt.block_seconds.size()));
    if (!opt.skip.empty()) (void)cfg_.without(opt.skip);  // refuses what a config could not drop
    const auto skipped = [&](std::size_t i, part p) {
      return std::ranges::find(opt.skip, layer_part{i, p}) != opt.skip.end() ||
             std::ranges::find(opt.skip, layer_part{i, part::block}) != opt.skip.end();
    };
    using clock = std::chrono::steady_clock;
    const bool observing = bool(opt.observe);
    // x the residual stream, h its normed copy, y a part's output; before/start copies for the observer.
    T* buf = states[0].buffers_.get(N * C * (observing ? 5 : 3));
    const auto rows = [&](int k) { return tensor_view<T, 2>(buf + k * N * C, {N, C}); };
    const auto x = rows(0), h = rows(1), y = rows(2);
    for (index_t t = 0; t < N; ++t) {
      const token_id id = tokens[std::size_t(t)];
      require(id >= 0 && id < cfg_.vocab_size, "model",
              "token " + std::to_string(id) + " at position " + std::to_string(t) + " is outside the vocabulary [0, " +
                  std::to_string(cfg_.vocab_size) + ")");
      w_.embed.weight.row(index_t(id), x.ptr(t, 0));  // (widened from bf16)
    }
    // x += y, shown to the observer as part p of block i.
    const auto add = [&](std::size_t i, part p) {
      if (observing) std::copy_n(x.data(), N * C, rows(3).data());
      simd::transform(x.data(), y.data(), x.data(), N * C, [](auto a, auto b) { return a + b; });
      if (observing) opt.observe({i, p}, rows(3), x);
    };
    for (std::size_t i = 0; i < blocks_.size(); ++i) {
      const block& b = blocks_[i];
      const auto t0 = opt.block_seconds.empty() ? clock::time_point{} : clock::now();
      if (observing) std::copy_n(x.data(), N * C, rows(4).data());
      if (b.mixer && !skipped(i, part::mixer)) {
        rmsnorm_rows<T>(x, b.w.input_norm, h, cfg_.rms_norm_eps);
        std::visit(
            [&](const auto& m) {
              using L = std::decay_t<decltype(m)>;
              for (std::size_t q = 0; q < B; ++q) {
                auto& slot = states[q].layers_[i];
                auto* st = slot ? std::get_if<state_of<L>>(&*slot) : nullptr;
                require(st != nullptr, cfg_.who(i), "the state was made by a model with another family here");
                const index_t first = offsets[q], n = offsets[q + 1] - first;
                try {
                  m.forward(policy, tensor_view<const T, 3>(h.subrange(0, first, n).template reshape<3>({1, n, C})),
                            y.subrange(0, first, n).template reshape<3>({1, n, C}), st->value);
                } catch (const error& e) {  // e.g. a KV cache full: say which block
                  throw error(cfg_.who(i) + ": " + e.what());
                }
              }
            },
            *b.mixer);
        add(i, part::mixer);
      }
      if (cfg_.layers[i].mlp_size > 0 && !skipped(i, part::mlp)) {
        rmsnorm_rows<T>(x, b.w.post_norm, h, cfg_.rms_norm_eps);
        swiglu(b.w, tensor_view<const T, 2>(h), y, states[0].mlp_, policy.threads, "model: MLP");
        add(i, part::mlp);
      }
      if (observing) opt.observe({i, part::block}, rows(4), x);
      if (!opt.block_seconds.empty()) opt.block_seconds[i] += std::chrono::duration<double>(clock::now() - t0).count();
    }
    for (std::size_t q = 0; q < B; ++q) states[q].position_ += offsets[q + 1] - offsets[q];
    return {x, offsets};
  }

  // Final norm and LM head of each sequence's last row: logits [B, V]; the vocabulary split over
  // the policy's threads when the head is large enough to repay them.
  struct last_logits {
    tensor<T, 2> all;
    tensor<T, 1> first_row() const {
      tensor<T, 1> r({all.extent(1)});
      std::copy_n(all.data(), r.size(), r.data());
      return r;
    }
  };
  template <exec::policy P>
  last_logits logits(const P& policy, const hidden& x) const {
    const index_t C = cfg_.hidden_size, V = cfg_.vocab_size, B = index_t(x.offsets.size()) - 1;
    tensor<T, 2> hn({B, C}), out({B, V});
    for (index_t b = 0; b < B; ++b)
      nn::rmsnorm_row(x.rows.ptr(x.offsets[std::size_t(b) + 1] - 1, 0), w_.norm.data(), hn.view().ptr(b, 0), C, T(cfg_.rms_norm_eps));
    const pool_scope scope(policy);
    head()(hn.view(), out.view(), "model", policy.threads);
    return {std::move(out)};
  }

  config cfg_;
  weights w_;
  std::vector<block> blocks_;
};

}  // namespace seqmix::models
