// Hybrid models end to end (models/): JSON configs, init/save/load bit for bit, prefill then decode
// against one long prefill, forked and reset states, greedy and seeded sampling, and the errors of
// bad configs and checkpoints naming the layer and the weight; packed variable-length batches;
// dropped parts and the layer-redundancy scores (models/redundancy.hpp).
#include <seqmix/models/generate.hpp>
#include <seqmix/models/json_config.hpp>
#include <seqmix/models/model.hpp>
#include <seqmix/models/redundancy.hpp>

#include <string>
#include <vector>

#include "support/all_layers.hpp"
#include "support/compare.hpp"
#include "support/safetensors_edit.hpp"

using namespace seqmix;
using namespace seqmix::models;
using Catch::Matchers::Contains;

namespace {

using M = model<float>;
constexpr index_t vocab = 97;

// Four hybrid stacks of width 64, each with MLPs on some blocks: the pairs that share cross-layer
// values (RWKV-7 v_first, Hymba KV) next to layers of other families.
const char* const stacks[] = {
    // Jamba-like: Mamba-2 and attention.
    R"({"vocab_size": 97, "hidden_size": 64, "layers": [
        {"family": "mamba2", "config": {"d_state": 16, "headdim": 16, "ngroups": 2}, "mlp_size": 96},
        {"family": "mamba2", "config": {"d_state": 16, "headdim": 16, "ngroups": 2}},
        {"family": "attention", "config": {"num_heads": 4, "num_kv_heads": 2}, "mlp_size": 96}]})",
    // Qwen3-Next-like: Gated DeltaNet and attention, an untied head.
    R"({"vocab_size": 97, "hidden_size": 64, "tie_word_embeddings": false, "layers": [
        {"family": "gated_delta_net", "config": {"head_dim": 16, "num_heads": 2, "num_v_heads": 4}, "mlp_size": 128},
        {"family": "gated_delta_net", "config": {"head_dim": 16, "num_heads": 2, "num_v_heads": 4}, "mlp_size": 128},
        {"family": "attention", "config": {"num_heads": 4, "num_kv_heads": 1, "window": 6}, "mlp_size": 128}]})",
    // RWKV-7: layer 0 leaves v_first, layer 1 reads it; a GLA layer between them.
    R"({"vocab_size": 97, "hidden_size": 64, "layers": [
        {"family": "rwkv7", "config": {"head_size": 16, "layer_id": 0, "D_DECAY_LORA": 8, "D_AAA_LORA": 8,
                                        "D_MV_LORA": 4, "D_GATE_LORA": 8}, "mlp_size": 96},
        {"family": "gla", "config": {"num_heads": 4}},
        {"family": "rwkv7", "config": {"head_size": 16, "layer_id": 1, "D_DECAY_LORA": 8, "D_AAA_LORA": 8,
                                        "D_MV_LORA": 4, "D_GATE_LORA": 8}, "mlp_size": 96}]})",
    // Hymba: a local block and one attending its KV cache (meta tokens, window 5).
    R"({"vocab_size": 97, "hidden_size": 64, "layers": [
        {"family": "hymba", "config": {"intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2,
         "time_step_rank": 4, "ssm_state_size": 8, "attention_window_size": 5, "num_meta_tokens": 2}, "mlp_size": 96},
        {"family": "hymba", "config": {"intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2,
         "time_step_rank": 4, "ssm_state_size": 8, "attention_window_size": 5, "num_meta_tokens": 2,
         "kv_reuse": true}, "mlp_size": 96},
        {"family": "mamba", "config": {"d_state": 8}}]})",
};

std::vector<token_id> tokens(index_t n, std::uint64_t seed) {
  const auto u = uniform_tensor<float, 1>({n}, 0, 1, seed);
  std::vector<token_id> t(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) t[std::size_t(i)] = std::min<token_id>(token_id(u.data()[i] * vocab), vocab - 1);
  return t;
}

std::vector<std::byte> saved(const M& m) {
  io::safetensors_writer out;
  m.save(out);
  return out.bytes();
}

// The error of `f` names every string in `parts`.
template <class F>
void require_error_naming(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    FAIL("no seqmix::error");
  } catch (const seqmix::error& e) {
    INFO(e.what());
    for (const auto& p : parts) CHECK_THAT(e.what(), Contains(p));
  }
}

}  // namespace

