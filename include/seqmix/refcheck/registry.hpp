// Dispatch of reference cases on `seqmix.layer`: one line per layer with a runner.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "case.hpp"
#include "gla.hpp"

namespace seqmix::refcheck {

using runner = result (*)(const ref_case&, policy_kind);

/// Layer name (the refs folder name) -> runner.
inline const std::map<std::string, runner, std::less<>>& runners() {
  static const std::map<std::string, runner, std::less<>> table{
      {"gla", &gla::run},
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
