// A model_config from JSON and back. Needs nlohmann/json.hpp (nlohmann_json: seqmix::seqmix links
// it when CMake finds it; the rest of the library does not need it). The format:
//   {"vocab_size": 256, "hidden_size": 64, "tie_word_embeddings": true, "rms_norm_eps": 1e-6,
//    "layers": [{"family": "mamba2", "config": {"d_state": 16, "headdim": 16}, "mlp_size": 128,
//                "prefix": "mixer"}, ...]}
// A layer's "config" uses the upstream keys of the layer's field table (layers/config_fields.hpp);
// an absent key keeps the layer's default, and its hidden size defaults to the model's. "mlp_size"
// (0: no MLP) and "prefix" (the family's default) may be left out; "drop_mixer": true makes the
// block its MLP alone, "weights_layer": N reads its weights from "model.layers.N." (a config with
// dropped blocks loads the checkpoint it came from). Unknown keys are errors, so a
// misspelt field never silently keeps its default.
#pragma once

#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>

#include "../error.hpp"
#include "../layers/config_fields.hpp"
#include "config.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::models {

namespace detail {

inline constexpr std::int64_t max_json_int = std::int64_t(1) << 31;  // far beyond any width or count

// The JSON value `v` of `key` as M (bool, an integer, a floating-point number, a string); `who` names the owner.
template <class M>
M json_value(const nlohmann::json& v, const std::string& who, const std::string& key) {
  const auto bad = [&](const char* want) { return error(who + ": config '" + key + "' = " + v.dump() + ": expected " + want); };
  if constexpr (std::is_same_v<M, bool>) {
    if (!v.is_boolean()) throw bad("true or false");
    return v.get<bool>();
  } else if constexpr (std::is_integral_v<M>) {
    double d = 0;
    if (v.is_number_integer()) {
      const bool fits = v.is_number_unsigned() ? v.get<std::uint64_t>() <= std::uint64_t(max_json_int)
                                               : v.get<std::int64_t>() >= -max_json_int && v.get<std::int64_t>() <= max_json_int;
      if (!fits) throw bad("an integer of magnitude at most 2^31");
      return static_cast<M>(v.get<std::int64_t>());
    }
    if (!v.is_number_float() || !std::isfinite(d = v.get<double>()) || d != std::trunc(d) || std::abs(d) > double(max_json_int))
      throw bad("an integer of magnitude at most 2^31");
    return static_cast<M>(d);
  } else if constexpr (std::is_same_v<M, std::string>) {
    if (!v.is_string()) throw bad("a string");
    return v.get<std::string>();
  } else {
    static_assert(std::is_floating_point_v<M>, "json_value: a config field is bool, an integer, floating point or a string");
    if (!v.is_number() || !std::isfinite(v.get<double>())) throw bad("a finite number");
    return static_cast<M>(v.get<double>());
  }
}

// Throws unless every key of object `j` is in `known`.
inline void require_known_keys(const nlohmann::json& j, const std::set<std::string, std::less<>>& known, const std::string& who) {
  for (const auto& [k, v] : j.items())
    if (!known.contains(k)) throw error(who + ": unknown config key '" + k + "'");
}

inline const nlohmann::json& json_at(const nlohmann::json& j, const char* key, const std::string& who) {
  const auto it = j.find(key);
  if (it == j.end()) throw error(who + ": config '" + key + "' is missing");
  return *it;
}

}  // namespace detail

