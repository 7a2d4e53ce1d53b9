// Mamba and Mamba2 layers: forward in pieces versus one pass, step() versus forward, policies
// against each other, loading by upstream names under a prefix, save / load round trip, every
// weight required, bad configs and non-finite weights named, and error messages.
#include <seqmix/io/safetensors.hpp>
#include <seqmix/layers/mamba.hpp>
#include <seqmix/layers/mamba2.hpp>

#include "support/compare.hpp"
#include "support/layer_checks.hpp"

using namespace seqmix;
using mamba = layers::Mamba<float>;
using mamba2 = layers::Mamba2<float>;

namespace {

const std::string prefix = "backbone.layers.3.mixer.";

mamba::config m1_config() {
  mamba::config c;
  c.hidden_size = 40, c.d_state = 12;  // d_inner 80, dt_rank 3: not multiples of the lanes
  return c;
}

mamba2::config m2_config() {
  mamba2::config c;
  c.hidden_size = 48, c.d_state = 16, c.headdim = 24, c.ngroups = 2;  // d_inner 96, 4 heads, 2 groups
  return c;
}

// Bound of an output or the scan state: in_proj (hidden), x_proj / out_proj (d_inner), the state
// dot product (d_state) and the recurrence over the tokens (T).
template <class Layer>
double tol(const Layer& m, index_t T) {
  const auto& c = m.cfg();
  return test::tolerance<float>(double(c.hidden_size + c.d_inner() + c.d_state + T));
}
// The conv state holds projected inputs (one dot product over hidden); Eigen's GEMM may round a
// row differently depending on how many rows it multiplies at once.
template <class Layer>
double conv_tol(const Layer& m) {
  return test::tolerance<float>(double(m.hidden_size()));
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
  SEQMIX_CHECK_WITHIN(y, y_full, tol(m, x.extent(1)));
  SEQMIX_CHECK_WITHIN(s.ssm, s_full.ssm, tol(m, x.extent(1)));
  SEQMIX_CHECK_WITHIN(s.conv, s_full.conv, conv_tol(m));
}

template <class Layer>
void check_steps(const Layer& m, const tensor<float, 3>& x, index_t steps) {
  auto s_full = m.make_state(x.extent(0));
  const auto y_full = m.forward(exec::recurrent{}, x.view().subrange(1, 0, steps), s_full);
  auto s = m.make_state(x.extent(0));
  auto y = test::nan_tensor<float, 3>(y_full.extents());
  for (index_t t = 0; t < steps; ++t)  // the step's policy only gives the threads
    if (t % 2) m.step(exec::recurrent{}, x.view().slice(1, t), y.view().slice(1, t), s);
    else m.step(exec::automatic{2}, x.view().slice(1, t), y.view().slice(1, t), s);
  SEQMIX_CHECK_WITHIN(y, y_full, tol(m, steps));
  SEQMIX_CHECK_WITHIN(s.ssm, s_full.ssm, tol(m, steps));
  SEQMIX_CHECK_WITHIN(s.conv, s_full.conv, conv_tol(m));
}

// Every policy (and thread count) against the recurrent one: outputs and both states.
template <class Layer>
void check_policies(const Layer& m, const tensor<float, 3>& x) {
  auto run = [&](auto policy) {
    auto s = m.make_state(x.extent(0));
    auto y = m.forward(policy, x, s);
    return std::pair{std::move(y), std::move(s)};
  };
  const auto [y_r, s_r] = run(exec::recurrent{});
  auto agree = [&](auto policy) {
    INFO(Layer::name << " policy " << exec::name_of<decltype(policy)>() << " threads " << policy.threads);
    const auto [y, s] = run(policy);
    SEQMIX_CHECK_WITHIN(y, y_r, tol(m, x.extent(1)));
    SEQMIX_CHECK_WITHIN(s.ssm, s_r.ssm, tol(m, x.extent(1)));
    SEQMIX_CHECK_WITHIN(s.conv, s_r.conv, conv_tol(m));
  };
  agree(exec::recurrent{2}), agree(exec::chunkwise<16>{}), agree(exec::chunkwise<64>{2}), agree(exec::parallel{});
  agree(exec::automatic{}), agree(exec::automatic{2});
}

}  // namespace

TEST_CASE("Mamba: forward in pieces equals one pass; step() equals forward", "[mamba][layer]") {
  const auto m = mamba::init(m1_config(), 1);
  const auto x = uniform_tensor<float, 3>({2, 70, 40}, -1, 1, 2);
  check_pieces(m, x, {0, 1, 3, 4, 37, 69, 70});
  check_steps(m, x, 12);
}

