// Batch and length edges for every layer of the concept test (built the same way, with
// Layer::init(config, seed)): an empty batch with several tokens runs to an empty output under
// every policy and through step(); a huge batch of zero tokens, and batch × length products that
// overflow index_t, raise seqmix::error (or give an empty output) instead of hanging, running out
// of memory or overflowing. Issue 15: no input may crash the library.
#include <seqmix/seqmix.hpp>

#include <array>
#include <cmath>
#include <limits>
#include <string>
#include <tuple>

#include "support/all_layers.hpp"
#include "support/layer_checks.hpp"

using namespace seqmix;
using namespace seqmix::layers;

namespace {

using namespace seqmix::test::all_layers;
constexpr index_t C = width;
constexpr index_t huge_batch = index_t(1) << 53, huger_batch = index_t(1) << 62;

template <class Fn>
void for_each_layer(Fn&& fn) {
  const auto layers = one_of_each();
  std::apply([&](const auto&... l) { (fn(l), ...); }, layers);
}

// A name for INFO: the layer and, for RWKV-7, its layer_id.
template <class L>
std::string label(const L& layer) {
  std::string s = L::name;
  if constexpr (std::is_same_v<L, rwkv7>) s += " layer_id=" + std::to_string(layer.cfg().layer_id);
  return s;
}

// Backing storage for views that have no elements (any non-null pointer will do).
float no_data[1] = {};

tensor_view<const float, 3> empty_x(index_t B, index_t T, index_t width = C) { return {no_data, {B, T, width}}; }

// forward() with the allocating form, with the state of `state_batch` sequences (a later RWKV-7
// layer gets a v_first of [state_batch, T, C] when that is small enough to hold).
template <class L, exec::policy P>
tensor<float, 3> run_forward(const L& layer, const P& policy, tensor_view<const float, 3> x, index_t state_batch) {
  cross_layer<float> cross;
  if (state_batch <= 16 && x.extent(1) <= 1024) cross.v_first = tensor<float, 3>({state_batch, x.extent(1), C});
  auto state = layer.make_state(state_batch, {.cross = &cross});
  return layer.forward(policy, x, state);
}

// Runs fn(); passes when it returns an output with no elements or throws seqmix::error.
template <class Fn>
void check_empty_or_error(Fn&& fn) {
  try {
    const auto y = fn();
    CHECK(y.size() == 0);
  } catch (const seqmix::error& e) {
    SUCCEED(e.what());
  }
}

}  // namespace

TEST_CASE("every layer maps an empty batch of several tokens to an empty output", "[layers][edges]") {
  for_each_layer([](const auto& layer) {
    INFO(label(layer));
    for (const index_t T : {index_t(2), index_t(5), index_t(40)}) {
      INFO("B = 0, T = " << T);
      const std::array<index_t, 3> want{0, T, C};
      CHECK(run_forward(layer, exec::recurrent{}, empty_x(0, T), 0).extents() == want);
      CHECK(run_forward(layer, exec::chunkwise<16>{}, empty_x(0, T), 0).extents() == want);
      CHECK(run_forward(layer, exec::chunkwise<16>{.threads = 2}, empty_x(0, T), 0).extents() == want);
      CHECK(run_forward(layer, exec::parallel{}, empty_x(0, T), 0).extents() == want);
      CHECK(run_forward(layer, exec::automatic{.threads = 2}, empty_x(0, T), 0).extents() == want);
    }
    // step() on zero sequences, twice (the second from the state the first left).
    cross_layer<float> cross{tensor<float, 3>({0, 1, C})};
    auto state = layer.make_state(0, {.cross = &cross});
    tensor<float, 2> y({0, C});
    CHECK_NOTHROW(layer.step(exec::recurrent{}, tensor_view<const float, 2>(no_data, {0, C}), y.view(), state));
    CHECK_NOTHROW(layer.step(exec::recurrent{.threads = 2}, tensor_view<const float, 2>(no_data, {0, C}), y.view(), state));
    CHECK(y.size() == 0);
  });
}

