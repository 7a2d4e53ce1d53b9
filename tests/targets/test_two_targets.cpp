// One binary, seqmix compiled for two SIMD targets (see two_targets.hpp). This file is compiled
// for the x86-64 baseline; the native unit runs on the machine that built it, as CTest does.
#include <catch2/catch.hpp>

#include <cstddef>
#include <cmath>
#include <string>

#include "support/compare.hpp"
#include "targets/two_targets.hpp"

namespace {

seqmix::tensor<float, 1> as_tensor(const std::vector<float>& v) {
  seqmix::tensor<float, 1> t({static_cast<seqmix::index_t>(v.size())});
  for (std::size_t i = 0; i < v.size(); ++i) t.data()[i] = v[i];
  return t;
}

// decode is [T, B, C] (token by token); prefill is [B, T, C].
std::vector<float> decode_as_prefill(const std::vector<float>& decode, int B, int T, int C) {
  std::vector<float> out(decode.size());
  for (int t = 0; t < T; ++t)
    for (int b = 0; b < B; ++b)
      for (int c = 0; c < C; ++c) out[(std::size_t(b) * T + t) * C + c] = decode[(std::size_t(t) * B + b) * C + c];
  return out;
}

}  // namespace

TEST_CASE("two SIMD targets in one binary: each unit runs its own kernels", "[targets]") {
  const auto native = two_targets::run_native();
  const auto baseline = two_targets::run_baseline();
  INFO("native: " << native.target_namespace << " (" << native.arch << ", " << native.lanes << " lanes); baseline: "
                  << baseline.target_namespace << " (" << baseline.arch << ", " << baseline.lanes << " lanes)");

  // The baseline unit is SSE2: 4 float lanes. Had the linker merged the two units' inline
  // functions, one of them would report the other's target.
  CHECK(baseline.target_namespace == "target_sse2");
  CHECK(baseline.arch == "sse2");
  CHECK(baseline.lanes == 4);
  CHECK(baseline.arch_of_symbol == baseline.arch);
  CHECK(native.arch_of_symbol == native.arch);
  if (native.target_namespace == baseline.target_namespace) {
    WARN("the native target is the x86-64 baseline on this machine: nothing to tell apart");
    return;
  }
  CHECK(native.arch != baseline.arch);
  CHECK(native.lanes > baseline.lanes);

  // Both compute the same layer: equal within the rounding of a chain of three 64-long projections
  // and a 37-token recurrence, and each unit's decode agrees with its own prefill.
  const double tol = seqmix::test::tolerance<float>(3 * 64 + 37);
  SEQMIX_CHECK_WITHIN(as_tensor(native.prefill), as_tensor(baseline.prefill), tol);
  SEQMIX_CHECK_WITHIN(as_tensor(decode_as_prefill(native.decode, 2, 37, 64)), as_tensor(native.prefill), tol);
  SEQMIX_CHECK_WITHIN(as_tensor(decode_as_prefill(baseline.decode, 2, 37, 64)), as_tensor(baseline.prefill), tol);
}
