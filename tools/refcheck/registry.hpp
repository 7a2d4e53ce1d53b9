// Dispatch of reference cases on `seqmix.layer`: one line per layer with a runner.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "case.hpp"
#include "attention.hpp"
#include "bi_mamba.hpp"
#include "delta_net.hpp"
#include "diff_attn.hpp"
#include "gated_delta_net.hpp"
#include "gla.hpp"
#include "hymba.hpp"
#include "mamba.hpp"
#include "mamba2.hpp"
#include "ngpt.hpp"
#include "rwkv7.hpp"
#include "ultramem.hpp"

namespace seqmix::refcheck {

using runner = result (*)(const ref_case&, policy_kind);

/// Layer name (the refs folder name) -> runner.
inline const std::map<std::string, runner, std::less<>>& runners() {
  static const std::map<std::string, runner, std::less<>> table{
      {"attention", &attention::run},
      {"bi_mamba", &bi_mamba::run},
      {"delta_net", &delta_net::run},
      {"diff_attn", &diff_attn::run},
      {"gated_delta_net", &gated_delta_net::run},
      {"gla", &gla::run},
      {"hymba", &hymba::run},
      {"mamba", &mamba::run},
      {"mamba2", &mamba2::run},
      {"ngpt", &ngpt::run},
      {"rwkv7", &rwkv7::run},
      {"ultramem", &ultramem::run},
  };
  return table;
}

/// Runs case `c` with each policy in `policies`; SKIP for a layer seqmix does not implement yet.
/// Errors thrown while running (bad file, wrong shapes) become FAIL lines with the message.
inline std::vector<result> check(const ref_case& c, const std::vector<policy_kind>& policies) {
  std::vector<result> out;
  const auto it = runners().find(c.layer);
  for (auto p : policies) {
    if (it == runners().end()) {
      out.push_back(skipped(c, p, "layer '" + c.layer + "' is not implemented yet"));
      continue;
    }
    try {
      out.push_back(it->second(c, p));
    } catch (const std::exception& e) {
      result r = make_result(c, p);
      r.state = result::status::fail, r.reason = e.what();
      out.push_back(r);
    }
  }
  return out;
}

}  // namespace seqmix::refcheck
