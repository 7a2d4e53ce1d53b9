// The reference-case runner's input checks (tools/refcheck/, docs/reference_format.md): integer
// config fields that are not integers (2.5, NaN, 1e30, negative, a string) and floating-point ones
// out of range raise seqmix::error naming the key; ref_case::parse rejects zero extents and configs
// that are not objects; reserve() bounds what a run may allocate by the case's own tensors.
#include <refcheck/registry.hpp>

#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <string>

#include "support/layer_checks.hpp"

using namespace seqmix;
using namespace seqmix::refcheck;
using nlohmann::json;

namespace {

ref_case with_config(json config) {
  ref_case c;
  c.path = "config_test.safetensors";
  c.config = std::move(config);
  return c;
}

// A case file in memory: metadata of a GLA op case with `config`, and the given F32 tensors.
std::vector<std::byte> case_bytes(const std::string& config,
                                  const std::vector<std::pair<std::string, std::vector<index_t>>>& tensors) {
  io::safetensors_writer w;
  for (const auto& [name, shape] : tensors) {
    index_t n = 1;
    for (auto e : shape) n *= e;
    w.add_raw(name, io::dtype::f32, shape, std::vector<std::byte>(std::size_t(n) * 4));
  }
  w.add_metadata("seqmix.layer", "gla");
  w.add_metadata("seqmix.level", "layer");
  w.add_metadata("seqmix.config", config);
  w.add_metadata("seqmix.tolerance", R"({"atol": 1e-5, "rtol": 1e-5})");
  return w.bytes();
}

using gla_config = layers::GatedLinearAttention<float>::config;

}  // namespace

TEST_CASE("refcheck: integer config fields that are not integers name the key", "[refs][refcheck]") {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  for (const json& bad : {json(2.5), json(nan), json(inf), json(1e30), json(-2), json(-2.0), json(-1e30),
                         json(std::int64_t(1) << 40), json(std::numeric_limits<std::uint64_t>::max()), json("2"),
                         json(true), json::array({2}), json::object()}) {
    INFO("num_heads = " << bad.dump());
    const auto c = with_config({{"hidden_size", 64}, {"num_heads", bad}});
    CHECK_THROWS_MATCHES(config_from<gla_config>(c), seqmix::error,
                         test::error_containing({"config_test.safetensors", "'num_heads'"}));
    CHECK_THROWS_MATCHES(c.cfg<index_t>("num_heads"), seqmix::error, test::error_containing({"'num_heads'"}));
    CHECK_THROWS_MATCHES(c.cfg<int>("num_heads"), seqmix::error, test::error_containing({"'num_heads'"}));
    CHECK_THROWS_MATCHES(c.cfg_or<index_t>("num_heads", 4), seqmix::error, test::error_containing({"'num_heads'"}));
  }
}

TEST_CASE("refcheck: integral numbers, floats, flags and absent keys are read", "[refs][refcheck]") {
  const auto c = with_config({{"hidden_size", 64}, {"num_heads", 4.0}, {"expand_k", 1}, {"expand_v", 0.5},
                              {"gate_low_rank_dim", json()}, {"window", 0}, {"flag", true}});
  const auto cfg = config_from<gla_config>(c);
  CHECK(cfg.hidden_size == 64);
  CHECK(cfg.num_heads == 4);  // 4.0 is an integer
  CHECK(cfg.expand_k == 1.0);
  CHECK(cfg.expand_v == 0.5);
  CHECK(cfg.gate_low_rank_dim == gla_config{}.gate_low_rank_dim);  // null keeps the default
  CHECK(c.cfg<index_t>("window") == 0);
  CHECK(c.cfg_or<index_t>("absent", 7) == 7);
  CHECK(c.cfg<bool>("flag"));
  CHECK(c.cfg<index_t>("hidden_size") == 64);
  CHECK(with_config({{"n", ref_case::max_config_int}}).cfg<index_t>("n") == ref_case::max_config_int);
  CHECK_THROWS_MATCHES(c.cfg<index_t>("absent"), seqmix::error, test::error_containing({"'absent'", "missing"}));
}

TEST_CASE("refcheck: floating-point and flag config fields out of range name the key", "[refs][refcheck]") {
  for (const json& bad : {json(1e300), json(-1e300), json(std::numeric_limits<double>::quiet_NaN()), json("0.5"),
                         json(false)}) {
    INFO("expand_k = " << bad.dump());
    const auto c = with_config({{"hidden_size", 64}, {"num_heads", 4}, {"expand_k", bad}});
    CHECK_THROWS_MATCHES(config_from<gla_config>(c), seqmix::error, test::error_containing({"'expand_k'"}));
  }
  for (const json& bad : {json(1), json("true"), json(nullptr)}) {
    INFO("flag = " << bad.dump());
    CHECK_THROWS_MATCHES(with_config({{"flag", bad}}).cfg<bool>("flag"), seqmix::error,
                         test::error_containing({"'flag'"}));
  }
}

TEST_CASE("refcheck: a case with a non-integral head count fails naming the key", "[refs][refcheck]") {
  const auto bytes = case_bytes(R"({"hidden_size": 8, "num_heads": 2.5})", {{"in.x", {1, 2, 8}}});
  const auto c = ref_case::parse(bytes, "frac_heads.safetensors");
  const auto results = check(c, {policy_kind::recurrent});
  REQUIRE(results.size() == 1);
  CHECK(results[0].state == result::status::fail);
  CHECK_THAT(results[0].reason, Catch::Contains("'num_heads'") && Catch::Contains("frac_heads.safetensors"));
}

TEST_CASE("refcheck: parse rejects zero extents and configs that are not objects", "[refs][refcheck]") {
  CHECK_THROWS_MATCHES(ref_case::parse(case_bytes(R"({"hidden_size": 8})", {{"in.x", {index_t(1) << 53, 0, 8}}}), "z"),
                       seqmix::error, test::error_containing({"'in.x'", "zero extent"}));
  CHECK_THROWS_MATCHES(ref_case::parse(case_bytes("[1, 2]", {{"in.x", {1, 1, 8}}}), "a"), seqmix::error,
                       test::error_containing({"seqmix.config"}));
  CHECK_THROWS_MATCHES(ref_case::parse(case_bytes("{", {{"in.x", {1, 1, 8}}}), "b"), seqmix::error,
                       test::error_containing({"seqmix.config"}));
}

TEST_CASE("refcheck: reserve bounds allocations by the case's own tensors", "[refs][refcheck]") {
  const auto c = ref_case::parse(case_bytes(R"({"hidden_size": 8})", {{"in.x", {2, 3, 8}}, {"out.y", {2, 3, 8}}}), "r");
  CHECK(c.budget == 2 * 48 + ref_case::budget_allowance);
  CHECK_NOTHROW(c.reserve(std::array<index_t, 3>{2, 3, 8}, "out.y"));
  CHECK_NOTHROW(c.reserve(c.budget, "all of it"));
  CHECK_THROWS_MATCHES(c.reserve(c.budget + 1, "the state"), seqmix::error, test::error_containing({"the state"}));
  CHECK_THROWS_MATCHES(c.reserve(std::array<index_t, 4>{index_t(1) << 32, index_t(1) << 32, 4, 1}, "out.o"),
                       seqmix::error, test::error_containing({"out.o", "overflows"}));
  CHECK_THROWS_AS(c.reserve(std::array<index_t, 2>{index_t(1) << 20, index_t(1) << 20}, "h"), seqmix::error);
}
