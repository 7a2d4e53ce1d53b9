// Mamba and Mamba2 layers: forward in pieces versus one pass, step() versus forward, policies
// against each other, loading by upstream names under a prefix, and error messages.
#include <seqmix/io/safetensors.hpp>
#include <seqmix/layers/mamba.hpp>
#include <seqmix/layers/mamba2.hpp>

#include "support/compare.hpp"

using namespace seqmix;
using mamba = layers::Mamba<float>;
using mamba2 = layers::Mamba2<float>;

namespace {

// Weights in the ranges of trained checkpoints: projections ~ 1/sqrt(fan_in), A_log = log(1..N)
// (Mamba-1) / log(1..16) (Mamba-2), dt biases giving dt in ~[1e-3, 0.1].
mamba::weights random_weights(const mamba::config& c, unsigned seed) {
  const index_t dm = c.d_model, di = c.d_inner(), N = c.d_state, R = c.rank();
  const double a = 1 / std::sqrt(double(dm)), b = 1 / std::sqrt(double(di)), r = 1 / std::sqrt(double(R));
  tensor<float, 2> A_log({di, N});
  for (index_t d = 0; d < di; ++d)
    for (index_t n = 0; n < N; ++n) A_log(d, n) = float(std::log(double(n + 1)));
  return {{uniform_tensor<float, 2>({2 * di, dm}, -a, a, seed), {}},
          {uniform_tensor<float, 2>({di, c.d_conv}, -0.5, 0.5, seed + 1), uniform_tensor<float, 1>({di}, -0.2, 0.2, seed + 2)},
          {uniform_tensor<float, 2>({R + 2 * N, di}, -b, b, seed + 3), {}},
          {uniform_tensor<float, 2>({di, R}, -r, r, seed + 4), {}},
          uniform_tensor<float, 1>({di}, -6, -2.3, seed + 5),
          std::move(A_log),
          uniform_tensor<float, 1>({di}, 0.5, 1.5, seed + 6),
          {uniform_tensor<float, 2>({dm, di}, -b, b, seed + 7), {}}};
}

mamba2::weights random_weights(const mamba2::config& c, unsigned seed) {
  const index_t dm = c.d_model, di = c.d_inner(), H = c.nheads();
  const double a = 1 / std::sqrt(double(dm)), b = 1 / std::sqrt(double(di));
  return {{uniform_tensor<float, 2>({c.d_in_proj(), dm}, -a, a, seed), {}},
          {uniform_tensor<float, 2>({c.conv_dim(), c.d_conv}, -0.5, 0.5, seed + 1),
           uniform_tensor<float, 1>({c.conv_dim()}, -0.2, 0.2, seed + 2)},
          uniform_tensor<float, 1>({H}, -6, -2.3, seed + 3),
          uniform_tensor<float, 1>({H}, 0, 2.7, seed + 4),
          uniform_tensor<float, 1>({H}, 0.5, 1.5, seed + 5),
          uniform_tensor<float, 1>({di}, 0.5, 1.5, seed + 6),
          {uniform_tensor<float, 2>({dm, di}, -b, b, seed + 7), {}}};
}

mamba::config m1_config() {
  mamba::config c;
  c.d_model = 40, c.d_state = 12;  // d_inner 80, dt_rank 3: not multiples of the lanes
  return c;
}

mamba2::config m2_config() {
  mamba2::config c;
  c.d_model = 48, c.d_state = 16, c.headdim = 24, c.ngroups = 2;  // d_inner 96, 4 heads, 2 groups
  return c;
}

// Runs `forward` over x in the given pieces (cut points) and compares with one pass.
template <class Layer>
void check_pieces(const Layer& m, const tensor<float, 3>& x, std::initializer_list<index_t> cuts) {
  auto s_full = m.make_state(x.extent(0));
  const auto y_full = m.forward(exec::recurrent{}, x, s_full);
  auto s = m.make_state(x.extent(0));
  auto y = test::nan_tensor<float, 3>(y_full.extents());
  const std::vector<index_t> c(cuts);
  for (std::size_t i = 0; i + 1 < c.size(); ++i) {
    const index_t t0 = c[i], n = c[i + 1] - c[i];
    m.forward(exec::automatic{}, x.view().subrange(1, t0, n), y.view().subrange(1, t0, n), s);
  }
  SEQMIX_CHECK_CLOSE(y, y_full, 1e-5, 1e-5);
  SEQMIX_CHECK_CLOSE(s.ssm, s_full.ssm, 1e-5, 1e-5);
  // The conv state holds projected inputs; Eigen's GEMM may round a row differently depending on
  // how many rows it multiplies at once, so it is equal to rounding only.
  SEQMIX_CHECK_CLOSE(s.conv, s_full.conv, 1e-6, 1e-6);
}

template <class Layer>
void check_steps(const Layer& m, const tensor<float, 3>& x, index_t steps) {
  auto s_full = m.make_state(x.extent(0));
  const auto y_full = m.forward(exec::recurrent{}, x.view().subrange(1, 0, steps), s_full);
  auto s = m.make_state(x.extent(0));
  auto y = test::nan_tensor<float, 3>(y_full.extents());
  for (index_t t = 0; t < steps; ++t) m.step(x.view().slice(1, t), y.view().slice(1, t), s);
  SEQMIX_CHECK_CLOSE(y, y_full, 1e-5, 1e-5);
  SEQMIX_CHECK_CLOSE(s.ssm, s_full.ssm, 1e-5, 1e-5);
}

// A checkpoint-like file holding `w` under `prefix` (upstream names).
io::safetensors checkpoint(const mamba::weights& w, const std::string& prefix) {
  io::safetensors_writer f;
  f.add<float, 2>(prefix + "in_proj.weight", w.in_proj.weight.view());
  tensor<float, 3> cw({w.conv1d.weight.extent(0), 1, w.conv1d.weight.extent(1)});
  std::copy_n(w.conv1d.weight.data(), cw.size(), cw.data());
  f.add<float, 3>(prefix + "conv1d.weight", cw.view());
  f.add<float, 1>(prefix + "conv1d.bias", w.conv1d.bias->view());
  f.add<float, 2>(prefix + "x_proj.weight", w.x_proj.weight.view());
  f.add<float, 2>(prefix + "dt_proj.weight", w.dt_proj.weight.view());
  f.add<float, 1>(prefix + "dt_proj.bias", w.dt_bias.view());
  f.add<float, 2>(prefix + "A_log", w.A_log.view());
  f.add<float, 1>(prefix + "D", w.D.view());
  f.add<float, 2>(prefix + "out_proj.weight", w.out_proj.weight.view());
  return io::safetensors::parse(f.bytes(), "ckpt");
}

io::safetensors checkpoint(const mamba2::weights& w, const std::string& prefix) {
  io::safetensors_writer f;
  f.add<float, 2>(prefix + "in_proj.weight", w.in_proj.weight.view());
  tensor<float, 3> cw({w.conv1d.weight.extent(0), 1, w.conv1d.weight.extent(1)});
  std::copy_n(w.conv1d.weight.data(), cw.size(), cw.data());
  f.add<float, 3>(prefix + "conv1d.weight", cw.view());
  f.add<float, 1>(prefix + "conv1d.bias", w.conv1d.bias->view());
  f.add<float, 1>(prefix + "dt_bias", w.dt_bias.view());
  f.add<float, 1>(prefix + "A_log", w.A_log.view());
  f.add<float, 1>(prefix + "D", w.D.view());
  f.add<float, 1>(prefix + "norm.weight", w.norm.view());
  f.add<float, 2>(prefix + "out_proj.weight", w.out_proj.weight.view());
  return io::safetensors::parse(f.bytes(), "ckpt");
}

}  // namespace

