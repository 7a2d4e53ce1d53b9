// UltraMem layer (layers::UltraMem): the reference case under every policy (outputs, conv state and
// selections), a prefill split anywhere then step() equal to one pass, init and save/load, every
// weight required, non-finite weights and bad projector ids named, configs and input errors.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <seqmix/io/safetensors.hpp>
#include <seqmix/layers/ultramem.hpp>

#include "support/compare.hpp"
#include "support/layer_checks.hpp"

using namespace seqmix;
using layer = layers::UltraMem<float>;

namespace {

const std::string dir = SEQMIX_TEST_DATA_DIR "/refs/ultramem/";
const std::string prefix = "model.layers.3.mem.";

// The reference files' layer config (layer_medium: dk = 32, h = 4).
layer::config medium_config() {
  return {.hidden_size = 64, .num_keys = 16, .dim_qk = 32, .core_rank = 2, .core_heads = 4, .topk = 8, .dim_values = 16,
          .value_expansion = 4, .query_conv_kernel = 5};
}

// Odd sizes: n² = 121 not a multiple of the lanes, E = 11, r = 3, relu.
layer::config odd_config() {
  return {.hidden_size = 36, .num_keys = 11, .dim_qk = 10, .core_rank = 3, .core_heads = 3, .topk = 5, .dim_values = 7,
          .value_expansion = 11, .query_conv_kernel = 3, .score_activation = "relu"};
}

struct medium_case {
  io::safetensors file = io::safetensors::load(dir + "layer_medium.safetensors");
  layer l = layer::load(file, medium_config(), "param.");
  tensor<float, 3> x = file.get<float, 3>("in.x");
  double atol = 0.012694463662228372;  // the file's tolerance: atol + 1e-3·|want|
};

void check_file_tolerance(const tensor<float, 3>& got, const tensor<float, 3>& want, double atol) {
  for (index_t i = 0; i < got.size(); ++i)
    REQUIRE(std::abs(double(got.data()[i]) - double(want.data()[i])) <= atol + 1e-3 * std::abs(double(want.data()[i])));
}

}  // namespace

TEST_CASE("UltraMem: the reference case under every policy, outputs, conv state and selections", "[ultramem][layer]") {
  const medium_case c;
  const auto want = c.file.get<float, 3>("out.y");
  const auto want_conv = c.file.get<float, 3>("state_out.conv");
  const auto want_idx = c.file.get<std::int64_t, 4>("out.indices");
  auto s_r = c.l.make_state(2), s_c = c.l.make_state(2), s_p = c.l.make_state(2), s_a = c.l.make_state(2);
  tensor<std::int64_t, 4> idx(want_idx.extents(), -1);
  tensor<float, 4> sc(want_idx.extents(), std::nanf(""));
  auto y_r = test::nan_tensor<float, 3>(c.x.extents());
  c.l.forward(exec::recurrent{}, c.x.view(), y_r.view(), s_r, idx.view(), sc.view());
  const auto y_c = c.l.forward(exec::chunkwise<16>{2}, c.x, s_c);
  const auto y_p = c.l.forward(exec::parallel{2}, c.x, s_p);
  const auto y_a = c.l.forward(exec::automatic{}, c.x, s_a);
  check_file_tolerance(y_r, want, c.atol);
  check_file_tolerance(y_c, want, c.atol);
  check_file_tolerance(y_p, want, c.atol);
  check_file_tolerance(y_a, want, c.atol);
  SEQMIX_CHECK_WITHIN(s_r.conv, want_conv, test::tolerance<float>(64));  // the normalised inputs themselves
  SEQMIX_CHECK_IDENTICAL(s_p.conv, s_r.conv);
  // The same set per (token, head), scores descending.
  const index_t m = idx.extent(3);
  for (index_t g = 0; g < idx.size() / m; ++g) {
    std::vector<std::int64_t> a(idx.data() + g * m, idx.data() + (g + 1) * m), b(want_idx.data() + g * m, want_idx.data() + (g + 1) * m);
    std::sort(a.begin(), a.end()), std::sort(b.begin(), b.end());
    REQUIRE(a == b);
    for (index_t k = 1; k < m; ++k) CHECK(sc.data()[g * m + k] <= sc.data()[g * m + k - 1]);
  }
}

TEST_CASE("UltraMem: a prefill split anywhere, then step(), equals one pass", "[ultramem][layer]") {
  const medium_case c;
  const index_t L = 128;
  auto s_full = c.l.make_state(2);
  const auto y_full = c.l.forward(exec::chunkwise<64>{}, c.x, s_full);
  for (const index_t split : {1, 17, 64, 100}) {
    INFO("split at " << split);
    auto s = c.l.make_state(2);
    auto y = test::nan_tensor<float, 3>(y_full.extents());
    test::prefill_then_step(c.l, c.x, y, s, split, std::min<index_t>(split + 5, L));
    SEQMIX_CHECK_WITHIN(y, y_full, test::tolerance<float>(64.0 * 8 * 16));
    SEQMIX_CHECK_IDENTICAL(s.conv, s_full.conv);
  }
}

