// Reference-case runner for mamba2 (spec/mamba2.md). Not implemented yet: every case is SKIPped.
#pragma once

#include "case.hpp"

namespace seqmix::refcheck::mamba2 {

inline result run(const ref_case& c, policy_kind p) { return skipped(c, p, "mamba2: not implemented yet"); }

}  // namespace seqmix::refcheck::mamba2
