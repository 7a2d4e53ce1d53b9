// Checks every layer's weight handling passes, written once over the layer type
// (layers::sequence_mixer): init reproducible, save / load round trip, every checkpoint weight
// required and named, non-finite weights named, bad configs and bad inputs named; and the decode
// run (a prefill split anywhere, then step()) the layer tests compare with one pass. A layer test
// instantiates them on its own configs.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <seqmix/error.hpp>
#include <seqmix/io/safetensors.hpp>
#include <seqmix/layers/concept.hpp>
#include <seqmix/layers/weight_table.hpp>
#include <seqmix/policy/execution.hpp>

#include "compare.hpp"

namespace seqmix::test {

/// Matches a seqmix::error whose message contains every one of `parts`.
class error_containing : public Catch::MatcherBase<seqmix::error> {
 public:
  error_containing(std::initializer_list<std::string> parts) : parts_(parts) {}
  bool match(const seqmix::error& e) const override {
    const std::string what = e.what();
    for (const auto& p : parts_)
      if (what.find(p) == std::string::npos) return false;
    return true;
  }
  std::string describe() const override {
    std::string s = "is a seqmix::error whose message contains";
    for (const auto& p : parts_) s += " '" + p + "'";
    return s;
  }

 private:
  std::vector<std::string> parts_;
};

/// The bytes of `layer.save(writer, prefix)`.
template <layers::sequence_mixer Layer>
std::vector<std::byte> saved_bytes(const Layer& layer, const std::string& prefix = "") {
  io::safetensors_writer w;
  layer.save(w, prefix);
  return w.bytes();
}

/// The layer's weights as an in-memory checkpoint under `prefix`.
template <layers::sequence_mixer Layer>
io::safetensors checkpoint(const Layer& layer, const std::string& prefix = "") {
  return io::safetensors::parse(saved_bytes(layer, prefix), "mem");
}

/// A copy of `file` (tensors and metadata) without tensor `drop`.
inline io::safetensors without(const io::safetensors& file, const std::string& drop) {
  io::safetensors_writer w;
  for (const auto& n : file.names())
    if (n != drop) {
      const auto& info = file.info(n);
      w.add_raw(n, info.type, info.shape, file.raw(n));
    }
  for (const auto& [k, v] : file.metadata()) w.add_metadata(k, v);
  return io::safetensors::parse(w.bytes(), file.source() + " without " + drop);
}

/// load(save(layer)) under `prefix` is the same layer: saving it again gives the same bytes, and
/// forward (from a zero state, under `policy`) and step give bit-identical outputs on x [B, T, hidden].
/// Returns the loaded layer for further checks.
template <layers::sequence_mixer Layer, exec::policy P = exec::chunkwise<16>>
Layer check_round_trip(const Layer& layer, const tensor<typename Layer::value_type, 3>& x,
                       const std::string& prefix = "model.layers.3.mixer.", const P& policy = {}) {
  const auto bytes = saved_bytes(layer, prefix);
  const auto file = io::safetensors::parse(bytes, "mem");
  CHECK(!file.names().empty());
  for (const auto& n : file.names()) CHECK(n.rfind(prefix, 0) == 0);
  Layer back = Layer::load(file, layer.cfg(), prefix);
  CHECK(saved_bytes(back, prefix) == bytes);
  CHECK(saved_bytes(back) == saved_bytes(layer));  // and without a prefix

  const index_t B = x.extent(0);
  auto sa = layer.make_state(B), sb = back.make_state(B);
  SEQMIX_CHECK_IDENTICAL(back.forward(policy, x, sb), layer.forward(policy, x, sa));
  tensor<typename Layer::value_type, 2> ya({B, layer.hidden_size()}), yb({B, layer.hidden_size()});
  layer.step(exec::recurrent{}, x.view().slice(1, 0), ya.view(), sa);
  back.step(exec::recurrent{}, x.view().slice(1, 0), yb.view(), sb);
  SEQMIX_CHECK_IDENTICAL(yb, ya);
  return back;
}

/// init(cfg, seed) is reproducible (again the same bytes, other bytes from seed + 1) and
/// load(save(init)) is the same layer (check_round_trip on x). Returns init(cfg, seed).
template <layers::sequence_mixer Layer>
Layer check_init_round_trip(const typename Layer::config& cfg, std::uint64_t seed,
                            const tensor<typename Layer::value_type, 3>& x, const std::string& prefix) {
  Layer a = Layer::init(cfg, seed);
  CHECK(saved_bytes(Layer::init(cfg, seed)) == saved_bytes(a));
  CHECK(saved_bytes(Layer::init(cfg, seed + 1)) != saved_bytes(a));
  check_round_trip(a, x, prefix);
  return a;
}

/// Every weight of the layer's checkpoint is required: a copy of the checkpoint without it makes
/// load() throw seqmix::error naming the layer and the weight's full name (with `prefix`).
template <layers::sequence_mixer Layer>
void check_each_weight_required(const Layer& layer, const std::string& prefix = "model.layers.3.mixer.") {
  const auto file = checkpoint(layer, prefix);
  REQUIRE(!file.names().empty());
  CHECK_NOTHROW(Layer::load(file, layer.cfg(), prefix));
  for (const auto& name : file.names()) {
    INFO("without " << name);
    const auto cut = without(file, name);
    CHECK(cut.names().size() + 1 == file.names().size());
    CHECK_THROWS_MATCHES(Layer::load(cut, layer.cfg(), prefix), seqmix::error,
                         error_containing({Layer::name, "'" + name + "'", "not found"}));
  }
}

namespace detail {
/// Weight-table visitor: puts `value` into the middle element of the `target`-th present,
/// non-empty weight and records its name; counts the weights in `seen`.
template <class T>
struct poison_nth {
  int target;
  T value;
  int seen = 0;
  std::string name = {};

