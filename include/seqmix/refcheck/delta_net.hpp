// Reference-case runner for delta_net (spec/delta_net.md). Not implemented yet: every case is SKIPped.
#pragma once

#include "case.hpp"

namespace seqmix::refcheck::delta_net {

inline result run(const ref_case& c, policy_kind p) { return skipped(c, p, "delta_net: not implemented yet"); }

}  // namespace seqmix::refcheck::delta_net
