// Reference-case runner for gated_delta_net (spec/gated_delta_net.md). Not implemented yet: every case is SKIPped.
#pragma once

#include "case.hpp"

namespace seqmix::refcheck::gated_delta_net {

inline result run(const ref_case& c, policy_kind p) { return skipped(c, p, "gated_delta_net: not implemented yet"); }

}  // namespace seqmix::refcheck::gated_delta_net