TEST_CASE("a model config reads from JSON and writes back unchanged", "[models]") {
  for (const char* text : stacks) {
    const auto cfg = parse_model_config(text);
    CHECK(cfg.vocab_size == vocab);
    CHECK(cfg.layers.size() == 3);
    const auto again = model_config_from_json(to_json(cfg));
    CHECK(to_json(again) == to_json(cfg));
  }
  const auto cfg = parse_model_config(stacks[0]);
  CHECK(cfg.layers[0].family_name() == "mamba2");
  CHECK(cfg.layers[0].mixer_prefix() == "mixer");
  CHECK(cfg.layers[2].mixer_prefix() == "self_attn");
  CHECK(cfg.layers[0].mlp_size == 96);
  CHECK(cfg.layers[1].mlp_size == 0);
  CHECK(cfg.layers[0].hidden_size() == 64);  // the model's width unless given
}

TEST_CASE("a random hybrid model saves and loads back bit for bit", "[models][io]") {
  const int which = GENERATE(0, 1, 2, 3);
  const auto cfg = parse_model_config(stacks[which]);
  const M a = M::init(cfg, 7);
  const auto bytes = saved(a);
  const auto file = io::safetensors::parse(bytes, "model");
  CHECK(file.contains("model.embed_tokens.weight"));
  CHECK(file.contains("model.layers.0.input_layernorm.weight"));
  CHECK(file.contains("model.layers.0.post_attention_layernorm.weight"));
  CHECK(file.contains("model.layers.0.mlp.gate_proj.weight"));
  CHECK(file.contains("model.norm.weight"));
  CHECK(file.contains("lm_head.weight") == !cfg.tie_word_embeddings);
  const M b = M::load(file, cfg);
  CHECK(saved(b) == bytes);
  const auto prompt = tokens(9, 3);
  auto sa = a.make_state(), sb = b.make_state();
  SEQMIX_CHECK_IDENTICAL(a.prefill(exec::automatic{}, prompt, sa), b.prefill(exec::automatic{}, prompt, sb));
  // Another seed gives another model.
  CHECK(saved(M::init(cfg, 8)) != bytes);
}

TEST_CASE("a model of every layer family: JSON, save/load, prefill then decode", "[models]") {
  // The families in the order of tests/support/all_layers.hpp (RWKV-7 layer 0 first, a later RWKV-7
  // layer last), a Hymba block attending the KV cache of the one before it, MLPs on every other block.
  namespace al = test::all_layers;
  model_config<float> cfg;
  cfg.vocab_size = vocab, cfg.hidden_size = al::width;
  const auto add = [&]<class L>(std::type_identity<L>, const typename L::config& c) {
    cfg.layers.push_back(block_config<float>::of<L>(c, cfg.layers.size() % 2 ? 0 : 96));
  };
  al::each_family_config(add);
  add(std::type_identity<al::hymba>{}, al::hymba_config(true));
  add(std::type_identity<al::rwkv7>{}, al::rwkv7_config(1));
  REQUIRE(cfg.layers.size() == families<float>::size + 2);
  REQUIRE_NOTHROW(cfg.validate());
  const auto again = model_config_from_json(to_json(cfg));
  CHECK(to_json(again) == to_json(cfg));
  CHECK(to_json(parse_model_config(to_json(cfg).dump())) == to_json(cfg));

  const M a = M::init(cfg, 17);
  const auto bytes = saved(a);
  const M m = M::load(io::safetensors::parse(bytes, "model"), again);
  CHECK(saved(m) == bytes);

  constexpr index_t T = 16, prompt = 11;
  const auto seq = tokens(T, 4);
  auto ref = m.make_state();
  const auto want = m.prefill(exec::recurrent{}, seq, ref);
  auto s = m.make_state();
  auto got = m.prefill(exec::chunkwise<64>{.threads = 2}, std::span(seq).first(prompt), s);
  for (index_t t = prompt; t < T; ++t) got = m.step(exec::recurrent{.threads = 2}, seq[std::size_t(t)], s);
  // As below, with fifteen blocks.
  SEQMIX_CHECK_WITHIN(got, want, test::tolerance<float>(double(T) * 15 * 64 * 64));
}

