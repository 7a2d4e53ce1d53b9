// One small instance of every layer family, the same in every cross-family test (the concept test,
// the edge tests): configs of model width `width`, and RWKV-7 both as layer 0 and as a later layer
// that reads v_first from the cross-layer values.
#pragma once

#include <seqmix/seqmix.hpp>

#include <tuple>
#include <type_traits>

namespace seqmix::test::all_layers {

inline constexpr index_t width = 64;  // the model width of every layer below

// The float layer of each family, a few to a line by kind: the linear recurrences (GLA, the delta
// rule, RWKV-7), the state spaces, softmax attention, then nGPT, UltraMem and Hymba.
using gla = layers::GatedLinearAttention<float>; using deltanet = layers::DeltaNet<float>;
using gdn = layers::GatedDeltaNet<float>; using rwkv7 = layers::RWKV7TimeMix<float>;
using mamba = layers::Mamba<float>; using mamba2 = layers::Mamba2<float>; using bi_mamba = layers::BiMamba2<float>;
using attention = layers::Attention<float>; using diff_attn = layers::MultiheadDiffAttn<float>;
using ngpt = layers::NGPTBlock<float>; using ultramem = layers::UltraMem<float>; using hymba = layers::HymbaBlock<float>;

inline rwkv7::config rwkv7_config(index_t layer_id) {
  return {.hidden_size = width, .head_size = 16, .layer_id = layer_id, .decay_lora = 8, .aaa_lora = 8, .mv_lora = 4,
          .gate_lora = 8};
}

/// Hymba: a local layer (window 5, 2 meta tokens, 2 KV heads); with kv_reuse, the layer that
/// attends the cache of the one before it (cross_layer::shared_kv).
inline hymba::config hymba_config(bool kv_reuse = false) {
  return {.hidden_size = width, .intermediate_size = 128, .num_attention_heads = 4, .num_key_value_heads = 2,
          .time_step_rank = 4, .ssm_state_size = 8, .attention_window_size = 5, .num_meta_tokens = 2,
          .kv_reuse = kv_reuse};
}

/// The config of family L in these tests (RWKV-7: a later layer, layer_id 2).
template <class L>
typename L::config config() {
  constexpr index_t C = width;
  if constexpr (std::is_same_v<L, gla>) return {.hidden_size = C, .num_heads = 4};
  else if constexpr (std::is_same_v<L, deltanet>) return {.hidden_size = C, .num_heads = 4, .use_gate = true};
  else if constexpr (std::is_same_v<L, gdn>) return {.hidden_size = C, .head_dim = 16, .num_heads = 2, .num_v_heads = 4};
  else if constexpr (std::is_same_v<L, mamba>) return {.hidden_size = C, .d_state = 8};
  else if constexpr (std::is_same_v<L, mamba2>) return {.hidden_size = C, .d_state = 16, .headdim = 16, .ngroups = 2};
  else if constexpr (std::is_same_v<L, attention>) return {.hidden_size = C, .num_heads = 4, .num_kv_heads = 2, .window = 5};
  else if constexpr (std::is_same_v<L, diff_attn>) return {.hidden_size = C, .num_heads = 2, .num_kv_heads = 1, .depth = 3};
  else if constexpr (std::is_same_v<L, ngpt>) return {.hidden_size = C, .num_heads = 4};
  else if constexpr (std::is_same_v<L, bi_mamba>) return {.hidden_size = C, .d_state = 16, .headdim = 16, .ngroups = 2};
  else if constexpr (std::is_same_v<L, hymba>) return hymba_config();
  else if constexpr (std::is_same_v<L, ultramem>)
    return {.hidden_size = C, .num_keys = 8, .dim_qk = 16, .core_heads = 2, .topk = 4, .dim_values = 16,
            .value_expansion = 2, .query_conv_kernel = 3};
  else return rwkv7_config(2);
}

/// f(std::type_identity<L>{}, config) for each family's layer in model order: RWKV-7 layer 0 first,
/// then one of every other family (the configs of one_of_each(), without its last RWKV-7 layer).
template <class F>
void each_family_config(F&& f) {
  f(std::type_identity<rwkv7>{}, rwkv7_config(0));
  std::apply([&](auto... tag) { (f(tag, config<typename decltype(tag)::type>()), ...); },
             std::tuple<std::type_identity<gla>, std::type_identity<deltanet>, std::type_identity<gdn>,
                        std::type_identity<mamba>, std::type_identity<mamba2>, std::type_identity<attention>,
                        std::type_identity<diff_attn>, std::type_identity<ngpt>, std::type_identity<bi_mamba>,
                        std::type_identity<ultramem>, std::type_identity<hymba>>{});
}

/// One layer of each family, seeds 1-13, in model order: RWKV-7 layer 0 first (a later RWKV-7
/// layer, last, reads its v_first).
inline auto one_of_each() {
  return std::make_tuple(rwkv7::init(rwkv7_config(0), 1), gla::init(config<gla>(), 2),
                         deltanet::init(config<deltanet>(), 3), gdn::init(config<gdn>(), 4),
                         mamba::init(config<mamba>(), 5), mamba2::init(config<mamba2>(), 6),
                         attention::init(config<attention>(), 7), diff_attn::init(config<diff_attn>(), 8),
                         ngpt::init(config<ngpt>(), 10), bi_mamba::init(config<bi_mamba>(), 11),
                         ultramem::init(config<ultramem>(), 12), hymba::init(config<hymba>(), 13),
                         rwkv7::init(rwkv7_config(1), 9));
}

}  // namespace seqmix::test::all_layers
