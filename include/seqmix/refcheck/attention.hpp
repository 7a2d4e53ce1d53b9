// Reference-case runner for attention (spec/attention.md). Not implemented yet: every case is SKIPped.
#pragma once

#include "case.hpp"

namespace seqmix::refcheck::attention {

inline result run(const ref_case& c, policy_kind p) { return skipped(c, p, "attention: not implemented yet"); }

}  // namespace seqmix::refcheck::attention