TEST_CASE("prefill of a prompt then step() equals one prefill of the longer prompt", "[models]") {
  const int which = GENERATE(0, 1, 2, 3);
  INFO("stack " << which);
  const M m = M::init(parse_model_config(stacks[which]), 11);
  constexpr index_t T = 20, prompt = 13;
  const auto seq = tokens(T, 5);
  for (index_t n = prompt; n <= T; ++n) {
    auto ref = m.make_state();
    const auto want = m.prefill(exec::recurrent{}, std::span(seq).first(std::size_t(n)), ref);
    auto s = m.make_state();
    auto got = m.prefill(exec::automatic{.threads = 2}, std::span(seq).first(std::size_t(prompt)), s);
    for (index_t t = prompt; t < n; ++t) got = m.step(exec::recurrent{}, seq[std::size_t(t)], s);
    CHECK(s.position() == n);
    INFO("tokens " << n);
    // Three blocks of O(1) updates to the stream, each from float sums over C and over the tokens;
    // the logits sum C terms more. Policies differ by rounding only.
    SEQMIX_CHECK_WITHIN(got, want, test::tolerance<float>(double(n) * 3 * 64 * 64));
  }
}

TEST_CASE("a model runs its blocks, MLPs and head on the policy's pool", "[models][threads]") {
  // Jamba-like stack, 300 tokens: the MLP projections split their rows over 2 threads.
  const M m = M::init(parse_model_config(stacks[0]), 12);
  const auto seq = tokens(300, 8);
  seqmix::thread_pool mine(1);
  const auto default_jobs = seqmix::thread_pool::default_pool().jobs();
  auto one = m.make_state(), two = m.make_state();
  const auto want = m.prefill(exec::recurrent{}, seq, one);
  const auto got = m.prefill(exec::automatic{.threads = 2, .pool = &mine}, seq, two);
  const auto jobs = mine.jobs();
  CHECK(jobs >= 1);
  SEQMIX_CHECK_WITHIN(got, want, test::tolerance<float>(300.0 * 3 * 64 * 64));
  auto s = m.make_state();
  const double nll1 = m.negative_log_likelihood(exec::recurrent{}, seq, s);
  s = m.make_state();
  const double nll2 = m.negative_log_likelihood(exec::automatic{.threads = 2, .pool = &mine}, seq, s);
  CHECK(mine.jobs() > jobs);
  CHECK(std::abs(nll2 - nll1) <= 1e-3 * std::abs(nll1));
  CHECK(seqmix::thread_pool::default_pool().jobs() == default_jobs);
}

TEST_CASE("a forked state continues identically, and reset() starts a fresh sequence", "[models]") {
  const int which = GENERATE(0, 1, 2, 3);
  INFO("stack " << which);
  const M m = M::init(parse_model_config(stacks[which]), 12);
  const auto prompt = tokens(11, 6), more = tokens(5, 7), other = tokens(7, 8);
  auto s = m.make_state();
  m.prefill(exec::automatic{}, prompt, s);
  auto fork = s;  // its own cross-layer values
  // The original goes on elsewhere first (overwriting its cross-layer values), then the fork runs.
  m.prefill(exec::automatic{}, other, s);
  const auto y_fork = m.prefill(exec::automatic{}, more, fork);
  auto fresh = m.make_state();
  m.prefill(exec::automatic{}, prompt, fresh);
  SEQMIX_CHECK_IDENTICAL(y_fork, m.prefill(exec::automatic{}, more, fresh));
  for (token_id t : {token_id(3), token_id(50)}) SEQMIX_CHECK_IDENTICAL(m.step(exec::recurrent{}, t, fork), m.step(exec::recurrent{}, t, fresh));
  CHECK(fork.position() == 11 + 5 + 2);

  // Copy-assigned, also over a moved-from state, a fork behaves the same.
  auto moved = std::move(fork);
  fork = moved;
  auto fresh3 = m.make_state();
  m.prefill(exec::automatic{}, prompt, fresh3), m.prefill(exec::automatic{}, more, fresh3);
  m.step(exec::recurrent{}, 3, fresh3), m.step(exec::recurrent{}, 50, fresh3);
  SEQMIX_CHECK_IDENTICAL(m.step(exec::recurrent{}, 7, fork), m.step(exec::recurrent{}, 7, fresh3));
  SEQMIX_CHECK_IDENTICAL(m.step(exec::recurrent{}, 8, moved), m.step(exec::recurrent{}, 8, fresh));

  m.reset(s);
  CHECK(s.position() == 0);
  auto fresh2 = m.make_state();
  SEQMIX_CHECK_IDENTICAL(m.prefill(exec::automatic{}, prompt, s), m.prefill(exec::automatic{}, prompt, fresh2));
}

