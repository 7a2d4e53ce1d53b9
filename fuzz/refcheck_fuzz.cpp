// libFuzzer target for the reference-case runner (tools/refcheck/): the input is a reference case
// (a safetensors file, docs/reference_format.md) read from memory with ref_case::parse, then run
// the way seqmix-refcheck runs it: the layer's runner from the registry, under each policy, which
// parses the config, loads the weights and runs the op or layer. Every input must run or raise
// seqmix::error; any other exception (it escapes), a crash, a sanitizer report, a time-out or an
// allocation beyond libFuzzer's -rss_limit_mb is a finding. Result lines are checked to format.
// Built by scripts/fuzz.sh: with clang -fsanitize=fuzzer, or with replay.cpp as a plain driver.
#include <refcheck/registry.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace rc = seqmix::refcheck;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<std::byte> bytes(size);
  if (size) std::memcpy(bytes.data(), data, size);
  rc::ref_case c;
  try {
    c = rc::ref_case::parse(std::move(bytes), "fuzz.safetensors");
  } catch (const seqmix::error&) {
    return 0;
  }
  const auto it = rc::runners().find(c.layer);
  if (it == rc::runners().end()) return 0;  // seqmix-refcheck skips it
  for (const auto p : {rc::policy_kind::recurrent, rc::policy_kind::chunkwise, rc::policy_kind::parallel}) {
    try {
      const rc::result r = it->second(c, p);
      if (r.line().empty()) std::abort();
    } catch (const seqmix::error&) {
      // A bad case: seqmix-refcheck prints it as a FAIL line. Anything else escapes.
    }
  }
  return 0;
}
