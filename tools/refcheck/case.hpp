// Reference cases (refs/README.md schema): loading, the tolerance rule and result lines. Shared by
// tools/seqmix-refcheck and the test suite; users check their own layer outputs the same way.
#pragma once

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include <seqmix/io/safetensors.hpp>
#include <seqmix/policy/execution.hpp>
#include <seqmix/tensor/tensor.hpp>

namespace seqmix::refcheck {

/// The three policies a case can be run with.
enum class policy_kind { recurrent, chunkwise, parallel };

inline const char* policy_name(policy_kind p) {
  return p == policy_kind::recurrent ? "recurrent" : p == policy_kind::chunkwise ? "chunkwise" : "parallel";
}

/// Calls fn with the policy object of `p` (chunkwise uses 64-token chunks).
template <class Fn>
decltype(auto) with_policy(policy_kind p, Fn&& fn) {
  switch (p) {
    case policy_kind::recurrent: return fn(exec::recurrent{});
    case policy_kind::chunkwise: return fn(exec::chunkwise<64>{});
    default: return fn(exec::parallel{});
  }
}

/// One reference file: tensors plus the parsed `seqmix.*` metadata.
struct ref_case {
  std::filesystem::path path;
  io::safetensors file;
  std::string layer, level;
  nlohmann::json config;
  double atol = 0, rtol = 0;

  static ref_case load(const std::filesystem::path& p) {
    ref_case c{p, io::safetensors::load(p), {}, {}, {}, 0, 0};
    auto meta = [&](const char* key) {
      auto v = c.file.metadata(key);
      if (!v) throw error("refcheck " + p.string() + ": metadata '" + key + "' is missing");
      return *v;
    };
    c.layer = meta("seqmix.layer");
    c.level = meta("seqmix.level");
    try {
      c.config = nlohmann::json::parse(meta("seqmix.config"));
      const auto tol = nlohmann::json::parse(meta("seqmix.tolerance"));
      c.atol = tol.at("atol").get<double>();
      c.rtol = tol.at("rtol").get<double>();
    } catch (const nlohmann::json::exception& e) {
      throw error("refcheck " + p.string() + ": bad seqmix.config or seqmix.tolerance: " + e.what());
    }
    return c;
  }

  bool has(std::string_view name) const { return file.contains(name); }
  template <class T, std::size_t R>
  tensor<T, R> get(std::string_view name) const { return file.get<T, R>(name); }
  /// The tensor if present, else zeros of `shape` (absent state_in means zero state).
  template <class T, std::size_t R>
  tensor<T, R> get_or_zero(std::string_view name, const std::array<index_t, R>& shape) const {
    if (!has(name)) return tensor<T, R>(shape);
    return file.get<T, R>(name, shape, "refcheck " + path.filename().string());
  }
  /// Config entry `key` as T (throws seqmix::error naming the file when absent or mistyped).
  template <class T>
  T cfg(const char* key) const {
    try {
      return config.at(key).get<T>();
    } catch (const nlohmann::json::exception& e) {
      throw error("refcheck " + path.string() + ": config '" + key + "': " + e.what());
    }
  }
};

/// Outcome of one case under one policy.
struct result {
  enum class status { pass, fail, skip } state = status::pass;
  std::string file, level, policy, reason;
  double max_abs_err = 0, atol = 0, rtol = 0;

  bool passed() const { return state == status::pass; }
  /// "PASS <file> <level> <policy> max_abs_err=<e> atol=<a> rtol=<r>" (SKIP/FAIL add the reason).
  std::string line() const {
    std::ostringstream s;
    s << (state == status::pass ? "PASS" : state == status::fail ? "FAIL" : "SKIP") << ' ' << file << ' ' << level
      << ' ' << policy;
    if (state != status::skip) s << " max_abs_err=" << max_abs_err << " atol=" << atol << " rtol=" << rtol;
    if (!reason.empty()) s << " (" << reason << ')';
    return s.str();
  }
};

inline result make_result(const ref_case& c, policy_kind p) {
  result r;
  r.file = c.path.string(), r.level = c.level, r.policy = policy_name(p), r.atol = c.atol, r.rtol = c.rtol;
  return r;
}

inline result skipped(const ref_case& c, policy_kind p, std::string why) {
  result r = make_result(c, p);
  r.state = result::status::skip, r.reason = std::move(why);
  return r;
}

/// Compares `got` with the file's expected tensor `name` under |got - want| <= atol + rtol·|want|;
/// records the max abs error and the first failing tensor in `r`. A NaN fails.
template <class T, std::size_t R>
void compare(result& r, const ref_case& c, const std::string& name, tensor_view<const T, R> got) {
  const auto want = c.file.get<double, R>(name);
  if (!std::equal(want.extents().begin(), want.extents().end(), got.extents().begin())) {
    r.state = result::status::fail;
    r.reason = name + " has shape " + shape_string(got.extents()) + ", expected " + shape_string(want.extents());
    return;
  }
  const tensor<double, R> g(got);
  bool ok = true;
  for (index_t i = 0; i < g.size(); ++i) {
    const double e = std::abs(g.data()[i] - want.data()[i]);
    if (!(e <= c.atol + c.rtol * std::abs(want.data()[i]))) ok = false;
    r.max_abs_err = std::isnan(e) ? e : std::max(r.max_abs_err, e);
  }
  if (!ok && r.state == result::status::pass) r.state = result::status::fail, r.reason = name + " out of tolerance";
}

}  // namespace seqmix::refcheck