TEST_CASE("greedy generation is deterministic; seeded sampling reproducible; top-k 1 is greedy", "[models][sampling]") {
  const M m = M::init(parse_model_config(stacks[0]), 13);
  const auto prompt = tokens(8, 9);
  constexpr index_t n = 12;
  const auto run = [&](sampling_options o, std::uint64_t seed) {
    auto s = m.make_state();
    sampler pick(o, seed);
    const auto out = generate(m, exec::automatic{}, s, prompt, n, pick);
    CHECK(s.position() == index_t(prompt.size()) + n - 1);  // all but the last generated token
    return out;
  };
  const auto greedy = run({.temperature = 0}, 0);
  REQUIRE(greedy.size() == std::size_t(n));
  CHECK(run({.temperature = 0}, 99) == greedy);

  // The greedy tokens by hand: argmax of each step's logits.
  {
    auto s = m.make_state();
    auto logits = m.prefill(exec::automatic{}, prompt, s);
    for (index_t i = 0; i < n; ++i) {
      const token_id t = argmax(std::span<const float>(logits.data(), std::size_t(vocab)));
      CHECK(t == greedy[std::size_t(i)]);
      logits = m.step(exec::recurrent{}, t, s);
    }
  }
  CHECK(run({.temperature = 0.8, .top_k = 1}, 5) == greedy);
  CHECK(run({.temperature = 1.5, .top_p = 1e-9}, 6) == greedy);  // the nucleus is the top token

  const sampling_options hot{.temperature = 1.2, .top_k = 40, .top_p = 0.95};
  const auto a = run(hot, 21), b = run(hot, 21);
  CHECK(a == b);
  for (token_id t : a) CHECK((t >= 0 && t < vocab));
  // Other seeds: the tokens follow the seed (at temperature 1.2 over 40 tokens, twelve draws of
  // three seeds all equal to the first would be a broken generator).
  CHECK((run(hot, 22) != a || run(hot, 23) != a));
}

TEST_CASE("the sampler draws by the softmax of the kept candidates", "[models][sampling]") {
  // Logits ln(p) over four tokens: top-k 2 keeps tokens 2 and 0 (p 0.5, 0.3 -> 5/8, 3/8); top-p 0.75
  // keeps the same two. Frequencies of 20000 draws within 5 standard deviations (sd ~ 0.0034).
  const std::vector<float> logits{std::log(0.3f), std::log(0.15f), std::log(0.5f), std::log(0.05f)};
  for (const sampling_options o : {sampling_options{.top_k = 2}, sampling_options{.top_p = 0.75}}) {
    sampler pick(o, 1);
    std::vector<int> count(4);
    constexpr int draws = 20000;
    for (int i = 0; i < draws; ++i) ++count[std::size_t(pick(std::span<const float>(logits)))];
    CHECK(count[1] == 0);
    CHECK(count[3] == 0);
    CHECK(std::abs(count[2] / double(draws) - 0.625) < 5 * 0.0034);
  }
  // Ties go to the lower token id, also when only the top k are sorted.
  const std::vector<float> tied{1.f, 3.f, 2.f, 3.f, 3.f};
  sampler first({.top_k = 1}, 2);
  CHECK(first(std::span<const float>(tied)) == 1);
  CHECK(argmax(std::span<const float>(tied)) == 1);
  const std::vector<float> nan{0.f, std::nanf(""), 1.f};
  sampler any({}, 3);
  REQUIRE_THROWS_WITH(any(std::span<const float>(nan)), Contains("logit 1 is NaN"));
  REQUIRE_THROWS_AS(sampler({.top_p = 0}), seqmix::error);
  REQUIRE_THROWS_AS(sampler({.temperature = -1}), seqmix::error);
}

