// seqmix-demo: load a GatedLinearAttention layer from a safetensors file, prefill a prompt with the
// chunkwise policy, stream the remaining tokens with step(), check both against the file's
// reference output, then time prefill and decode for this layer and a larger one.
//
//   seqmix-demo [layer.safetensors]   (default: the GLA reference case shipped with the tests)
#include <seqmix/seqmix.hpp>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

using namespace seqmix;
using GLA = layers::GatedLinearAttention<float>;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Median-of-5 prefill and per-token decode time of `gla` on a T-token prompt.
void time_layer(const char* label, const GLA& gla, index_t T) {
  const auto x = uniform_tensor<float, 3>({1, T, gla.cfg().hidden_size}, -1, 1, 1);
  tensor<float, 3> y(x.extents());
  auto median = [](std::vector<double> v) { std::sort(v.begin(), v.end()); return v[v.size() / 2]; };
  std::vector<double> prefill, decode;
  for (int rep = 0; rep < 5; ++rep) {
    auto state = gla.make_state(1);
    auto t0 = std::chrono::steady_clock::now();
    gla.forward(exec::chunkwise<64>{}, x.view(), y.view(), state);
    prefill.push_back(seconds_since(t0));
    t0 = std::chrono::steady_clock::now();
    for (index_t t = 0; t < 64; ++t) gla.step(exec::recurrent{}, x.view().slice(1, t), y.view().slice(1, t), state);
    decode.push_back(seconds_since(t0) / 64);
  }
  std::printf("  %-34s prefill T=%-5td %9.0f tokens/s   decode %7.1f us/token\n", label, T,
              double(T) / median(prefill), median(decode) * 1e6);
}

// A layer of the given shape with random weights at the upstream init's scale.
GLA random_layer(index_t hidden, index_t heads) { return GLA::init({.hidden_size = hidden, .num_heads = heads}, 2); }

}  // namespace

int main(int argc, char** argv) {
  const std::string path = argc > 1 ? argv[1] : SEQMIX_DEMO_LAYER_FILE;
  try {
    const auto file = io::safetensors::load(path);
    const auto meta = nlohmann::json::parse(file.metadata("seqmix.config").value_or("{}"));
    GLA::config cfg;  // read through the config's field table (upstream keys)
    layers::for_each_field<GLA::config>([&](const auto& f) {
      if (meta.contains(f.key) && !meta[f.key].is_null()) meta[f.key].get_to(cfg.*(f.member));
    });
    const GLA gla = GLA::load(file, cfg, "param.");
    std::printf("seqmix %d.%d.%d, SIMD target %s\n", SEQMIX_VERSION_MAJOR, SEQMIX_VERSION_MINOR,
                SEQMIX_VERSION_PATCH, simd::arch_name());
    std::printf("loaded %s: hidden %td, %td heads, head dims K=%td V=%td\n", path.c_str(), cfg.hidden_size,
                cfg.num_heads, cfg.head_k_dim(), cfg.head_v_dim());

    // The file's first sequence: prefill all but the last 16 tokens, then stream those one by one.
    const auto x_all = file.get<float, 3>("in.x"), y_ref = file.get<float, 3>("out.y");
    const index_t T = x_all.extent(1), prompt = std::max<index_t>(T - 16, 1);
    const auto x = x_all.view().subrange(0, 0, 1), want = y_ref.view().subrange(0, 0, 1);
    tensor<float, 3> y({1, T, cfg.hidden_size});
    auto state = gla.make_state(1);
    if (file.contains("state_in.h")) {  // the case continues a sequence: start from its state
      const auto h = file.get<float, 4>("state_in.h");
      for (index_t i = 0; i < state.h.size(); ++i) state.h.data()[i] = h.data()[i];
    }
    gla.forward(exec::chunkwise<64>{}, x.subrange(1, 0, prompt), y.view().subrange(1, 0, prompt), state);
    for (index_t t = prompt; t < T; ++t) gla.step(exec::recurrent{}, x.slice(1, t), y.view().slice(1, t), state);
    double err = 0;
    for (index_t t = 0; t < T; ++t)
      for (index_t c = 0; c < cfg.hidden_size; ++c) err = std::max(err, double(std::abs(y(0, t, c) - want(0, t, c))));
    std::printf("prefill %td tokens (chunkwise) + %td step() tokens: max |y - reference| = %.2e\n", prompt,
                T - prompt, err);

    std::printf("per-layer figures (float32, 1 thread, median of 5):\n");
    time_layer("GatedLinearAttention (this file)", gla, 1024);
    time_layer("GatedLinearAttention 1024/8 heads", random_layer(1024, 8), 2048);
    return err < 1e-3 ? 0 : 1;
  } catch (const seqmix::error& e) {
    std::fprintf(stderr, "seqmix-demo: %s\n", e.what());
    return 1;
  }
}
