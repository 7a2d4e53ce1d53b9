// Delta-rule benchmarks: the gated_delta_net and delta_net ops per policy (prefill and decode) and
// the GatedDeltaNet / DeltaNet layers.
#include <seqmix/kernels/delta_rule/delta_rule.hpp>
#include <seqmix/layers/delta_net.hpp>
#include <seqmix/layers/gated_delta_net.hpp>

#include "common.hpp"

namespace seqmix::bench {
namespace {

// Op FLOPs per token and value head: 2·K·V for Sᵀk, 2·K·V to add k uᵀ into the state and 2·K·V to
// read q·S (the per-head decay multiply is not counted).
double op_flops(index_t B, index_t T, index_t HV, index_t K, index_t V) { return 6.0 * B * T * HV * K * V; }

// gated_delta_net / delta_net op, B = 1, H = HV = 8.
template <class P>
void op(bool gated, const char* policy_name, P policy, const char* phase, index_t T, index_t D, int threads) {
  const index_t B = 1, H = 8, K = D, V = D;
  policy.threads = threads;
  const std::string layer = gated ? "gated_delta_net" : "delta_net";
  std::vector<std::pair<const char*, long>> args{{"B", B}, {"T", T}, {"H", H}, {"K", K}, {"V", V}};
  if constexpr (exec::is_chunkwise_v<P>) args.push_back({"C", long(P::chunk)});
  args.push_back({"threads", threads});
  add(name(layer + "/op/" + policy_name + "/" + phase, args),
      double(B * T), op_flops(B, T, H, K, V), [=](benchmark::State& state) {
        auto q = uniform_tensor<float, 4>({B, T, H, K}, -1, 1, 1), k = uniform_tensor<float, 4>({B, T, H, K}, -1, 1, 2);
        kernels::delta_rule::l2_normalize_rows(q.data(), B * T * H, K, K, 1e-6f);
        kernels::delta_rule::l2_normalize_rows(k.data(), B * T * H, K, K, 1e-6f);
        const auto v = uniform_tensor<float, 4>({B, T, H, V}, -1, 1, 3);
        const auto g = uniform_tensor<float, 3>({B, T, H}, -0.2, 0, 4);  // decays typical of trained models
        const auto beta = uniform_tensor<float, 3>({B, T, H}, 0.1, 0.9, 5);
        tensor<float, 4> o({B, T, H, V}), s({B, H, K, V});
        for (auto _ : state) {
          if (gated) kernels::delta_rule::forward(policy, q, k, v, g, beta, o, s);
          else kernels::delta_rule::forward(policy, q, k, v, beta, o, s);
          benchmark::DoNotOptimize(o.data());
        }
      });
}

// Runs `net` over x [1, T, D] (T = 1: step()).
template <class Net, class P>
void run_layer(benchmark::State& state, const Net& net, const P& policy, index_t T, index_t D) {
  const auto x = uniform_tensor<float, 3>({1, T, D}, -1, 1, 10);
  tensor<float, 3> y({1, T, D});
  auto s = net.make_state(1);
  for (auto _ : state) {
    if (T == 1) net.step(exec::recurrent{policy.threads}, x.view().slice(1, 0), y.view().slice(1, 0), s);
    else net.forward(policy, x.view(), y.view(), s);
    benchmark::DoNotOptimize(y.data());
  }
}

// GatedDeltaNet: hidden 1024, 8 heads of head_dim 64, expand_v 2 (K 64, V 128), conv 4.
template <class WT, class P>
void gdn_layer(const char* policy_name, P policy, const char* phase, index_t T, int threads) {
  using L = layers::GatedDeltaNet<float, WT>;
  typename L::config c;
  c.hidden_size = 1024, c.head_dim = 64, c.num_heads = 8, c.expand_v = 2;
  const index_t D = c.hidden_size, kd = c.key_dim(), vd = c.value_dim(), HV = c.v_heads(), W = c.conv_size;
  const double proj = 2.0 * D * (2 * kd + 2 * vd + 2 * HV) + 2.0 * vd * D + 2.0 * W * (2 * kd + vd);  // per token
  policy.threads = threads;
  add(with_weights<WT>(name(std::string("gated_delta_net/layer/") + policy_name + "/" + phase,
           {{"B", 1}, {"T", T}, {"D", D}, {"H", HV}, {"K", c.head_k_dim()}, {"V", c.head_v_dim()}, {"threads", threads}})),
      double(T), T * proj + op_flops(1, T, HV, c.head_k_dim(), c.head_v_dim()), [=](benchmark::State& state) {
        run_layer(state, L::init(c, 1), policy, T, D);
      });
}

// DeltaNet: hidden 1024, 8 heads (K = V = 128), conv 4, no output gate.
template <class WT, class P>
void dn_layer(const char* policy_name, P policy, const char* phase, index_t T, int threads) {
  using L = layers::DeltaNet<float, WT>;
  typename L::config c;
  c.hidden_size = 1024, c.num_heads = 8;
  const index_t D = c.hidden_size, kd = c.key_dim(), vd = c.value_dim(), H = c.num_heads, W = c.conv_size;
  const double proj = 2.0 * D * (2 * kd + vd + H) + 2.0 * vd * D + 2.0 * W * (2 * kd + vd);
  policy.threads = threads;
  add(with_weights<WT>(name(std::string("delta_net/layer/") + policy_name + "/" + phase,
           {{"B", 1}, {"T", T}, {"D", D}, {"H", H}, {"K", c.head_k_dim()}, {"V", c.head_v_dim()}, {"threads", threads}})),
      double(T), T * proj + op_flops(1, T, H, c.head_k_dim(), c.head_v_dim()), [=](benchmark::State& state) {
        run_layer(state, L::init(c, 1), policy, T, D);
      });
}

const bool registered = [] {
  for (const index_t D : {64, 128}) {
    for (int threads : {1, 2}) {
      op(true, "recurrent", exec::recurrent{}, "prefill", 2048, D, threads);
      op(true, "chunkwise", exec::chunkwise<64>{}, "prefill", 2048, D, threads);
      op(true, "automatic", exec::automatic{}, "prefill", 2048, D, threads);
    }
    op(true, "chunkwise", exec::chunkwise<16>{}, "prefill", 2048, D, 1);
    op(true, "chunkwise", exec::chunkwise<32>{}, "prefill", 2048, D, 1);
    op(true, "parallel", exec::parallel{}, "prefill", 2048, D, 1);
    for (index_t T : {16, 64, 256}) {  // short prefills: the exec::automatic rule (docs/policy.md)
      op(true, "recurrent", exec::recurrent{}, "prefill", T, D, 1);
      op(true, "chunkwise", exec::chunkwise<64>{}, "prefill", T, D, 1);
      op(true, "parallel", exec::parallel{}, "prefill", T, D, 1);
    }
    for (int threads : {1, 2}) op(true, "recurrent", exec::recurrent{}, "decode", 1, D, threads);
    op(false, "recurrent", exec::recurrent{}, "prefill", 2048, D, 1);
    op(false, "chunkwise", exec::chunkwise<64>{}, "prefill", 2048, D, 1);
    op(false, "recurrent", exec::recurrent{}, "decode", 1, D, 1);
  }
  for (int threads : {1, 2}) {
    gdn_layer<float>("automatic", exec::automatic{}, "prefill", 2048, threads);
    gdn_layer<bf16>("automatic", exec::automatic{}, "prefill", 2048, threads);
    dn_layer<float>("automatic", exec::automatic{}, "prefill", 2048, threads);
    dn_layer<bf16>("automatic", exec::automatic{}, "prefill", 2048, threads);
  }
  for (int threads : {1, 2}) {
    gdn_layer<float>("recurrent", exec::recurrent{}, "decode", 1, threads);
    gdn_layer<bf16>("recurrent", exec::recurrent{}, "decode", 1, threads);
    dn_layer<float>("recurrent", exec::recurrent{}, "decode", 1, threads);
    dn_layer<bf16>("recurrent", exec::recurrent{}, "decode", 1, threads);
  }
  return true;
}();

}  // namespace
}  // namespace seqmix::bench