TEST_CASE("bad model configs raise seqmix::error naming the layer and the field", "[models][errors]") {
  const auto with_layers = [](const std::string& layers) {
    return parse_model_config(R"({"vocab_size": 97, "hidden_size": 64, "layers": [)" + layers + "]}");
  };
  require_error_naming([&] { with_layers(R"({"family": "mamba3"})"); }, {"model layer 0", "unknown family 'mamba3'", "mamba2"});
  require_error_naming([&] { with_layers(R"({"family": "gla", "config": {"num_heads": 4}}, {"family": "mamba2", "config": {"d_model": 32}})"); },
                       {"model layer 1 (mamba2)", "hidden_size 32", "64"});
  require_error_naming([&] { with_layers(R"({"family": "mamba2", "config": {"d_stat": 16}})"); },
                       {"model layer 0 (mamba2)", "unknown config key 'd_stat'"});
  require_error_naming([&] { with_layers(R"({"family": "mamba2", "config": {"d_state": "16"}})"); },
                       {"model layer 0 (mamba2)", "'d_state'", "integer"});
  require_error_naming([&] { with_layers(R"({"family": "gla", "config": {"num_heads": 5}})"); },
                       {"model layer 0 (gla)", "num_heads"});
  require_error_naming([&] { with_layers(R"({"family": "attention", "config": {"num_heads": 4}, "mlp_size": -1})"); },
                       {"model layer 0 (attention)", "mlp_size"});
  require_error_naming([&] { with_layers(R"({"family": "rwkv7", "config": {"head_size": 16, "layer_id": 1}})"); },
                       {"model layer 0 (rwkv7)", "layer_id"});
  require_error_naming([&] { with_layers(R"({"family": "hymba", "config": {"num_attention_heads": 4, "num_key_value_heads": 2,
      "intermediate_size": 128, "time_step_rank": 4, "ssm_state_size": 8, "kv_reuse": true}})"); },
                       {"model layer 0 (hymba)", "kv_reuse"});
  require_error_naming([&] { with_layers(""); }, {"no layers"});
  require_error_naming([&] { parse_model_config(R"({"hidden_size": 64, "layers": []})"); }, {"vocab_size", "missing"});
  require_error_naming([&] { parse_model_config("{"); }, {"not valid JSON"});
}

TEST_CASE("a missing or misshapen weight raises seqmix::error naming the layer and the weight", "[models][errors]") {
  const auto cfg = parse_model_config(stacks[1]);
  const auto bytes = saved(M::init(cfg, 3));
  const auto file = io::safetensors::parse(bytes, "model");
  // Every entry removed in turn: block weights name the block, the others their full name.
  for (const auto& missing : file.names()) {
    const auto partial = test::without_entry(file, missing);
    INFO(missing);
    std::vector<std::string> parts{"'" + missing + "'", "not found"};
    if (missing.starts_with("model.layers.")) parts.push_back("model layer " + missing.substr(13, 1));
    try {
      (void)M::load(partial, cfg);
      FAIL("no seqmix::error");
    } catch (const seqmix::error& e) {
      for (const auto& p : parts) CHECK_THAT(e.what(), Contains(p));
    }
  }
  // A config of another MLP width than the file's.
  auto wider = cfg;
  wider.layers[2].mlp_size = 64;
  require_error_naming([&] { (void)M::load(file, wider); },
                       {"model layer 2", "'model.layers.2.mlp.gate_proj.weight'", "[128, 64]", "[64, 64]"});
  // A token outside the vocabulary.
  const M m = M::load(file, cfg);
  auto s = m.make_state();
  require_error_naming([&] { (void)m.step(exec::recurrent{}, vocab, s); }, {"token 97", "vocabulary"});
  // A state of another model; a KV cache too small for the sequence.
  const M other = M::init(parse_model_config(stacks[0]), 3);
  auto wrong = other.make_state();
  require_error_naming([&] { (void)m.step(exec::recurrent{}, 1, wrong); }, {"model layer 0 (gated_delta_net)", "another family"});
  auto small = m.make_state(/*capacity=*/4);
  require_error_naming([&] { (void)m.prefill(exec::automatic{}, tokens(9, 1), small); }, {"model layer 2 (attention)"});
}