TEST_CASE("Mamba2: forward in pieces equals one pass; step() equals forward", "[mamba2][layer]") {
  const auto m = mamba2::init(m2_config(), 3);
  const auto x = uniform_tensor<float, 3>({2, 70, 48}, -1, 1, 4);
  check_pieces(m, x, {0, 1, 3, 4, 37, 69, 70});
  check_steps(m, x, 12);
}

TEST_CASE("Mamba2 with three groups and head dim 48: pieces, steps and policies", "[mamba2][layer]") {
  mamba2::config c;
  c.hidden_size = 72, c.d_state = 12, c.headdim = 48, c.ngroups = 3;  // d_inner 144, 3 heads, norm groups of 48
  const auto m = mamba2::init(c, 21);
  const auto x = uniform_tensor<float, 3>({1, 60, 72}, -1, 1, 22);
  check_pieces(m, x, {0, 2, 30, 59, 60});
  check_steps(m, x, 5);
  check_policies(m, x);
}

TEST_CASE("Mamba and Mamba2: policies agree on the layer", "[mamba][mamba2][layer]") {
  check_policies(mamba::init(m1_config(), 5), uniform_tensor<float, 3>({2, 90, 40}, -1, 1, 7));
  check_policies(mamba2::init(m2_config(), 6), uniform_tensor<float, 3>({2, 90, 48}, -1, 1, 8));
  mamba::config bias = m1_config();  // in_proj / out_proj biases, no conv bias, an explicit dt_rank
  bias.bias = true, bias.conv_bias = false, bias.dt_rank = 5;
  check_policies(mamba::init(bias, 7), uniform_tensor<float, 3>({1, 40, 40}, -1, 1, 9));
  mamba2::config plain = m2_config();  // no RMSNorm (y · silu(z)), biases, norm before the gate off
  plain.rmsnorm = false, plain.bias = true;
  check_policies(mamba2::init(plain, 8), uniform_tensor<float, 3>({1, 40, 48}, -1, 1, 10));
}

TEST_CASE("Mamba: weights load under a checkpoint prefix; missing and misshapen weights are named", "[mamba][layer][io]") {
  const auto b = mamba::init(m1_config(), 9);
  test::check_round_trip(b, uniform_tensor<float, 3>({1, 9, 40}, -1, 1, 10), prefix, exec::recurrent{});
  const auto file = test::checkpoint(b, prefix);

  REQUIRE_THROWS_MATCHES(mamba::load(file, m1_config(), "backbone.layers.4.mixer."), seqmix::error,
                         test::error_containing({"Mamba", "backbone.layers.4.mixer.in_proj.weight", "not found"}));
  mamba::config wrong = m1_config();
  wrong.d_state = 16;
  REQUIRE_THROWS_MATCHES(mamba::load(file, wrong, prefix), seqmix::error,
                         test::error_containing({"Mamba", "x_proj.weight", "[27, 80]", "[35, 80]"}));
  mamba::config bias = m1_config();
  bias.bias = true;  // in_proj.bias is not in the file
  REQUIRE_THROWS_MATCHES(mamba::load(file, bias, prefix), seqmix::error,
                         test::error_containing({"Mamba", prefix + "in_proj.bias", "not found"}));
}

TEST_CASE("Mamba2: weights load under a checkpoint prefix; missing and misshapen weights are named", "[mamba2][layer][io]") {
  const auto b = mamba2::init(m2_config(), 11);
  test::check_round_trip(b, uniform_tensor<float, 3>({1, 9, 48}, -1, 1, 12), "backbone.layers.0.mixer.", exec::recurrent{});
  const auto file = test::checkpoint(b, "backbone.layers.0.mixer.");

  REQUIRE_THROWS_MATCHES(mamba2::load(file, m2_config(), "model."), seqmix::error,
                         test::error_containing({"Mamba2", "model.in_proj.weight", "not found"}));
  mamba2::config wrong = m2_config();
  wrong.ngroups = 1;  // d_in_proj 228 instead of 260
  REQUIRE_THROWS_MATCHES(mamba2::load(file, wrong, "backbone.layers.0.mixer."), seqmix::error,
                         test::error_containing({"Mamba2", "in_proj.weight", "[260, 48]", "[228, 48]"}));
}