TEST_CASE("Mamba: forward in pieces equals one pass; step() equals forward", "[mamba][layer]") {
  const mamba m(m1_config(), random_weights(m1_config(), 1));
  const auto x = uniform_tensor<float, 3>({2, 70, 40}, -1, 1, 2);
  check_pieces(m, x, {0, 1, 3, 4, 37, 69, 70});
  check_steps(m, x, 12);
}

TEST_CASE("Mamba2: forward in pieces equals one pass; step() equals forward", "[mamba2][layer]") {
  const mamba2 m(m2_config(), random_weights(m2_config(), 3));
  const auto x = uniform_tensor<float, 3>({2, 70, 48}, -1, 1, 4);
  check_pieces(m, x, {0, 1, 3, 4, 37, 69, 70});
  check_steps(m, x, 12);
}

TEST_CASE("Mamba2 with three groups and head dim 48: pieces, steps and policies", "[mamba2][layer]") {
  mamba2::config c;
  c.d_model = 72, c.d_state = 12, c.headdim = 48, c.ngroups = 3;  // d_inner 144, 3 heads, norm groups of 48
  const mamba2 m(c, random_weights(c, 21));
  const auto x = uniform_tensor<float, 3>({1, 60, 72}, -1, 1, 22);
  check_pieces(m, x, {0, 2, 30, 59, 60});
  check_steps(m, x, 5);
  auto s_r = m.make_state(1), s_c = m.make_state(1), s_p = m.make_state(1);
  const auto y_r = m.forward(exec::recurrent{}, x, s_r);
  SEQMIX_CHECK_CLOSE(m.forward(exec::chunkwise<16>{}, x, s_c), y_r, 1e-5, 1e-5);
  SEQMIX_CHECK_CLOSE(m.forward(exec::parallel{}, x, s_p), y_r, 1e-5, 1e-5);
  SEQMIX_CHECK_CLOSE(s_c.ssm, s_r.ssm, 1e-5, 1e-5);
}