TEST_CASE("a packed batch of sequences of different lengths equals separate prefills", "[models][batch]") {
  const int which = GENERATE(0, 1, 2, 3);
  INFO("stack " << which);
  const M m = M::init(parse_model_config(stacks[which]), 14);
  // Lengths around the 64-row packed-GEMM threshold of the MLPs, and a single token; the states
  // have already seen different prompts.
  const std::vector<index_t> lengths{1, 9, 70};
  std::vector<M::State> packed, single;
  for (std::size_t b = 0; b < lengths.size(); ++b) {
    packed.push_back(m.make_state(128)), single.push_back(m.make_state(128));
    const auto prompt = tokens(index_t(3 + 2 * b), 20 + b);
    m.prefill(exec::automatic{}, prompt, packed.back()), m.prefill(exec::automatic{}, prompt, single.back());
  }
  std::vector<token_id> all;
  std::vector<index_t> offsets{0};
  for (std::size_t b = 0; b < lengths.size(); ++b) {
    const auto seq = tokens(lengths[b], 30 + b);
    all.insert(all.end(), seq.begin(), seq.end());
    offsets.push_back(index_t(all.size()));
  }
  const auto got = m.prefill_packed(exec::chunkwise<64>{.threads = 2}, all, offsets, std::span(packed));
  REQUIRE(got.extent(0) == 3);
  REQUIRE(got.extent(1) == vocab);
  for (std::size_t b = 0; b < lengths.size(); ++b) {
    INFO("sequence " << b);
    const auto want = m.prefill(exec::chunkwise<64>{.threads = 2}, std::span(all).subspan(std::size_t(offsets[b]), std::size_t(lengths[b])), single[b]);
    const auto row = tensor_view<const float, 1>(got.view().ptr(index_t(b), 0), {vocab});
    // The same sums in another grouping: an MLP's product over all 80 rows may take the packed
    // GEMM where a 9-row call takes Eigen.
    SEQMIX_CHECK_WITHIN(row, want.view(), test::tolerance<float>(double(lengths[b]) * 3 * 64 * 64));
    CHECK(packed[b].position() == single[b].position());
    // The states go on identically.
    SEQMIX_CHECK_WITHIN(m.step(exec::recurrent{}, 5, packed[b]), m.step(exec::recurrent{}, 5, single[b]),
                        test::tolerance<float>(double(lengths[b]) * 3 * 64 * 64));
  }
  // Offsets that do not describe the tokens.
  const std::vector<index_t> short_end{0, 1, 10, 79}, empty_seq{0, 1, 1, 80}, too_few{0, 80};
  require_error_naming([&] { (void)m.prefill_packed(exec::automatic{}, all, short_end, std::span(packed)); }, {"offsets", "80"});
  require_error_naming([&] { (void)m.prefill_packed(exec::automatic{}, all, empty_seq, std::span(packed)); }, {"sequence 1", "no tokens"});
  require_error_naming([&] { (void)m.prefill_packed(exec::automatic{}, all, too_few, std::span(packed)); }, {"one offset per sequence"});
}

TEST_CASE("the log-likelihood is the sum of the step logits' log-softmax at the next token", "[models]") {
  const M m = M::init(parse_model_config(stacks[1]), 15);
  const auto seq = tokens(70, 40);  // past one 64-row block of the head
  auto s = m.make_state();
  const double nll = m.negative_log_likelihood(exec::automatic{}, seq, s);
  CHECK(s.position() == 70);
  double want = 0;
  auto r = m.make_state();
  auto logits = m.prefill(exec::automatic{}, std::span(seq).first(1), r);
  for (std::size_t t = 1; t < seq.size(); ++t) {
    double top = -1e300, sum = 0;
    for (index_t v = 0; v < vocab; ++v) top = std::max(top, double(logits.data()[v]));
    for (index_t v = 0; v < vocab; ++v) sum += std::exp(double(logits.data()[v]) - top);
    want += top + std::log(sum) - double(logits.data()[seq[t]]);
    logits = m.step(exec::recurrent{}, seq[t], r);
  }
  // 69 terms of O(log vocab), each logit as close as prefill and decode are (see above).
  CHECK(std::abs(nll - want) <= 69 * test::tolerance<float>(70.0 * 3 * 64 * 64) * 10);
  CHECK(nll > 0);
  require_error_naming([&] { (void)m.negative_log_likelihood(exec::automatic{}, std::span(seq).first(1), s); }, {"two tokens"});
}