TEST_CASE("Mamba and Mamba2: init is reproducible; load(save(init)) is the same layer", "[mamba][mamba2][layer][io]") {
  CHECK(test::check_init_round_trip<mamba>(m1_config(), 1, uniform_tensor<float, 3>({2, 19, 40}, -1, 1, 2), prefix)
            .hidden_size() == 40);
  mamba::config bias = m1_config();
  bias.bias = true, bias.conv_bias = false;
  test::check_round_trip(mamba::init(bias, 3), uniform_tensor<float, 3>({1, 7, 40}, -1, 1, 3), prefix);

  CHECK(test::check_init_round_trip<mamba2>(m2_config(), 4, uniform_tensor<float, 3>({2, 19, 48}, -1, 1, 5), prefix)
            .hidden_size() == 48);
  mamba2::config plain = m2_config();
  plain.rmsnorm = false, plain.bias = true;
  test::check_round_trip(mamba2::init(plain, 6), uniform_tensor<float, 3>({1, 7, 48}, -1, 1, 6), prefix);
}

TEST_CASE("Mamba and Mamba2: a checkpoint without any one weight is refused naming it", "[mamba][mamba2][layer][io][errors]") {
  mamba::config m1 = m1_config();
  m1.bias = true;  // every optional entry present
  test::check_each_weight_required(mamba::init(m1, 1), prefix);
  mamba2::config m2 = m2_config();
  m2.bias = true;
  test::check_each_weight_required(mamba2::init(m2, 2), prefix);
}

TEST_CASE("Mamba and Mamba2: zero or inconsistent configs are refused naming the field", "[mamba][mamba2][layer][errors]") {
  {
    const auto file = test::checkpoint(mamba::init(m1_config(), 1), prefix);
    test::check_configs_rejected<mamba>(m1_config(), file, prefix, {
        SEQMIX_ZEROED(hidden_size), SEQMIX_ZEROED(d_state), SEQMIX_ZEROED(d_conv), SEQMIX_ZEROED(expand),
        {"dt_rank", [](auto& c) { c.dt_rank = -1; }},
    });
  }
  {
    const auto file = test::checkpoint(mamba2::init(m2_config(), 2), prefix);
    test::check_configs_rejected<mamba2>(m2_config(), file, prefix, {
        SEQMIX_ZEROED(hidden_size), SEQMIX_ZEROED(headdim),
        {"headdim", [](auto& c) { c.headdim = 25; }},  // d_inner 96
        SEQMIX_ZEROED(ngroups),
        {"ngroups", [](auto& c) { c.ngroups = 3; }},  // 4 heads
        SEQMIX_ZEROED(d_state), SEQMIX_ZEROED(expand),
        {"dt_min", [](auto& c) { c.dt_min = 0.2, c.dt_max = 0.1; }},
    });
  }
}

TEST_CASE("Mamba and Mamba2: validate_finite() names a non-finite weight", "[mamba][mamba2][layer][errors]") {
  mamba::config m1 = m1_config();
  m1.bias = true;
  test::check_finite_named(mamba::init(m1, 1));
  mamba2::config m2 = m2_config();
  m2.bias = true;
  test::check_finite_named(mamba2::init(m2, 2));
}

TEST_CASE("Mamba and Mamba2: bad input shapes raise seqmix::error", "[mamba][mamba2][layer][errors]") {
  const auto m1 = mamba::init(m1_config(), 13);
  auto s1 = m1.make_state(2);
  test::check_input_errors(m1, s1, 41, {"Mamba: state.conv has shape [2, 80, 3], expected [3, 80, 3]"});
  tensor<float, 2> xt({2, 39}), yt({2, 40});
  REQUIRE_THROWS_MATCHES(m1.step(exec::recurrent{}, xt.view(), yt.view(), s1), seqmix::error,
                         test::error_containing({"Mamba: x has shape [2, 39], expected [2, 40]"}));

  const auto m2 = mamba2::init(m2_config(), 14);
  auto s2 = m2.make_state(1);
  tensor<float, 3> x2({2, 5, 48}), y2({2, 5, 48});
  REQUIRE_THROWS_MATCHES(m2.forward(exec::recurrent{}, x2.view(), y2.view(), s2), seqmix::error,
                         test::error_containing({"Mamba2: state.conv has shape [1, 160, 3], expected [2, 160, 3]"}));
  // Weights of a valid config do not make an invalid one valid.
  mamba2::config bad = m2_config();
  bad.headdim = 25;
  REQUIRE_THROWS_MATCHES(mamba2(bad, m2.params()), seqmix::error, test::error_containing({"Mamba2", "headdim"}));
}
