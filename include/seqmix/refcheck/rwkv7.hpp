// Reference-case runner for rwkv7 (spec/rwkv7.md). Not implemented yet: every case is SKIPped.
#pragma once

#include "case.hpp"

namespace seqmix::refcheck::rwkv7 {

inline result run(const ref_case& c, policy_kind p) { return skipped(c, p, "rwkv7: not implemented yet"); }

}  // namespace seqmix::refcheck::rwkv7
