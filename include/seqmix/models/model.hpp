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

#include <chrono>
#include <cstdint>
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

template <class T = float>
class model {
 public:
  using value_type = T;
  using config = model_config<T>;
  using State = model_state<T>;
  using mixer_type = typename families<T>::mixer;

  /// Weights outside the blocks; head is empty when tied to the embedding.
  struct weights {
    tensor<T, 2> embed;
    tensor<T, 1> norm;
    nn::linear<T> head;
  };

  /// A model with reproducible random weights: the top-level weights from `seed`, block N's (its
  /// norms, MLP and mixer) from a seed derived from `seed` and "model.layers.N.".
  static model init(const config& cfg, std::uint64_t seed) {
    cfg.validate();
    weights w;
    each_weight(cfg, w, layers::weight_initializer<T>{seed});
    std::vector<block> blocks;
    for (std::size_t i = 0; i < cfg.layers.size(); ++i) {
      const std::uint64_t s = layers::detail::weight_seed(seed, block_prefix(i));
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
      const io::weight_source src(file, block_prefix(i), cfg.who(i));
      blocks.push_back(make_block(cfg, i, layers::weight_loader<T>{src}, [&](auto tag, const auto& c) {
        return decltype(tag)::type::load(file, c, block_prefix(i) + cfg.layers[i].mixer_prefix() + ".");
      }));
    }
    return model(cfg, std::move(w), std::move(blocks));
  }

  /// Writes every weight under its upstream name; load() of the result is this model bit for bit.
  void save(io::safetensors_writer& out) const {
    const std::string none;
    each_weight(cfg_, w_, layers::weight_saver<T>{out, none});
    for (std::size_t i = 0; i < blocks_.size(); ++i) {
      const std::string prefix = block_prefix(i);
      block_weights<T>::each_weight(cfg_.hidden_size, cfg_.layers[i].mlp_size, blocks_[i].w, layers::weight_saver<T>{out, prefix});
      std::visit([&](const auto& m) { m.save(out, prefix + cfg_.layers[i].mixer_prefix() + "."); }, blocks_[i].mixer);
    }
  }

  /// A fresh sequence; `capacity`: KV-cache tokens of the attention layers (0: their config's max_length).
  State make_state(index_t capacity = 0) const {
    State s;
    s.capacity_ = capacity;
    for (const auto& b : blocks_)
      std::visit(
          [&](const auto& m) {
            using L = std::decay_t<decltype(m)>;
            s.layers_.emplace_back(std::in_place_type<state_of<L>>,
                                   state_of<L>{m.make_state(1, {.capacity = capacity, .cross = s.cross_.get()})});
          },
          b.mixer);
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
    exec::check(policy, "model");
    require(!tokens.empty(), "model", "prefill needs at least one token");
    return run(policy, tokens, s, block_seconds);
  }

  /// One decoding step: `token` after what `s` has seen; returns its logits [vocab]. The layers'
  /// recurrent kernels with the policy's threads (as layer.step()); `block_seconds` as in prefill().
  template <exec::policy P>
  tensor<T, 1> step(const P& policy, token_id token, State& s, std::span<double> block_seconds = {}) const {
    exec::check(policy, "model");
    return run(exec::rebind<exec::recurrent>(policy), std::span<const token_id>(&token, 1), s, block_seconds);
  }

  const config& cfg() const { return cfg_; }
  index_t hidden_size() const { return cfg_.hidden_size; }
  index_t vocab_size() const { return cfg_.vocab_size; }
  std::size_t num_layers() const { return blocks_.size(); }
  const mixer_type& mixer(std::size_t i) const { return blocks_.at(i).mixer; }
  const weights& params() const { return w_; }

  /// The top-level weight table (full names).
  template <class W, class F>
  static void each_weight(const config& c, W& w, F&& f) {
    using layers::init_rule, layers::weight_spec;
    const index_t V = c.vocab_size, C = c.hidden_size;
    // Embedding and head ±1/√C: a random model's logits are O(1), not peaked at the input token.
    f(weight_spec<2>{"model.embed_tokens.weight", {V, C}}, w.embed);
    f(weight_spec<1>{"model.norm.weight", {C}, init_rule::ones()}, w.norm);
    f(weight_spec<2>{"lm_head.weight", {V, C}, {}, !c.tie_word_embeddings}, w.head.weight);
  }

 private:
  struct block {
    mixer_type mixer;
    block_weights<T> w;
  };

  static std::string block_prefix(std::size_t i) { return "model.layers." + std::to_string(i) + "."; }

  // Block i: its norms and MLP through `visitor`, its mixer from make(layer type tag, layer config);
  // errors of the layer get the block's name in front.
  template <class V, class Make>
  static block make_block(const config& cfg, std::size_t i, const V& visitor, Make&& make) {
    const auto& bc = cfg.layers[i];
    block_weights<T> w;
    block_weights<T>::each_weight(cfg.hidden_size, bc.mlp_size, w, visitor);
    return std::visit(
        [&](const auto& c) {
          using L = typename std::decay_t<decltype(c)>::layer;
          try {
            return block{mixer_type(std::in_place_type<L>, make(std::type_identity<L>{}, c.value)), std::move(w)};
          } catch (const error& e) {
            throw error(cfg.who(i) + ": " + e.what());
          }
        },
        bc.mixer);
  }

