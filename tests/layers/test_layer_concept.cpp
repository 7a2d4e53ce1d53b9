// Every layer through the one layer concept: a model that holds layers of all families in one
// std::vector<std::variant<...>> runs prefill and decode without knowing which family each is;
// init/save/load round trips; each weight removed in turn; bad configs; non-finite weights.
#include <seqmix/seqmix.hpp>

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>
#include <variant>
#include <vector>

#include "support/all_layers.hpp"
#include "support/compare.hpp"
#include "support/safetensors_edit.hpp"

using namespace seqmix;
using namespace seqmix::layers;

namespace {

using namespace seqmix::test::all_layers;
constexpr index_t C = width;

using any_layer = std::variant<gla, deltanet, gdn, mamba, mamba2, attention, diff_attn, rwkv7, ngpt, bi_mamba, ultramem, hymba>;
using any_state = std::variant<gla::State, deltanet::State, gdn::State, mamba::State, mamba2::State,
                               attention::State, ngpt::State, rwkv7::State, ultramem::State,
                               hymba::State>;  // diff_attn keeps attention's KV cache, bi_mamba Mamba2's state

// One layer of each family (tests/support/all_layers.hpp), RWKV-7 layer 0 first: the later
// RWKV-7 layer reads its v_first. After the Hymba layer, a second one with kv_reuse attends its KV
// cache through the cross-layer values.
std::vector<any_layer> mixed_model() {
  std::vector<any_layer> m;
  std::apply([&](auto&&... layer) { (m.emplace_back(std::move(layer)), ...); }, one_of_each());
  const auto at = std::find_if(m.begin(), m.end(), [](const any_layer& l) { return std::holds_alternative<hymba>(l); });
  m.insert(at + 1, hymba::init(hymba_config(true), 14));
  return m;
}

// A sequence's states for every layer of the model, sharing one set of cross-layer values.
struct model_state {
  cross_layer<float> cross;
  std::vector<any_state> layers;
  model_state(const std::vector<any_layer>& model, index_t batch) {
    for (const auto& l : model)
      std::visit([&](const auto& layer) { layers.emplace_back(layer.make_state(batch, {.cross = &cross})); }, l);
  }
  model_state(const model_state&) = delete;
};

// x [B, T, C] through every layer as a residual stream, the way a model runs its blocks.
template <exec::policy P>
tensor<float, 3> prefill(const P& policy, const std::vector<any_layer>& model, model_state& s, tensor<float, 3> x) {
  for (std::size_t i = 0; i < model.size(); ++i)
    std::visit(
        [&](const auto& layer) {
          using L = std::decay_t<decltype(layer)>;
          const auto y = layer.forward(policy, x, std::get<typename L::State>(s.layers[i]));
          for (index_t j = 0; j < x.size(); ++j) x.data()[j] += y.data()[j];
        },
        model[i]);
  return x;
}

template <exec::policy P>
tensor<float, 2> decode(const P& policy, const std::vector<any_layer>& model, model_state& s, tensor<float, 2> x) {
  tensor<float, 2> y(x.extents());
  for (std::size_t i = 0; i < model.size(); ++i)
    std::visit(
        [&](const auto& layer) {
          using L = std::decay_t<decltype(layer)>;
          layer.step(policy, x, y, std::get<typename L::State>(s.layers[i]));
          for (index_t j = 0; j < x.size(); ++j) x.data()[j] += y.data()[j];
        },
        model[i]);
  return x;
}

}  // namespace

TEST_CASE("a model of every layer family runs prefill and decode through the concept", "[layers][concept]") {
  const auto model = mixed_model();
  REQUIRE(model.size() == 14);
  constexpr index_t B = 2, T = 24, prompt = 17;
  const auto x = uniform_tensor<float, 3>({B, T, C}, -1, 1, 42);

  // Reference: the whole sequence in one recurrent prefill.
  model_state ref(model, B);
  const auto y_ref = prefill(exec::recurrent{}, model, ref, x);

  // Prefill the prompt with the automatic policy and two threads, then decode token by token.
  model_state s(model, B);
  auto y = test::nan_tensor<float, 3>({B, T, C});
  const auto y_prompt = prefill(exec::automatic{.threads = 2}, model, s,
                                tensor<float, 3>(x.view().subrange(1, 0, prompt)));
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < prompt; ++t)
      for (index_t c = 0; c < C; ++c) y(b, t, c) = y_prompt(b, t, c);
  for (index_t t = prompt; t < T; ++t) {
    const auto y_t = decode(exec::recurrent{.threads = 2}, model, s, tensor<float, 2>(x.view().slice(1, t)));
    for (index_t b = 0; b < B; ++b)
      for (index_t c = 0; c < C; ++c) y(b, t, c) = y_t(b, c);
  }
  // Fourteen layers deep, each adding O(1) to the stream: errors of a few float epsilons per layer.
  SEQMIX_CHECK_WITHIN(y, y_ref, test::tolerance<float>(double(T) * double(model.size()) * C));
}