/// The model config that `j` describes (then validated: widths, order of cross-layer producers).
template <class T = float>
model_config<T> model_config_from_json(const nlohmann::json& j) {
  using detail::json_value, detail::json_at;
  require(j.is_object(), "model", "config is not a JSON object");
  detail::require_known_keys(j, {"vocab_size", "hidden_size", "tie_word_embeddings", "rms_norm_eps", "layers"}, "model");
  model_config<T> c;
  c.vocab_size = json_value<index_t>(json_at(j, "vocab_size", "model"), "model", "vocab_size");
  c.hidden_size = json_value<index_t>(json_at(j, "hidden_size", "model"), "model", "hidden_size");
  if (j.contains("tie_word_embeddings")) c.tie_word_embeddings = json_value<bool>(j["tie_word_embeddings"], "model", "tie_word_embeddings");
  if (j.contains("rms_norm_eps")) c.rms_norm_eps = json_value<double>(j["rms_norm_eps"], "model", "rms_norm_eps");
  const auto& list = json_at(j, "layers", "model");
  require(list.is_array(), "model", "config 'layers' is not a list");
  for (std::size_t i = 0; i < list.size(); ++i) {
    const auto& e = list[i];
    std::string who = "model layer " + std::to_string(i);
    require(e.is_object(), who, "is not a JSON object");
    detail::require_known_keys(e, {"family", "config", "mlp_size", "prefix", "drop_mixer", "weights_layer"}, who);
    const auto& fam = json_at(e, "family", who);
    require(fam.is_string(), who, "config 'family' is not a string");
    const std::string name = fam.template get<std::string>();
    who += " (" + name + ")";
    block_config<T> b;
    if (e.contains("mlp_size")) b.mlp_size = json_value<index_t>(e["mlp_size"], who, "mlp_size");
    if (e.contains("drop_mixer")) b.drop_mixer = json_value<bool>(e["drop_mixer"], who, "drop_mixer");
    if (e.contains("weights_layer")) b.weights_layer = json_value<index_t>(e["weights_layer"], who, "weights_layer");
    if (e.contains("prefix")) {
      require(e["prefix"].is_string(), who, "config 'prefix' is not a string");
      b.prefix = e["prefix"].template get<std::string>();
    }
    const nlohmann::json fields = e.contains("config") ? e["config"] : nlohmann::json::object();
    require(fields.is_object(), who, "config 'config' is not a JSON object");
    const bool known = families<T>::with_name(name, [&](auto tag) {
      using Config = typename decltype(tag)::layer::config;
      Config cfg;
      cfg.hidden_size = c.hidden_size;  // upstream d_model / n_embd / dim: the model's unless given
      std::set<std::string, std::less<>> keys;
      layers::for_each_field<Config>([&](const auto& f) {
        keys.insert(f.key);
        if (const auto it = fields.find(f.key); it != fields.end() && !it->is_null())
          cfg.*(f.member) = json_value<std::remove_reference_t<decltype(cfg.*(f.member))>>(*it, who, f.key);
      });
      detail::require_known_keys(fields, keys, who);
      b.mixer = decltype(tag){cfg};
    });
    if (!known) throw error(who + ": unknown family '" + name + "' (known: " + families<T>::names() + ")");
    c.layers.push_back(std::move(b));
  }
  c.validate();
  return c;
}

/// model_config_from_json of a JSON text (a syntax error is a seqmix::error too).
template <class T = float>
model_config<T> parse_model_config(std::string_view text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw error(std::string("model: config is not valid JSON: ") + e.what());
  }
  return model_config_from_json<T>(j);
}

/// The JSON of `c`, every layer field written out (a non-finite number as null: the field's
/// default); model_config_from_json reads it back unchanged.
template <class T>
nlohmann::json to_json(const model_config<T>& c) {
  nlohmann::json j{{"vocab_size", c.vocab_size}, {"hidden_size", c.hidden_size},
                   {"tie_word_embeddings", c.tie_word_embeddings}, {"rms_norm_eps", c.rms_norm_eps}};
  auto& list = j["layers"] = nlohmann::json::array();
  for (const auto& b : c.layers) {
    nlohmann::json e{{"family", std::string(b.family_name())}, {"mlp_size", b.mlp_size}};
    if (!b.prefix.empty()) e["prefix"] = b.prefix;
    if (b.drop_mixer) e["drop_mixer"] = true;
    if (b.weights_layer >= 0) e["weights_layer"] = b.weights_layer;
    auto& fields = e["config"] = nlohmann::json::object();
    std::visit(
        [&](const auto& cfg) {
          using Config = std::decay_t<decltype(cfg.value)>;
          layers::for_each_field<Config>([&](const auto& f) {
            const auto& v = cfg.value.*(f.member);
            // A NaN default means "derived" (diff_attn's lambda_init): null, which reads back as the default.
            if constexpr (std::is_floating_point_v<std::decay_t<decltype(v)>>) {
              if (!std::isfinite(v)) return void(fields[f.key] = nullptr);
            }
            fields[f.key] = v;
          });
        },
        b.mixer);
    list.push_back(std::move(e));
  }
  return j;
}

}  // namespace seqmix::models