  poison_nth(int target_, T value_) : target(target_), value(value_) {}

  template <std::size_t FR, std::size_t R>
  void operator()(const layers::weight_spec<FR>& s, tensor<T, R>& m) {
    if (!s.present || m.size() == 0) return;
    if (seen++ == target) {
      m.data()[m.size() / 2] = value;
      name = s.name;
    }
  }
  template <std::size_t FR>
  void operator()(const layers::weight_spec<FR>& s, nn::packed_matrix<T>& m) {
    auto w = m.unpacked();
    (*this)(s, w);
    m = nn::packed_matrix<T>(w);
  }
  template <std::size_t FR, std::size_t R>
  void operator()(const layers::weight_spec<FR>& s, std::optional<tensor<T, R>>& m) {
    if (s.present && m) (*this)(s, *m);
  }
};
}  // namespace detail

/// validate_finite() passes on the layer and, for each weight in turn, throws seqmix::error naming
/// the layer and that weight once a copy of the weights (params()) holds a NaN there (and an
/// infinity, for the first weight). Layer(cfg, weights) accepts the modified copy. `unvisited`:
/// checkpoint entries the float visitor does not see (BiMamba2's packed signs, which hold no NaN).
template <layers::sequence_mixer Layer>
void check_finite_named(const Layer& layer, int unvisited = 0) {
  using T = typename Layer::value_type;
  CHECK_NOTHROW(layer.validate_finite());
  int count = 0;
  for (int i = 0;; ++i) {
    auto w = layer.params();
    detail::poison_nth<T> p(i, std::numeric_limits<T>::quiet_NaN());
    Layer::each_weight(layer.cfg(), w, p);
    if (p.name.empty()) {
      count = p.seen;
      break;
    }
    INFO("NaN in " << p.name);
    const Layer bad(layer.cfg(), std::move(w));
    CHECK_THROWS_MATCHES(bad.validate_finite(), seqmix::error, error_containing({Layer::name, "'" + p.name + "'"}));
  }
  CHECK(count + unvisited == int(checkpoint(layer).names().size()));  // every other entry was poisoned once
  auto w = layer.params();
  detail::poison_nth<T> p(0, std::numeric_limits<T>::infinity());
  Layer::each_weight(layer.cfg(), w, p);
  const Layer bad(layer.cfg(), std::move(w));
  CHECK_THROWS_MATCHES(bad.validate_finite(), seqmix::error, error_containing({Layer::name, "'" + p.name + "'"}));
}

/// A zero or inconsistent config is rejected naming `field`, by init() and by load() (of
/// `file` under `prefix`, a checkpoint of a valid config) alike.
template <layers::sequence_mixer Layer>
void check_config_rejected(const typename Layer::config& bad, const std::string& field, const io::safetensors& file,
                           const std::string& prefix = "model.layers.3.mixer.") {
  INFO("config field " << field);
  CHECK_THROWS_MATCHES(bad.validate(), seqmix::error, error_containing({Layer::name, field}));
  CHECK_THROWS_MATCHES(Layer::init(bad, 1), seqmix::error, error_containing({Layer::name, field}));
  CHECK_THROWS_MATCHES(Layer::load(file, bad, prefix), seqmix::error, error_containing({Layer::name, field}));
}

/// A {field, change} of check_configs_rejected that sets `field` to zero, named as itself (the
/// field written once).
#define SEQMIX_ZEROED(field) {#field, [](auto& c) { c.field = 0; }}

/// check_config_rejected for each {field, change}: `base` with that one change is rejected naming
/// the field, e.g. check_configs_rejected<L>(cfg, file, prefix, {SEQMIX_ZEROED(num_heads),
/// {"key_dim", [](auto& c) { c.num_heads = 3; }}}).
template <layers::sequence_mixer Layer>
void check_configs_rejected(
    const typename Layer::config& base, const io::safetensors& file, const std::string& prefix,
    std::initializer_list<std::pair<const char*, std::function<void(typename Layer::config&)>>> changes) {
  for (const auto& [field, change] : changes) {
    auto bad = base;
    change(bad);
    check_config_rejected<Layer>(bad, field, file, prefix);
  }
}

/// forward() checks x and the state (made by the caller for batch 2) before it runs: x [2, 5,
/// bad_width] throws seqmix::error naming both shapes, a batch of 3 one containing every part of
/// `state_error`.
template <layers::sequence_mixer Layer, class State>
void check_input_errors(const Layer& layer, State& s, index_t bad_width, std::initializer_list<std::string> state_error) {
  using T = typename Layer::value_type;
  const index_t C = layer.hidden_size();
  tensor<T, 3> x({2, 5, bad_width}), y({2, 5, C});
  REQUIRE_THROWS_MATCHES(layer.forward(exec::recurrent{}, x.view(), y.view(), s), seqmix::error,
                         error_containing({std::string(Layer::name) + ": x has shape [2, 5, " + std::to_string(bad_width) +
                                           "], expected [2, 5, " + std::to_string(C) + "]"}));
  tensor<T, 3> x3({3, 5, C}), y3({3, 5, C});
  REQUIRE_THROWS_MATCHES(layer.forward(exec::recurrent{}, x3.view(), y3.view(), s), seqmix::error,
                         error_containing(state_error));
}

/// Runs x [B, L, C] into y on state `s` as a decode does: a prefill of `split` tokens (automatic),
/// the tokens up to `mid` in one parallel{2} call, then step() token by token, alternating
/// recurrent and automatic{2} (the step's policy only gives the threads). The caller compares y
/// and `s` with one pass.
template <layers::sequence_mixer Layer, class State>
void prefill_then_step(const Layer& layer, const tensor<typename Layer::value_type, 3>& x,
                       tensor<typename Layer::value_type, 3>& y, State& s, index_t split, index_t mid) {
  layer.forward(exec::automatic{}, x.view().subrange(1, 0, split), y.view().subrange(1, 0, split), s);
  if (mid > split)
    layer.forward(exec::parallel{2}, x.view().subrange(1, split, mid - split), y.view().subrange(1, split, mid - split), s);
  for (index_t tok = mid; tok < x.extent(1); ++tok)
    if (tok % 2) layer.step(exec::recurrent{}, x.view().slice(1, tok), y.view().slice(1, tok), s);
    else layer.step(exec::automatic{2}, x.view().slice(1, tok), y.view().slice(1, tok), s);
}

}  // namespace seqmix::test