TEST_CASE("a config without some parts loads the same checkpoint and computes what skipping them does", "[models][redundancy]") {
  const auto cfg = parse_model_config(stacks[2]);  // RWKV-7, GLA, RWKV-7
  const M m = M::init(cfg, 16);
  const auto bytes = saved(m);
  const auto file = io::safetensors::parse(bytes, "model");
  const auto seq = tokens(12, 41);
  const layer_part drop[] = {{1, part::block}, {2, part::mlp}};
  const auto smaller = cfg.without(drop);
  REQUIRE(smaller.layers.size() == 2);
  CHECK(smaller.layers[1].weights_layer == 2);  // still reads model.layers.2.
  CHECK(smaller.layers[1].mlp_size == 0);
  const auto json = to_json(smaller);
  CHECK(to_json(parse_model_config(json.dump())) == json);
  const M loaded = M::load(file, parse_model_config(json.dump()));
  CHECK(loaded.num_layers() == 2);
  auto a = loaded.make_state(), b = m.make_state();
  run_options<float> skip;
  skip.skip = drop;
  SEQMIX_CHECK_IDENTICAL(loaded.prefill(exec::automatic{}, seq, a), m.prefill(exec::automatic{}, seq, b, skip));

  // A dropped mixer: the block is its MLP alone, with no layer state.
  const layer_part no_gla[] = {{0, part::mlp}, {1, part::mixer}};
  const M mlp_only = M::load(file, cfg.without(no_gla));
  CHECK(mlp_only.mixer(1) == nullptr);
  auto c = mlp_only.make_state(), d = m.make_state();
  CHECK(c.layer(1) == nullptr);
  skip.skip = no_gla;
  SEQMIX_CHECK_IDENTICAL(mlp_only.prefill(exec::automatic{}, seq, c), m.prefill(exec::automatic{}, seq, d, skip));
  // Saved again, the smaller model's file loads with its config (its blocks keep their names).
  io::safetensors_writer w;
  mlp_only.save(w);
  CHECK(saved(M::load(io::safetensors::parse(w.bytes(), "again"), cfg.without(no_gla))) == w.bytes());

  // The RWKV-7 layer 0 leaves v_first for layer 2: it cannot go while layer 2 stays.
  const layer_part producer[] = {{0, part::mixer}};
  require_error_naming([&] { (void)cfg.without(producer); }, {"model layer 2 (rwkv7)", "layer_id 0"});
  skip.skip = producer;
  auto e = m.make_state();
  require_error_naming([&] { (void)m.prefill(exec::automatic{}, seq, e, skip); }, {"layer_id 0"});
  const layer_part both[] = {{0, part::block}, {2, part::block}};
  CHECK(cfg.without(both).layers.size() == 1);
  const layer_part outside[] = {{3, part::block}};
  require_error_naming([&] { (void)cfg.without(outside); }, {"layer 3", "of 3"});
  auto twice = cfg;
  twice.layers[1].weights_layer = 0;
  require_error_naming([&] { twice.validate(); }, {"model layer 1 (gla)", "weights_layer 0"});
}