TEST_CASE("every layer rejects a huge batch of zero tokens with seqmix::error", "[layers][edges]") {
  for_each_layer([](const auto& layer) {
    using L = std::decay_t<decltype(layer)>;
    INFO(label(layer));
    for (const index_t B : {huge_batch, huger_batch}) {
      INFO("B = " << B << ", T = 0");
      // Its state cannot exist: the element count overflows or the allocation is refused.
      CHECK_THROWS_AS(layer.make_state(B), seqmix::error);
      // With the state of one sequence, the batch does not match: an error naming the layer.
      CHECK_THROWS_MATCHES(run_forward(layer, exec::recurrent{}, empty_x(B, 0), 1), seqmix::error,
                           test::error_containing({L::name}));
      CHECK_THROWS_MATCHES(run_forward(layer, exec::automatic{.threads = 2}, empty_x(B, 0), 1), seqmix::error,
                           test::error_containing({L::name}));
      // step() with a [B, 0] input: the width is wrong, named as x.
      auto state = layer.make_state(1);
      tensor<float, 2> y({1, C});
      CHECK_THROWS_MATCHES(layer.step(exec::recurrent{}, tensor_view<const float, 2>(no_data, {B, 0}), y.view(), state),
                           seqmix::error, test::error_containing({L::name, "x has shape"}));
    }
  });
}

TEST_CASE("every layer rejects a broadcast input whose batch × length overflows", "[layers][edges]") {
  // x [2^32, 2^32, C] with zero batch and time strides: one row of data read 2^64 times. The
  // output cannot be allocated, which the allocating forward reports before running anything.
  const float row[C] = {};
  const index_t n = index_t(1) << 32;
  const tensor_view<const float, 3> x(row, {n, n, C}, {0, 0, 1});
  for_each_layer([&](const auto& layer) {
    INFO(label(layer));
    CHECK_THROWS_AS(run_forward(layer, exec::recurrent{}, x, 1), seqmix::error);
    CHECK_THROWS_AS(run_forward(layer, exec::chunkwise<16>{}, x, 1), seqmix::error);
    // step() over 2^62 broadcast sequences: no state holds them.
    const tensor_view<const float, 2> x2(row, {huger_batch, C}, {0, 1});
    auto state = layer.make_state(1);
    float out[C] = {};
    const tensor_view<float, 2> y2(out, {huger_batch, C}, {0, 1});
    CHECK_THROWS_AS(layer.step(exec::recurrent{}, x2, y2, state), seqmix::error);
  });
}

// Each layer checks x and y before it multiplies batch and length (mixer::check_io), and returns
// before computing strides when the call has no tokens: under UBSan (scripts/sanitize.sh) any
// signed overflow on the way aborts the run.
TEST_CASE("every layer checks shapes before multiplying batch and length", "[layers][edges]") {
  for_each_layer([](const auto& layer) {
    using L = std::decay_t<decltype(layer)>;
    INFO(label(layer));
    // B × T overflows and the width is wrong: the shape check must report it.
    const index_t n = index_t(1) << 33;
    auto state = layer.make_state(1);
    tensor<float, 3> y({1, 1, C});
    CHECK_THROWS_MATCHES(layer.forward(exec::recurrent{}, empty_x(n, n, 0), y.view(), state), seqmix::error,
                         test::error_containing({L::name}));
    // No sequences, 2^62 tokens each: T × width overflows while the batch is empty.
    for (const index_t T : {index_t(1) << 40, huger_batch}) {
      INFO("B = 0, T = " << T);
      check_empty_or_error([&] { return run_forward(layer, exec::recurrent{}, empty_x(0, T), 0); });
      check_empty_or_error([&] { return run_forward(layer, exec::chunkwise<16>{}, empty_x(0, T), 0); });
      check_empty_or_error([&] { return run_forward(layer, exec::automatic{.threads = 2}, empty_x(0, T), 0); });
    }
  });
}

TEST_CASE("every layer runs non-finite inputs to an end under every policy", "[layers][edges]") {
  // NaN and infinite activations reach every gate and decay (a NaN log decay once made the GLA
  // recurrent kernel loop for ever: it neither extended its run nor took the explicit step). NaN in
  // must not hang or crash; what comes out is the layer's arithmetic on it.
  const float values[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity(), 3e38f};
  for (const float bad : values) {
    INFO("x holds " << bad);
    auto x = uniform_tensor<float, 3>({2, 19, C}, -1, 1, 3);
    for (index_t t = 4; t < 19; t += 5) x(1, t, 7) = bad;
    for_each_layer([&](const auto& layer) {
      INFO(label(layer));
      const auto y1 = run_forward(layer, exec::recurrent{}, x, 2);
      const auto y2 = run_forward(layer, exec::chunkwise<16>{}, x, 2);
      const auto y3 = run_forward(layer, exec::automatic{.threads = 2}, x, 2);
      CHECK(y1.extents() == x.extents());
      CHECK(y2.extents() == x.extents());
      CHECK(y3.extents() == x.extents());
      // The first sequence holds no bad value and stays finite.
      bool finite = true;
      for (index_t i = 0; i < 19 * C; ++i) finite = finite && std::isfinite(y1.data()[i]);
      CHECK(finite);
    });
  }
}