  model(const config& cfg, weights w, std::vector<block> blocks) : cfg_(cfg), w_(std::move(w)), blocks_(std::move(blocks)) {
    // Hymba kv_reuse blocks take their meta-token snapshot from the block whose cache they attend.
    using hymba = layers::HymbaBlock<T>;
    std::optional<std::size_t> producer;
    for (std::size_t i = 0; i < blocks_.size(); ++i) {
      auto* h = std::get_if<hymba>(&blocks_[i].mixer);
      if (!h) continue;
      if (!h->cfg().kv_reuse) producer = i;
      else if (h->cfg().prepends() && !h->has_snapshot() && producer) {
        try {
          h->take_snapshot_from(std::get<hymba>(blocks_[*producer].mixer));
        } catch (const error& e) {
          throw error(cfg_.who(i) + ": " + e.what());
        }
      }
    }
  }

  // The tokens through every block; logits of the last one.
  template <exec::policy P>
  tensor<T, 1> run(const P& policy, std::span<const token_id> tokens, State& s, std::span<double> block_seconds) const {
    require(s.layers_.size() == blocks_.size(), "model", "the state was made by a model of another depth");
    require(block_seconds.empty() || block_seconds.size() == blocks_.size(), "model",
            "block_seconds needs one entry per block (" + std::to_string(blocks_.size()) + "), not " +
                std::to_string(block_seconds.size()));
    using clock = std::chrono::steady_clock;
    const index_t L = static_cast<index_t>(tokens.size()), C = cfg_.hidden_size;
    tensor<T, 3> x({1, L, C}), h({1, L, C}), y({1, L, C});
    for (index_t t = 0; t < L; ++t) {
      const token_id id = tokens[std::size_t(t)];
      require(id >= 0 && id < cfg_.vocab_size, "model",
              "token " + std::to_string(id) + " at position " + std::to_string(t) + " is outside the vocabulary [0, " +
                  std::to_string(cfg_.vocab_size) + ")");
      std::copy_n(w_.embed.view().ptr(index_t(id), 0), C, x.view().ptr(0, t, 0));
    }
    const auto x2 = x.view().template reshape<2>({L, C}), h2 = h.view().template reshape<2>({L, C}),
               y2 = y.view().template reshape<2>({L, C});
    const auto add = [&] { simd::transform(x.data(), y.data(), x.data(), x.size(), [](auto a, auto b) { return a + b; }); };
    for (std::size_t i = 0; i < blocks_.size(); ++i) {
      const block& b = blocks_[i];
      const auto t0 = block_seconds.empty() ? clock::time_point{} : clock::now();
      rmsnorm_rows<T>(x2, b.w.input_norm, h2, cfg_.rms_norm_eps);
      std::visit(
          [&](const auto& m) {
            auto* st = std::get_if<state_of<std::decay_t<decltype(m)>>>(&s.layers_[i]);
            require(st != nullptr, cfg_.who(i), "the state was made by a model with another family here");
            try {
              m.forward(policy, tensor_view<const T, 3>(h.view()), y.view(), st->value);
            } catch (const error& e) {  // e.g. a KV cache full: say which block
              throw error(cfg_.who(i) + ": " + e.what());
            }
          },
          b.mixer);
      add();
      if (cfg_.layers[i].mlp_size > 0) {
        rmsnorm_rows<T>(x2, b.w.post_norm, h2, cfg_.rms_norm_eps);
        swiglu<T>(b.w, h2, y2, s.mlp_, policy.threads, "model: MLP");
        add();
      }
      if (!block_seconds.empty()) block_seconds[i] += std::chrono::duration<double>(clock::now() - t0).count();
    }
    s.position_ += L;
    return logits(policy, x2.subrange(0, L - 1, 1));
  }

  // Final norm and LM head of one row [1, C]; the vocabulary split over the policy's threads when
  // the head is large enough to repay them.
  template <exec::policy P>
  tensor<T, 1> logits(const P& policy, tensor_view<const T, 2> row) const {
    const index_t C = cfg_.hidden_size, V = cfg_.vocab_size;
    tensor<T, 2> hn({1, C});
    rmsnorm_rows<T>(row, w_.norm, hn.view(), cfg_.rms_norm_eps);
    const tensor<T, 2>& head = cfg_.tie_word_embeddings ? w_.embed : w_.head.weight;
    tensor<T, 1> out({V});
    P split = policy;
    split.threads = threads_for_work(policy.threads, double(V) * double(C));
    parallel_ranges(split, V, [&](index_t begin, index_t end) {
      for (index_t v = begin; v < end; ++v) out.data()[v] = simd::dot(head.view().ptr(v, 0), hn.data(), C);
    });
    return out;
  }

  config cfg_;
  weights w_;
  std::vector<block> blocks_;
};

}  // namespace seqmix::models
