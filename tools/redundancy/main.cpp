// seqmix-redundancy: which layers of a model barely change its hidden states ("What Matters in
// Transformers? Not All Attention Is Needed"). Runs calibration sequences through the model, scores
// every block, mixer and MLP by 1 − cos(hidden in, hidden out) averaged over the tokens, ranks them,
// reports the calibration perplexity with each one dropped, and can write the config without the k
// least important mixers or blocks (it loads the same checkpoint). docs/models.md.
//
//   seqmix-redundancy MODEL.safetensors CONFIG.json [--calibration FILE | --sequences N --length L --seed S]
//                     [--drop K --what mixer|block|mlp --out CONFIG.json] [--threads T] [--no-perplexity]
#include <seqmix/models/generate.hpp>
#include <seqmix/models/json_config.hpp>
#include <seqmix/models/model.hpp>
#include <seqmix/models/redundancy.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "../common/cli.hpp"

using namespace seqmix;
using namespace seqmix::tools;
using models::token_id;

namespace {

constexpr const char* usage =
    "usage: seqmix-redundancy MODEL.safetensors CONFIG.json [--calibration FILE | --sequences N --length L --seed S]\n"
    "                         [--drop K --what mixer|block|mlp --out CONFIG.json] [--threads T] [--no-perplexity]\n"
    "  --calibration   a text file of token ids, one sequence per line (ids separated by spaces or commas)\n"
    "  --sequences     without --calibration: N sequences (default 4) of L tokens (default 128) sampled\n"
    "                  from the model itself at temperature 1 with --seed (default 0)\n"
    "  --drop          write to --out the config without the K least important parts of kind --what\n"
    "                  (default mixer); cross-layer producers whose consumers stay are kept\n"
    "  --no-perplexity skip the perplexity of each drop (one pass over the calibration per part)\n";

struct options {
  std::string model, config, calibration, out;
  index_t sequences = 4, length = 128, drop = 0;
  models::part what = models::part::mixer;
  int threads = 1;
  std::uint64_t seed = 0;
  bool perplexity = true;
};

options parse(int argc, char** argv) {
  options o;
  const auto positional = parse_args(argc, argv, {"--no-perplexity"}, [&](const std::string& a, const std::string& v) {
    if (a == "--no-perplexity") o.perplexity = false;
    else if (a == "--calibration") o.calibration = v;
    else if (a == "--sequences") o.sequences = number<index_t>(a, v);
    else if (a == "--length") o.length = number<index_t>(a, v);
    else if (a == "--seed") o.seed = number<std::uint64_t>(a, v);
    else if (a == "--drop") o.drop = number<index_t>(a, v);
    else if (a == "--out") o.out = v;
    else if (a == "--threads") o.threads = number<int>(a, v);
    else if (a == "--what") {
      if (v == "mixer") o.what = models::part::mixer;
      else if (v == "block") o.what = models::part::block;
      else if (v == "mlp") o.what = models::part::mlp;
      else throw error("--what is mixer, block or mlp, not '" + v + "'");
    } else throw error("unknown option " + a);
  });
  if (positional.size() != 2) throw error("expected MODEL.safetensors and CONFIG.json");
  o.model = positional[0], o.config = positional[1];
  require(o.sequences >= 1 && o.length >= 2 && o.threads >= 1 && o.drop >= 0, "options",
          "--sequences and --threads must be positive, --length at least 2, --drop not negative");
  require((o.drop > 0) == !o.out.empty(), "options", "--drop and --out go together");
  return o;
}

// One sequence of ids per non-empty line.
std::vector<std::vector<token_id>> read_calibration(const std::string& path) {
  std::vector<std::vector<token_id>> seqs;
  std::istringstream lines(read_text(path));
  for (std::string line; std::getline(lines, line);) {
    for (char& c : line)
      if (c == ',') c = ' ';
    std::istringstream in(line);
    std::vector<token_id> seq;
    for (std::string id; in >> id;) seq.push_back(number<token_id>("--calibration", id));
    if (!seq.empty()) {
      require(seq.size() >= 2, "--calibration", "line " + std::to_string(seqs.size() + 1) + " has fewer than two tokens");
      seqs.push_back(std::move(seq));
    }
  }
  require(!seqs.empty(), "--calibration", path + " holds no token ids");
  return seqs;
}

int run(const options& o) {
  const auto cfg = models::parse_model_config(read_text(o.config));
  const auto file = io::safetensors::map(o.model);
  const auto m = models::model<float>::load(file, cfg);
  const exec::automatic policy{.threads = o.threads};

  std::vector<std::vector<token_id>> calibration;
  if (!o.calibration.empty()) calibration = read_calibration(o.calibration);
  else
    for (index_t i = 0; i < o.sequences; ++i) {  // the model's own text: a random model has no other
      models::sampler pick({.temperature = 1}, o.seed + std::uint64_t(i));
      auto s = m.make_state(o.length);
      const token_id first = token_id((o.seed * 31 + std::uint64_t(i) * 7919) % std::uint64_t(cfg.vocab_size));
      auto seq = models::generate(m, policy, s, std::span(&first, 1), o.length - 1, pick);
      seq.insert(seq.begin(), first);
      calibration.push_back(std::move(seq));
    }
  for (const auto& seq : calibration)
    for (token_id t : seq) require(t >= 0 && t < cfg.vocab_size, "--calibration", "token " + std::to_string(t) + " is outside the vocabulary");
  std::size_t tokens = 0;
  for (const auto& seq : calibration) tokens += seq.size();
  std::printf("model: %zu blocks, hidden %td, vocab %td; calibration: %zu sequences, %zu tokens%s\n", m.num_layers(),
              cfg.hidden_size, cfg.vocab_size, calibration.size(), tokens,
              o.calibration.empty() ? " (sampled from the model)" : "");

  auto parts = models::importance(m, policy, std::span(calibration));
  const double base = models::perplexity(m, policy, std::span(calibration));
  if (o.perplexity) models::measure_drops(m, policy, std::span(calibration), std::span(parts));
  models::rank(parts);
  std::printf("perplexity: %.4f\n\n%-5s %-6s %-16s %-6s %14s %16s %10s\n", base, "rank", "layer", "family", "part",
              "1 - cos", "ppl if dropped", "change");
  for (std::size_t r = 0; r < parts.size(); ++r) {
    const auto& p = parts[r];
    std::printf("%-5zu %-6zu %-16s %-6s %14.6g ", r + 1, p.where.layer, std::string(cfg.layers[p.where.layer].family_name()).c_str(),
                models::part_name(p.where.what), p.score);
    if (!p.cannot_drop.empty()) std::printf("%16s %10s\n", "kept", "(producer)");
    else if (!o.perplexity) std::printf("%16s %10s\n", "-", "-");
    else std::printf("%16.4f %+9.2f%%\n", p.dropped_perplexity, 100 * (p.dropped_perplexity / base - 1));
  }
  std::printf("(ranked most important first; 1 - cos averaged over tokens; ppl: calibration perplexity with only that part dropped)\n");

  if (o.drop > 0) {
    const auto drop = models::least_important(cfg, parts, o.what, std::size_t(o.drop));
    const auto smaller = cfg.without(drop);
    std::ofstream out(o.out);
    out << models::to_json(smaller).dump(2) << "\n";
    if (!out) throw error("cannot write " + o.out);
    std::printf("\nwrote %s without %zu %s(s):", o.out.c_str(), drop.size(), models::part_name(o.what));
    for (const auto& d : drop) std::printf(" %zu", d.layer);
    const auto dm = models::model<float>::load(file, smaller);
    const double ppl = models::perplexity(dm, policy, std::span(calibration));
    std::printf("; its perplexity %.4f (%+.2f%%)\n", ppl, 100 * (ppl / base - 1));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return tool_main("seqmix-redundancy", usage, argc, argv, parse, run); }
