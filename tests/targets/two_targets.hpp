// A binary with seqmix compiled for two SIMD targets: unit.inc is compiled once for the native
// target and once for the x86-64 baseline (two_targets_native.cpp, two_targets_baseline.cpp), and
// test_two_targets.cpp checks that each file ran its own kernels. Without the per-target inline
// namespace (config.hpp) the inline SIMD functions of both files are one symbol, the linker keeps
// one copy, and both files report the same target.
#pragma once

#include <string>
#include <vector>

namespace two_targets {

/// What one translation unit computed, in types that do not depend on its target.
struct result {
  std::string target_namespace;  ///< seqmix::target_namespace as the unit compiled it
  std::string arch;              ///< seqmix::simd::arch_name(), called from inside the unit
  std::string arch_of_symbol;    ///< the same, called through the function's out-of-line symbol
  long lanes = 0;                ///< seqmix::simd::lanes<float> of the unit
  std::vector<float> prefill;    ///< a GLA layer's output for one fixed input, chunkwise policy
  std::vector<float> decode;     ///< the same input token by token through step()
};

result run_native();
result run_baseline();

}  // namespace two_targets