TEST_CASE("Mamba and Mamba2: policies agree on the layer", "[mamba][mamba2][layer]") {
  const mamba m1(m1_config(), random_weights(m1_config(), 5));
  const mamba2 m2(m2_config(), random_weights(m2_config(), 6));
  const auto x1 = uniform_tensor<float, 3>({2, 90, 40}, -1, 1, 7), x2 = uniform_tensor<float, 3>({2, 90, 48}, -1, 1, 8);
  auto run = [](const auto& m, const tensor<float, 3>& x, auto policy) {
    auto s = m.make_state(x.extent(0));
    auto y = m.forward(policy, x, s);
    return std::pair{std::move(y), std::move(s)};
  };
  const auto [y1r, s1r] = run(m1, x1, exec::recurrent{});
  const auto [y2r, s2r] = run(m2, x2, exec::recurrent{});
  auto agree = [&](auto policy) {
    INFO("policy " << exec::name_of<decltype(policy)>() << " threads " << policy.threads);
    const auto [y1, s1] = run(m1, x1, policy);
    SEQMIX_CHECK_CLOSE(y1, y1r, 1e-5, 1e-5);
    SEQMIX_CHECK_CLOSE(s1.ssm, s1r.ssm, 1e-5, 1e-5);
    SEQMIX_CHECK_CLOSE(s1.conv, s1r.conv, 1e-6, 1e-6);
    const auto [y2, s2] = run(m2, x2, policy);
    SEQMIX_CHECK_CLOSE(y2, y2r, 1e-5, 1e-5);
    SEQMIX_CHECK_CLOSE(s2.ssm, s2r.ssm, 1e-5, 1e-5);
    SEQMIX_CHECK_CLOSE(s2.conv, s2r.conv, 1e-6, 1e-6);
  };
  agree(exec::recurrent{2}), agree(exec::chunkwise<16>{}), agree(exec::chunkwise<64>{2}), agree(exec::parallel{});
  agree(exec::automatic{}), agree(exec::automatic{2});
}