TEST_CASE("UltraMem: init is reproducible; load(save(init)) is the same layer", "[ultramem][layer][io]") {
  for (const auto& cfg : {odd_config(), medium_config()}) {
    INFO("hidden_size=" << cfg.hidden_size);
    const auto a =
        test::check_init_round_trip<layer>(cfg, 7, uniform_tensor<float, 3>({2, 19, cfg.hidden_size}, -1, 1, 4), prefix);
    // Every block of E virtual slots maps to a permutation of the E projectors.
    const auto& map = a.params().rand_proj_mapping;
    const index_t E = cfg.value_expansion;
    for (index_t blk = 0; blk < map.size() / E; ++blk) {
      std::vector<float> ids(map.data() + blk * E, map.data() + (blk + 1) * E);
      std::sort(ids.begin(), ids.end());
      for (index_t e = 0; e < E; ++e) REQUIRE(ids[std::size_t(e)] == float(e));
    }
    auto s = a.make_state(2);
    const auto y = a.forward(exec::parallel{2}, uniform_tensor<float, 3>({2, 40, cfg.hidden_size}, -1, 1, 5), s);
    CHECK(test::all_finite(y));
  }
}

TEST_CASE("UltraMem: a checkpoint without any one weight is refused naming it", "[ultramem][layer][io][errors]") {
  test::check_each_weight_required(layer::init(odd_config(), 5), prefix);
}

TEST_CASE("UltraMem: non-finite weights and bad projector ids are named", "[ultramem][layer][errors]") {
  const auto l = layer::init(odd_config(), 2);
  CHECK_NOTHROW(l.validate_finite());
  int count = 0;
  for (int i = 0;; ++i) {
    auto w = l.params();
    test::detail::poison_nth<float> p(i, std::numeric_limits<float>::quiet_NaN());
    layer::each_weight(l.cfg(), w, p);
    if (p.name.empty()) {
      count = p.seen;
      break;
    }
    INFO("NaN in " << p.name);
    if (p.name == "rand_proj_mapping") {  // an id indexes memory: refused at construction
      CHECK_THROWS_MATCHES(layer(l.cfg(), std::move(w)), seqmix::error,
                           test::error_containing({"UltraMem", "'rand_proj_mapping'", "projector id"}));
      continue;
    }
    const layer bad(l.cfg(), std::move(w));
    CHECK_THROWS_MATCHES(bad.validate_finite(), seqmix::error, test::error_containing({"UltraMem", "'" + p.name + "'"}));
  }
  CHECK(count == int(test::checkpoint(l).names().size()));
  for (float id : {-1.0f, 11.0f, 0.5f}) {
    auto w = l.params();
    w.rand_proj_mapping(3) = id;
    CHECK_THROWS_MATCHES(layer(l.cfg(), std::move(w)), seqmix::error,
                         test::error_containing({"UltraMem", "'rand_proj_mapping'", "element 3"}));
  }
}

TEST_CASE("UltraMem: bad configs are rejected naming the field", "[ultramem][layer][errors]") {
  const auto file = test::checkpoint(layer::init(medium_config(), 1), prefix);
  test::check_configs_rejected<layer>(medium_config(), file, prefix, {
      {"hidden_size (dim)", [](auto& c) { c.hidden_size = 0; }},
      SEQMIX_ZEROED(num_keys), SEQMIX_ZEROED(topk),
      {"topk", [](auto& c) { c.topk = 17; }},
      SEQMIX_ZEROED(core_rank),
      {"value_expansion", [](auto& c) { c.value_expansion = 3; }},
      SEQMIX_ZEROED(query_conv_kernel),
      {"query_split", [](auto& c) { c.query_split = false; }},
      {"score_activation", [](auto& c) { c.score_activation = "softmax"; }},
  });
}

TEST_CASE("UltraMem: bad inputs and a mismatched state raise seqmix::error", "[ultramem][layer][errors]") {
  const auto l = layer::init(medium_config(), 3);
  auto s = l.make_state(2);
  test::check_input_errors(l, s, 32, {"UltraMem: state conv has shape [2, 64, 4], expected [3, 64, 4]"});
  tensor<float, 3> x0({2, 0, 64}), y0({2, 0, 64});
  CHECK_NOTHROW(l.forward(exec::parallel{2}, x0.view(), y0.view(), s));
}
