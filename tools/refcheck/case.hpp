// Reference cases (refs/README.md schema): loading, the tolerance rule and result lines. Shared by
// tools/seqmix-refcheck and the test suite; users check their own layer outputs the same way.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

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

  /// Reads case file `p` (see parse for the checks).
  static ref_case load(const std::filesystem::path& p) { return from(p, io::safetensors::load(p, {.check_finite = true})); }

  /// The case in `bytes`, named `name` in messages: the same checks as load(), from memory (the
  /// fuzz target feeds cases this way). Beyond the safetensors rules, a case is rejected with
  /// seqmix::error when a tensor holds NaN or infinity (on reading), has a zero extent (its other extents would bound nothing), when
  /// seqmix.config is not a JSON object or seqmix.tolerance lacks finite atol / rtol.
  static ref_case parse(std::vector<std::byte> bytes, const std::filesystem::path& name) {
    return from(name, io::safetensors::parse(std::move(bytes), name.string(), {.check_finite = true}));
  }

  /// Elements every tensor of the file holds together, plus a small allowance: the most a run may
  /// allocate for one output, state or cache (see reserve()).
  index_t budget = 0;
  static constexpr index_t budget_allowance = index_t(1) << 16;
  /// The largest value an integer config field may hold (see cfg).
  static constexpr index_t max_config_int = index_t(1) << 24;
  /// The largest magnitude a floating-point config field may hold.
  static constexpr double max_config_real = 1e9;

  /// Throws seqmix::error unless `count` elements of `what` fit the budget: a valid case stores
  /// each output and final state it produces, so none can be larger than the file's own tensors.
  /// Runners call it before allocating from sizes that combine several tensors or the config.
  void reserve(index_t count, const std::string& what) const {
    if (count < 0 || count > budget)
      throw error("refcheck " + path.string() + ": " + what + " would hold " + std::to_string(count) +
                  " elements, more than the case's tensors (" + std::to_string(budget) + " with the allowance)");
  }
  /// reserve() for a tensor of `shape` (an overflowing element count is an error too).
  template <std::size_t R>
  void reserve(const std::array<index_t, R>& shape, const std::string& what) const {
    index_t n = 1;
    for (auto e : shape)
      if (e < 0 || __builtin_mul_overflow(n, e, &n))
        throw error("refcheck " + path.string() + ": " + what + " of shape " + shape_string(shape) + " overflows");
    reserve(n, what + " " + shape_string(shape));
  }

  static ref_case from(const std::filesystem::path& p, io::safetensors f) {
    ref_case c{p, std::move(f), {}, {}, {}, 0, 0};
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
    if (!c.config.is_object()) throw error("refcheck " + p.string() + ": seqmix.config is not a JSON object");
    if (!std::isfinite(c.atol) || !std::isfinite(c.rtol))
      throw error("refcheck " + p.string() + ": seqmix.tolerance atol and rtol must be finite");
    index_t total = budget_allowance;
    for (const auto& n : c.file.names()) {
      const auto& info = c.file.info(n);
      for (auto e : info.shape)
        if (e == 0) throw error("refcheck " + p.string() + ": tensor '" + n + "' has a zero extent " + shape_string(info.shape));
      total += info.numel();  // the reader bounds each by the file size, so the sum cannot overflow
    }
    c.budget = total;
    return c;
  }

  bool has(std::string_view name) const { return file.contains(name); }
  template <class T, std::size_t R>
  tensor<T, R> get(std::string_view name) const { return file.get<T, R>(name); }
  /// The tensor if present, else zeros of `shape` (absent state_in means zero state).
  template <class T, std::size_t R>
  tensor<T, R> get_or_zero(std::string_view name, const std::array<index_t, R>& shape) const {
    if (!has(name)) {
      reserve(shape, std::string(name));
      return tensor<T, R>(shape);
    }
    return file.get<T, R>(name, shape, "refcheck " + path.filename().string());
  }
  /// Config entry `key` as T (throws seqmix::error naming the file and the key when absent or
  /// mistyped; see config_value for the numbers accepted).
  template <class T>
  T cfg(const char* key) const {
    const auto it = config.find(key);
    if (it == config.end()) throw error("refcheck " + path.string() + ": config '" + key + "' is missing");
    return config_value<T>(*it, key);
  }
  /// Config entry `key` as T, or `fallback` when it is absent or null.
  template <class T>
  T cfg_or(const char* key, T fallback) const {
    const auto it = config.find(key);
    return it == config.end() || it->is_null() ? fallback : config_value<T>(*it, key);
  }
  /// JSON value `v` of config key `key` as T. An integer field takes an integer in
  /// [0, max_config_int] (a float only when it is integral, as in 2.0); a floating-point field a
  /// number of magnitude at most max_config_real; a bool field true or false; anything else is a
  /// seqmix::error naming the key.
  template <class T>
  T config_value(const nlohmann::json& v, const std::string& key) const {
    const auto bad = [&](const std::string& why) {
      return error("refcheck " + path.string() + ": config '" + key + "' = " + v.dump() + ": " + why);
    };
    if constexpr (std::is_same_v<T, bool>) {
      if (!v.is_boolean()) throw bad("expected true or false");
      return v.get<bool>();
    } else if constexpr (std::is_integral_v<T>) {
      if (!v.is_number()) throw bad("expected an integer");
      if (v.is_number_float()) {
        const double d = v.get<double>();
        if (!std::isfinite(d) || d != std::trunc(d)) throw bad("expected an integer");
        if (d < 0 || d > double(max_config_int)) throw bad("out of range [0, " + std::to_string(max_config_int) + "]");
        return static_cast<T>(d);
      }
      if (v.is_number_unsigned() ? v.get<std::uint64_t>() > std::uint64_t(max_config_int)
                                 : v.get<std::int64_t>() < 0 || v.get<std::int64_t>() > max_config_int)
        throw bad("out of range [0, " + std::to_string(max_config_int) + "]");
      return static_cast<T>(v.get<std::int64_t>());
    } else if constexpr (std::is_floating_point_v<T>) {
      if (!v.is_number()) throw bad("expected a number");
      const double d = v.get<double>();
      if (!std::isfinite(d) || std::abs(d) > max_config_real)
        throw bad("expected a finite number of magnitude at most " + std::to_string(max_config_real));
      return static_cast<T>(d);
    } else {
      try {
        return v.get<T>();
      } catch (const nlohmann::json::exception& e) {
        throw bad(e.what());
      }
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