TEST_CASE("a block that is nearly an identity ranks least important, and dropping it changes nothing", "[models][redundancy]") {
  // Stack 0 (Mamba-2, Mamba-2, attention) with the attention block's output projection and MLP
  // down projection zeroed: it adds nothing to the hidden states.
  const auto cfg = parse_model_config(stacks[0]);
  const M m0 = M::init(cfg, 18);
  const auto bytes = saved(m0);
  const auto zeroed = test::rewritten(io::safetensors::parse(bytes, "model"), [](const std::string& n, std::vector<std::byte>& raw) {
    if (n == "model.layers.2.self_attn.o_proj.weight" || n == "model.layers.2.mlp.down_proj.weight")
      std::fill(raw.begin(), raw.end(), std::byte{0});
    return true;
  });
  const M m = M::load(zeroed, cfg);
  const std::vector<std::vector<token_id>> calibration{tokens(24, 50), tokens(17, 51)};

  auto parts = importance(m, exec::automatic{}, std::span(calibration));
  REQUIRE(parts.size() == 3 + 2 + 3);  // blocks 0 and 2 have an MLP, block 1 has not
  for (const auto& p : parts) {
    INFO(p.where.layer << " " << part_name(p.where.what));
    CHECK(p.score >= 0);
    CHECK(p.score <= 2);
    if (p.where.layer == 2) CHECK(p.score == 0);  // x + 0 is x
    else CHECK(p.score > 1e-6);
  }
  rank(parts);
  CHECK(parts.back().where.layer == 2);
  const auto drop = least_important(cfg, parts, part::block, 1);
  REQUIRE(drop.size() == 1);
  CHECK(drop[0] == layer_part{2, part::block});
  const M dropped = M::load(zeroed, cfg.without(drop));
  for (const auto& seq : calibration) {
    auto a = dropped.make_state(), b = m.make_state();
    SEQMIX_CHECK_IDENTICAL(dropped.prefill(exec::automatic{}, seq, a), m.prefill(exec::automatic{}, seq, b));
  }
  // Dropping it leaves the perplexity as it is; dropping a block that works changes it.
  measure_drops(m, exec::automatic{}, std::span(calibration), std::span(parts));
  const double base = perplexity(m, exec::automatic{}, std::span(calibration));
  for (const auto& p : parts) {
    INFO(p.where.layer << " " << part_name(p.where.what));
    CHECK(p.cannot_drop.empty());
    if (p.where.layer == 2) CHECK(p.dropped_perplexity == base);
    else CHECK(p.dropped_perplexity != base);
  }
}

TEST_CASE("a model with bf16 weights: its own file bit for bit, and the float model of its weights within bf16 rounding", "[models][bf16]") {
  using MB = model<float, bf16>;
  const int which = GENERATE(0, 1, 2, 3);
  INFO("stack " << which);
  const auto cfg = parse_model_config(stacks[which]);
  // A float checkpoint loads as bf16 (each weight rounded to nearest even)...
  const auto bytes32 = saved(M::init(cfg, 19));
  const MB b = MB::load(io::safetensors::parse(bytes32, "f32"), cfg);
  io::safetensors_writer w;
  b.save(w);
  const auto file = io::safetensors::parse(w.bytes(), "bf16");
  CHECK(file.info("model.embed_tokens.weight").type == io::dtype::bf16);
  CHECK(file.info("model.norm.weight").type == io::dtype::f32);  // norms stay float
  // ... and its own bf16 file back bit for bit; MB::init writes the same kind of file.
  io::safetensors_writer again;
  MB::load(file, cfg).save(again);
  CHECK(again.bytes() == w.bytes());
  io::safetensors_writer fresh;
  MB::init(cfg, 19).save(fresh);
  CHECK(io::safetensors::parse(fresh.bytes(), "init").info("model.embed_tokens.weight").type == io::dtype::bf16);

  // The float model of the same (rounded) weights: the bf16 products round the activations to bf16
  // too (2^-8 relative each, independent over products, so they add like a random walk): three blocks
  // of up to three chained products and the head give a few 2^-8 of RMS (measured 0.8-2.2 · 2^-8).
  const M f = M::load(file, cfg);
  const auto seq = tokens(20, 60);
  auto sb = b.make_state();
  auto sf = f.make_state();
  const auto yb = b.prefill(exec::automatic{}, std::span(seq).first(14), sb);
  const auto yf = f.prefill(exec::automatic{}, std::span(seq).first(14), sf);
  SEQMIX_CHECK_CLOSE(yb, yf, 0.0, 4 * std::ldexp(1.0, -8));
  auto yb2 = yb, yf2 = yf;
  for (std::size_t t = 14; t < seq.size(); ++t) yb2 = b.step(exec::recurrent{}, seq[t], sb), yf2 = f.step(exec::recurrent{}, seq[t], sf);
  SEQMIX_CHECK_CLOSE(yb2, yf2, 0.0, 4 * std::ldexp(1.0, -8));
  // Prefill then decode equals one prefill in the bf16 model too.
  auto one = b.make_state();
  SEQMIX_CHECK_WITHIN(yb2, b.prefill(exec::recurrent{}, seq, one), test::tolerance<float>(20.0 * 3 * 64 * 64));
}