TEMPLATE_TEST_CASE("a layer built by init() saves and loads back bit for bit", "[layers][concept][io]", gla,
                   deltanet, gdn, mamba, mamba2, attention, diff_attn, rwkv7, ngpt, bi_mamba, ultramem, hymba) {
  using L = TestType;
  const auto cfg = config<L>();
  const L a = L::init(cfg, 11);
  REQUIRE_NOTHROW(a.validate_finite());
  io::safetensors_writer out;
  save(a, out, "model.layers.3.mixer.");
  const auto bytes = out.bytes();
  const auto file = io::safetensors::parse(bytes, "saved");
  const L b = L::load(file, cfg, "model.layers.3.mixer.");
  io::safetensors_writer again;
  b.save(again, "model.layers.3.mixer.");
  CHECK(again.bytes() == bytes);

  SECTION("outputs agree") {
    cross_layer<float> cross{uniform_tensor<float, 3>({2, 7, C}, -1, 1, 5)};
    auto sa = a.make_state(2, {.cross = &cross}), sb = b.make_state(2, {.cross = &cross});
    const auto x = uniform_tensor<float, 3>({2, 7, C}, -1, 1, 6);
    SEQMIX_CHECK_IDENTICAL(a.forward(exec::recurrent{}, x, sa), b.forward(exec::recurrent{}, x, sb));
  }
  SECTION("each weight removed in turn names that weight") {
    for (const auto& missing : file.names()) {
      const auto partial = test::without_entry(file, missing);
      INFO(missing);
      REQUIRE_THROWS_MATCHES(L::load(partial, cfg, "model.layers.3.mixer."), seqmix::error,
                             Catch::Matchers::Predicate<seqmix::error>([&](const seqmix::error& e) {
                               return std::string(e.what()).find(missing) != std::string::npos;
                             }));
    }
  }
  SECTION("a NaN weight is found by validate_finite") {
    // The last float weight (1-bit layers also hold packed U8 entries, UltraMem integer ids).
    std::string victim;
    for (const auto& n : file.names())
      if (file.info(n).type == io::dtype::f32 && n.find("weight") != std::string::npos) victim = n;
    REQUIRE(!victim.empty());
    io::safetensors_writer w;
    for (const auto& n : file.names()) {
      std::vector<std::byte> raw(file.raw(n).begin(), file.raw(n).end());
      if (n == victim) {
        const float nan = std::numeric_limits<float>::quiet_NaN();
        std::memcpy(raw.data() + raw.size() - sizeof(float), &nan, sizeof(float));  // little-endian F32
      }
      w.add_raw(n, file.info(n).type, file.info(n).shape, raw);
    }
    const auto poisoned = io::safetensors::parse(w.bytes(), "poisoned");
    const L c = L::load(poisoned, cfg, "model.layers.3.mixer.");
    const std::string short_name = victim.substr(std::string("model.layers.3.mixer.").size());
    REQUIRE_THROWS_WITH(c.validate_finite(), Catch::Contains(L::name) && Catch::Contains("'" + short_name + "'"));
  }
  SECTION("a zero config field raises seqmix::error naming it") {
    auto bad = cfg;
    bad.hidden_size = 0;
    REQUIRE_THROWS_WITH(L::init(bad, 1), Catch::Contains(L::name) && Catch::Contains("hidden_size"));
    REQUIRE_THROWS_WITH(L::load(file, bad, "model.layers.3.mixer."), Catch::Contains("hidden_size"));
  }
}
