// seqmix-run: loads a model (a safetensors checkpoint and its JSON config, docs/models.md),
// prefills a prompt of token ids, generates tokens and reports what the run cost: tokens/s of the
// prefill and the decode (a progress line on stderr), the generated ids, and a table of each block's
// state bytes (recurrent state, conv tails, KV slots) and time.
//
//   seqmix-run MODEL.safetensors CONFIG.json [--prompt 1,2,3 | --prompt-length L] [--tokens N]
//              [--threads T] [--capacity C] [--temperature X --top-k K --top-p P --seed S] [--weights f32|bf16|auto]
#include <seqmix/models/generate.hpp>
#include <seqmix/models/json_config.hpp>
#include <seqmix/models/model.hpp>
#include <seqmix/models/state_bytes.hpp>

#include "../common/cli.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

using namespace seqmix;
using namespace seqmix::tools;
using models::token_id;

namespace {

constexpr const char* usage =
    "usage: seqmix-run MODEL.safetensors CONFIG.json [--prompt 1,2,3 | --prompt-length L] [--tokens N]\n"
    "                  [--threads T] [--capacity C] [--temperature X --top-k K --top-p P --seed S] [--weights W]\n"
    "  --prompt        token ids (default: L ids (7 + 31 i) mod vocab, L = --prompt-length, 64)\n"
    "  --tokens        tokens to generate (default 32)\n"
    "  --threads       threads of every layer, MLP and the head (default 1)\n"
    "  --capacity      KV-cache tokens of attention layers (default: prompt + tokens; 0: the config's)\n"
    "  --temperature   0 (default): greedy; else sampling with --top-k (0: all), --top-p (1: all), --seed\n"
    "  --weights       f32, bf16 or auto (default: bf16 when the checkpoint's embedding is stored as BF16)\n";

struct options {
  std::string model, config;
  std::vector<token_id> prompt;
  index_t prompt_length = 64, tokens = 32, capacity = -1;
  int threads = 1;
  models::sampling_options sampling{.temperature = 0};
  std::uint64_t seed = 0;
  std::string weights = "auto";  // f32, bf16, or auto: bf16 when the checkpoint's embedding is BF16
};

options parse(int argc, char** argv) {
  options o;
  const auto positional = parse_args(argc, argv, {}, [&](const std::string& a, const std::string& v) {
    if (a == "--prompt") {
      std::istringstream in(v);
      for (std::string id; std::getline(in, id, ',');) o.prompt.push_back(number<token_id>(a, id));
    } else if (a == "--prompt-length") o.prompt_length = number<index_t>(a, v);
    else if (a == "--tokens") o.tokens = number<index_t>(a, v);
    else if (a == "--threads") o.threads = number<int>(a, v);
    else if (a == "--capacity") o.capacity = number<index_t>(a, v);
    else if (a == "--weights") {
      require(v == "f32" || v == "bf16" || v == "auto", "options", "--weights is f32, bf16 or auto, not '" + v + "'");
      o.weights = v;
    }
    else if (a == "--temperature") o.sampling.temperature = number<double>(a, v);
    else if (a == "--top-k") o.sampling.top_k = number<index_t>(a, v);
    else if (a == "--top-p") o.sampling.top_p = number<double>(a, v);
    else if (a == "--seed") o.seed = number<std::uint64_t>(a, v);
    else throw error("unknown option " + a);
  });
  if (positional.size() != 2) throw error("expected MODEL.safetensors and CONFIG.json");
  o.model = positional[0], o.config = positional[1];
  require(o.tokens >= 1 && o.threads >= 1 && o.prompt_length >= 1, "options",
          "--tokens, --threads and --prompt-length must be positive");
  return o;
}

template <class W>
int run_with(const options& o, const models::model_config<float>& cfg, const io::safetensors& file) {
  const auto m = models::model<float, W>::load(file, cfg);
  long long params = 0;
  for (const auto& n : file.names()) params += file.info(n).numel();
  std::map<std::string, int> count;
  for (const auto& b : cfg.layers) ++count[std::string(b.family_name())];
  std::string mix;
  for (const auto& [name, n] : count) mix += (mix.empty() ? "" : ", ") + name + " x" + std::to_string(n);
  std::printf("model: %zu blocks (%s), hidden %td, vocab %td, %s parameters, %s weights; %d thread(s), SIMD %s\n",
              m.num_layers(), mix.c_str(), cfg.hidden_size, cfg.vocab_size, grouped(params).c_str(),
              std::is_same_v<W, bf16> ? "bf16" : "f32", o.threads, simd::arch_name());
  std::fflush(stdout);  // before the progress lines on stderr, also when both go to one file

  std::vector<token_id> prompt = o.prompt;
  if (prompt.empty())
    for (index_t i = 0; i < o.prompt_length; ++i) prompt.push_back(token_id((7 + 31 * i) % cfg.vocab_size));
  const index_t capacity = o.capacity >= 0 ? o.capacity : index_t(prompt.size()) + o.tokens;
  auto s = m.make_state(capacity);
  models::sampler pick(o.sampling, o.seed);
  const exec::automatic policy{.threads = o.threads};
  const std::size_t L = m.num_layers();
  std::vector<double> prefill_s(L), decode_s(L);

  const auto t0 = std::chrono::steady_clock::now();
  auto logits = m.prefill(policy, prompt, s, prefill_s);
  const double prefill_time = since(t0);
  std::fprintf(stderr, "prefill: %zu tokens in %.3f s (%.0f tokens/s)\n", prompt.size(), prefill_time,
               double(prompt.size()) / prefill_time);
  // Each generated token but the last is fed back with step(); a terminal sees the line update.
  const bool tty = isatty(fileno(stderr));
  std::vector<token_id> out;
  const auto t1 = std::chrono::steady_clock::now();
  double decode_time = 0;
  for (;;) {
    out.push_back(pick(std::span<const float>(logits.data(), std::size_t(logits.size()))));
    decode_time = since(t1);
    const index_t steps = index_t(out.size()) - 1;
    const bool last = index_t(out.size()) == o.tokens;
    if (tty || last)
      std::fprintf(stderr, "%sdecode: %zu/%td tokens, %.3f s (%.0f tokens/s)%s", tty ? "\r" : "", out.size(), o.tokens,
                   decode_time, steps > 0 ? double(steps) / decode_time : 0.0, last ? "\n" : "");
    if (last) break;
    logits = m.step(policy, out.back(), s, decode_s);
  }

  std::printf("prompt (%zu):", prompt.size());
  for (std::size_t i = 0; i < prompt.size(); ++i)  // a long one as its first 12 and last 4 ids
    if (prompt.size() <= 16 || i < 12 || i + 4 >= prompt.size()) std::printf(" %d", prompt[i]);
    else if (i == 12) std::printf(" ...");
  std::printf("\ngenerated (%zu):", out.size());
  for (token_id t : out) std::printf(" %d", t);
  const index_t steps = o.tokens - 1;
  std::printf("\n\n%-6s %-16s %14s %12s %16s\n", "block", "family", "state bytes", "prefill ms",
              steps > 0 ? "decode us/token" : "decode us");
  double sum_p = 0, sum_d = 0;
  for (std::size_t i = 0; i < L; ++i) {
    sum_p += prefill_s[i], sum_d += decode_s[i];
    const std::string family = std::string(cfg.layers[i].family_name()) + (cfg.layers[i].drop_mixer ? " (mlp only)" : "");
    std::printf("%-6zu %-16s %14s %12.3f %16.1f\n", i, family.c_str(),
                grouped(models::state_bytes(m, s, i)).c_str(), prefill_s[i] * 1e3,
                decode_s[i] * 1e6 / double(std::max<index_t>(steps, 1)));
  }
  // The rest of the wall time: embedding, final norm, LM head (and sampling, for decode).
  std::printf("%-6s %-16s %14s %12.3f %16.1f\n", "-", "embed+head", "-", (prefill_time - sum_p) * 1e3,
              (decode_time - sum_d) * 1e6 / double(std::max<index_t>(steps, 1)));
  std::printf("%-6s %-16s %14s %12.3f %16.1f\n", "total", "", grouped(models::state_bytes(m, s)).c_str(),
              prefill_time * 1e3, decode_time * 1e6 / double(std::max<index_t>(steps, 1)));
  std::printf("(state bytes: recurrent and conv states, KV slots allocated for %s tokens; the sequence holds %td)\n",
              capacity > 0 ? std::to_string(capacity).c_str() : "max_length", s.position());
  return 0;
}

int run(const options& o) {
  const auto cfg = models::parse_model_config(read_text(o.config));
  const auto file = io::safetensors::map(o.model);
  const bool bf16_file = file.contains("model.embed_tokens.weight") && file.info("model.embed_tokens.weight").type == io::dtype::bf16;
  return o.weights == "bf16" || (o.weights == "auto" && bf16_file) ? run_with<bf16>(o, cfg, file) : run_with<float>(o, cfg, file);
}

}  // namespace

int main(int argc, char** argv) { return tool_main("seqmix-run", usage, argc, argv, parse, run); }
