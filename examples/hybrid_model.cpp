// seqmix-hybrid-example: writes two random hybrid models — each a safetensors checkpoint and its
// JSON config — that seqmix-run then loads, so a whole model runs without a downloaded checkpoint:
//   jamba-like:      7 Mamba-2 blocks and 1 attention block (7:1), a SwiGLU MLP in every block
//   qwen3next-like:  Gated DeltaNet and attention 3:1 (6 and 2 of 8 blocks), an untied LM head
//
//   seqmix-hybrid-example DIR [--hidden C] [--vocab V]   (default: hidden 256, vocab 1000)
//   seqmix-run DIR/jamba-like.safetensors DIR/jamba-like.json
#include <seqmix/models/json_config.hpp>
#include <seqmix/models/model.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

using namespace seqmix;
using nlohmann::json;

namespace {

// Heads of 64 dims (the models' usual head size), half as many KV heads (grouped-query attention).
json attention(index_t C) {
  const index_t heads = std::max<index_t>(C / 64, 1);
  return {{"family", "attention"}, {"config", {{"num_heads", heads}, {"num_kv_heads", std::max<index_t>(heads / 2, 1)}}}};
}
json mamba2() { return {{"family", "mamba2"}, {"config", {{"d_state", 64}, {"headdim", 64}}}}; }
json gated_delta_net(index_t C) {
  return {{"family", "gated_delta_net"}, {"config", {{"head_dim", 64}, {"num_heads", std::max<index_t>(C / 64, 1)}}}};
}

// 8 blocks: `every`-th one attention (1-based), the others `other`; an MLP of 3C in each.
json stack(index_t C, index_t V, bool tied, int every, const json& other) {
  json layers = json::array();
  for (int i = 1; i <= 8; ++i) {
    json b = i % every == 0 ? attention(C) : other;
    b["mlp_size"] = 3 * C;
    layers.push_back(b);
  }
  return {{"vocab_size", V}, {"hidden_size", C}, {"tie_word_embeddings", tied}, {"layers", layers}};
}

void write(const std::filesystem::path& dir, const std::string& name, const json& config, std::uint64_t seed) {
  const auto cfg = models::parse_model_config(config.dump());  // validated as seqmix-run will read it
  io::safetensors_writer out;
  models::model<float>::init(cfg, seed).save(out);
  out.save(dir / (name + ".safetensors"));
  std::ofstream(dir / (name + ".json")) << config.dump(2) << "\n";
  std::printf("wrote %s/%s.safetensors and %s.json\n", dir.c_str(), name.c_str(), name.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  try {
    index_t C = 256, V = 1000;
    std::string dir;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if ((a == "--hidden" || a == "--vocab") && i + 1 < argc) (a == "--hidden" ? C : V) = std::stol(argv[++i]);
      else if (dir.empty() && !a.starts_with("--")) dir = a;
      else throw error("usage: seqmix-hybrid-example DIR [--hidden C] [--vocab V]");
    }
    require(!dir.empty(), "seqmix-hybrid-example", "usage: seqmix-hybrid-example DIR [--hidden C] [--vocab V]");
    std::filesystem::create_directories(dir);
    write(dir, "jamba-like", stack(C, V, true, 8, mamba2()), 1);
    write(dir, "qwen3next-like", stack(C, V, false, 4, gated_delta_net(C)), 2);
    return 0;
  } catch (const std::exception& e) {  // seqmix::error, or std::stol / the filesystem
    std::fprintf(stderr, "seqmix-hybrid-example: %s\n", e.what());
    return 1;
  }
}
