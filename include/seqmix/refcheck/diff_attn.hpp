// Reference-case runner for diff_attn (spec/diff_attn.md). Not implemented yet: every case is SKIPped.
#pragma once

#include "case.hpp"

namespace seqmix::refcheck::diff_attn {

inline result run(const ref_case& c, policy_kind p) { return skipped(c, p, "diff_attn: not implemented yet"); }

}  // namespace seqmix::refcheck::diff_attn