TEST_CASE("Mamba: weights load under a checkpoint prefix; missing and misshapen weights are named", "[mamba][layer][io]") {
  const auto w = random_weights(m1_config(), 9);
  const auto file = checkpoint(w, "backbone.layers.3.mixer.");
  const auto a = mamba::load(file, m1_config(), "backbone.layers.3.mixer.");
  const mamba b(m1_config(), w);
  const auto x = uniform_tensor<float, 3>({1, 9, 40}, -1, 1, 10);
  auto sa = a.make_state(1), sb = b.make_state(1);
  SEQMIX_CHECK_CLOSE(a.forward(exec::recurrent{}, x, sa), b.forward(exec::recurrent{}, x, sb), 0.0, 0.0);

  REQUIRE_THROWS_WITH(mamba::load(file, m1_config(), "backbone.layers.4.mixer."),
                      Catch::Contains("Mamba") && Catch::Contains("backbone.layers.4.mixer.in_proj.weight") &&
                          Catch::Contains("not found"));
  mamba::config wrong = m1_config();
  wrong.d_state = 16;
  REQUIRE_THROWS_WITH(mamba::load(file, wrong, "backbone.layers.3.mixer."),
                      Catch::Contains("x_proj.weight") && Catch::Contains("[27, 80]") && Catch::Contains("[35, 80]"));
}

TEST_CASE("Mamba2: weights load under a checkpoint prefix; missing and misshapen weights are named", "[mamba2][layer][io]") {
  const auto w = random_weights(m2_config(), 11);
  const auto file = checkpoint(w, "backbone.layers.0.mixer.");
  const auto a = mamba2::load(file, m2_config(), "backbone.layers.0.mixer.");
  const mamba2 b(m2_config(), w);
  const auto x = uniform_tensor<float, 3>({1, 9, 48}, -1, 1, 12);
  auto sa = a.make_state(1), sb = b.make_state(1);
  SEQMIX_CHECK_CLOSE(a.forward(exec::recurrent{}, x, sa), b.forward(exec::recurrent{}, x, sb), 0.0, 0.0);

  REQUIRE_THROWS_WITH(mamba2::load(file, m2_config(), "model."),
                      Catch::Contains("Mamba2") && Catch::Contains("model.in_proj.weight") && Catch::Contains("not found"));
  mamba2::config wrong = m2_config();
  wrong.ngroups = 1;  // d_in_proj 228 instead of 260
  REQUIRE_THROWS_WITH(mamba2::load(file, wrong, "backbone.layers.0.mixer."),
                      Catch::Contains("in_proj.weight") && Catch::Contains("[260, 48]") && Catch::Contains("[228, 48]"));
}

TEST_CASE("Mamba and Mamba2: bad input shapes raise seqmix::error", "[mamba][mamba2][layer][errors]") {
  const mamba m1(m1_config(), random_weights(m1_config(), 13));
  tensor<float, 3> x({2, 5, 41}), y({2, 5, 40});
  auto s1 = m1.make_state(2);
  REQUIRE_THROWS_WITH(m1.forward(exec::recurrent{}, x.view(), y.view(), s1),
                      Catch::Contains("Mamba: x has shape [2, 5, 41], expected [2, 5, 40]"));
  tensor<float, 3> x3({3, 5, 40}), y3({3, 5, 40});
  REQUIRE_THROWS_WITH(m1.forward(exec::recurrent{}, x3.view(), y3.view(), s1),
                      Catch::Contains("state.conv has shape [2, 80, 3], expected [3, 80, 3]"));

  const mamba2 m2(m2_config(), random_weights(m2_config(), 14));
  auto s2 = m2.make_state(1);
  tensor<float, 3> x2({2, 5, 48}), y2({2, 5, 48});
  REQUIRE_THROWS_WITH(m2.forward(exec::recurrent{}, x2.view(), y2.view(), s2),
                      Catch::Contains("Mamba2: state.conv has shape [1, 160, 3], expected [2, 160, 3]"));
  mamba2::config bad = m2_config();
  bad.headdim = 25;
  REQUIRE_THROWS_AS(mamba2(bad, random_weights(m2_config(), 15)), seqmix::error);
}
