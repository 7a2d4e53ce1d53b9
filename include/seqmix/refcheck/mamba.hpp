// Reference-case runner for mamba (spec/mamba.md). Not implemented yet: every case is SKIPped.
#pragma once

#include "case.hpp"

namespace seqmix::refcheck::mamba {

inline result run(const ref_case& c, policy_kind p) { return skipped(c, p, "mamba: not implemented yet"); }

}  // namespace seqmix::refcheck::mamba
