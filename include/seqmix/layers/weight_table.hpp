// A layer's weight table: one list of (upstream name, shape from the config, presence, init rule)
// that drives load, save, shape validation, init and the finite check, so that no layer writes a
// weight's name or shape twice.
//
// A layer lists its weights once, in a static member template
//   template <class W, class F> static void each_weight(const config& c, W& w, F&& f)
// calling f(weight_spec, member) for every checkpoint entry (W is `weights` or `const weights`).
// The operations below are the visitors F.
#pragma once

#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>

#include "../config.hpp"
#include "../error.hpp"
#include "../io/weights.hpp"
#include "../nn/conv1d.hpp"
#include "../nn/linear.hpp"
#include "../nn/packed_matrix.hpp"
#include "../tensor/bf16.hpp"
#include "../tensor/tensor.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::layers {

/// How `init()` fills a weight. The default (fan_in) is torch's nn.Linear / nn.Conv1d init:
/// uniform in ±1/√fan_in, with fan_in the product of the stored shape after its first axis
/// (the first axis itself for a weight stored transposed, [in, out]).
struct init_rule {
  enum class kind { fan_in, uniform, constant, values } what = kind::fan_in;
  double lo = 0, hi = 0;  ///< uniform: [lo, hi); constant: lo
  /// values: element i (row-major, as stored) from u, a uniform [0, 1) number drawn for it.
  std::function<double(index_t i, double u)> value;

  static init_rule fan_in() { return {}; }
  static init_rule uniform(double lo, double hi) { return {kind::uniform, lo, hi, {}}; }
  static init_rule constant(double c) { return {kind::constant, c, c, {}}; }
  static init_rule ones() { return constant(1); }
  static init_rule zeros() { return constant(0); }
  static init_rule values(std::function<double(index_t, double)> f) { return {kind::values, 0, 0, std::move(f)}; }
  /// The SSM time-step bias of mamba_ssm and fla: dt log-uniform in [lo, hi] (at least 1e-4),
  /// stored as softplus⁻¹(dt) = dt + log(1 − e^−dt), so that softplus(bias) starts at dt.
  static init_rule dt_bias(double lo = 1e-3, double hi = 0.1) {
    return values([lo, hi](index_t, double u) {
      const double dt = std::max(std::exp(std::log(lo) + u * (std::log(hi) - std::log(lo))), 1e-4);
      return dt + std::log(-std::expm1(-dt));
    });
  }
};

/// One checkpoint entry. `shape` is as stored in the file; the member holding it may drop unit
/// axes (a conv weight [C, 1, W] kept as [C, W], a [1, 1, C] vector kept as [C]) or, with
/// `transposed`, keep a 2-d weight stored [in, out] as a torch-layout [out, in] linear.
template <std::size_t FileRank>
struct weight_spec {
  std::string name;                      ///< upstream name, without the layer's prefix
  std::array<index_t, FileRank> shape;   ///< as stored in the checkpoint
  init_rule init = {};
  bool present = true;     ///< false: not part of this configuration (the member stays empty)
  bool transposed = false; ///< 2-d only: stored [in, out], kept [out, in]
};

/// The element types of the weight members of a layer computing in T: T itself, or bf16 (the
/// projections of a layer built with bf16 weights).
template <class E, class T>
concept weight_element = std::same_as<E, T> || std::same_as<E, bf16>;

namespace detail {

/// The member's shape for a stored shape: transposed, or unit axes dropped from the left until
/// the rank is R ([C, 1, W] -> [C, W], [1, 1, C] -> [C]).
template <std::size_t R, std::size_t FR>
std::array<index_t, R> member_shape(const weight_spec<FR>& s) {
  std::array<index_t, R> out{};
  if constexpr (R == FR) {
    out = s.shape;
    if constexpr (R == 2)
      if (s.transposed) std::swap(out[0], out[1]);
  } else {
    static_assert(R < FR, "weight_spec: a member cannot have more axes than the stored tensor");
    std::size_t drop = FR - R, o = 0;
    for (std::size_t i = 0; i < FR; ++i) {
      if (drop > 0 && s.shape[i] == 1) {
        --drop;
        continue;
      }
      require(o < R, "weight_spec", "weight '" + s.name + "' " + shape_string(s.shape) + " has no unit axes to drop");
      out[o++] = s.shape[i];
    }
  }
  return out;
}

/// A tensor as stored (shape s.shape) as the member keeps it, and back.
template <std::size_t R, std::size_t FR, class T>
tensor<T, R> to_member(const weight_spec<FR>& s, tensor<T, FR>&& t) {
  if constexpr (R == FR) {
    if constexpr (R == 2)
      if (s.transposed) return tensor<T, 2>(transposed(t.view()));
    return std::move(t);
  } else {
    return tensor<T, R>(t.view().template reshape<R>(member_shape<R>(s)));
  }
}
template <std::size_t FR, std::size_t R, class T>
tensor<T, FR> to_stored(const weight_spec<FR>& s, const tensor<T, R>& m) {
  if constexpr (R == FR) {
    if constexpr (R == 2)
      if (s.transposed) return tensor<T, 2>(transposed(m.view()));
    return tensor<T, FR>(m.view());
  } else {
    return tensor<T, FR>(m.view().template reshape<FR>(s.shape));
  }
}

/// A seed per weight from the layer's seed and the weight's name, so each weight's values do not
/// depend on the order of the table (FNV-1a, then a SplitMix64 step).
inline std::uint64_t weight_seed(std::uint64_t seed, std::string_view name) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (char c : name) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  std::uint64_t z = seed + h + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace detail

/// Visitor: loads every present entry from `src` (names are `src.prefix() + spec.name`), checking
/// the stored shape; absent entries leave the member empty.
template <class T>
struct weight_loader {
  const io::weight_source& src;

  template <weight_element<T> E, std::size_t FR, std::size_t R>
  void operator()(const weight_spec<FR>& s, tensor<E, R>& m) const {
    if (!s.present) return void(m = tensor<E, R>());
    m = detail::to_member<R>(s, src.load<E, FR>(s.name, s.shape));
  }
  template <weight_element<T> E, std::size_t FR>
  void operator()(const weight_spec<FR>& s, nn::packed_matrix<E>& m) const {
    tensor<E, 2> t;
    (*this)(s, t);
    m = nn::packed_matrix<E>(t.view());
  }
  template <weight_element<T> E, std::size_t FR, std::size_t R>
  void operator()(const weight_spec<FR>& s, std::optional<tensor<E, R>>& m) const {
    if (!s.present) return void(m.reset());
    m.emplace();
    (*this)(s, *m);
  }
};

/// Visitor: writes every present entry to `out` under `prefix + spec.name`, in the stored layout.
template <class T>
struct weight_saver {
  io::safetensors_writer& out;
  const std::string& prefix;

  template <weight_element<T> E, std::size_t FR, std::size_t R>
  void operator()(const weight_spec<FR>& s, const tensor<E, R>& m) const {
    if (s.present) out.add(prefix + s.name, detail::to_stored(s, m));
  }
  template <weight_element<T> E, std::size_t FR>
  void operator()(const weight_spec<FR>& s, const nn::packed_matrix<E>& m) const {
    if (s.present) (*this)(s, m.unpacked());
  }
  template <weight_element<T> E, std::size_t FR, std::size_t R>
  void operator()(const weight_spec<FR>& s, const std::optional<tensor<E, R>>& m) const {
    if (s.present && m) (*this)(s, *m);
  }
};

/// Visitor: checks that present entries have their shape and absent ones are empty, naming the
/// layer and the weight.
template <class T>
struct weight_checker {
  std::string_view who;

  template <weight_element<T> E, std::size_t FR, std::size_t R>
  void operator()(const weight_spec<FR>& s, const tensor<E, R>& m) const {
    if (!s.present) return require(m.size() == 0, who, "weight '" + s.name + "' is given but not used by this config");
    check_shape(who, "weight '" + s.name + "'", m.extents(), detail::member_shape<R>(s));
  }
  template <weight_element<T> E, std::size_t FR>
  void operator()(const weight_spec<FR>& s, const nn::packed_matrix<E>& m) const {
    if (!s.present) return require(m.size() == 0, who, "weight '" + s.name + "' is given but not used by this config");
    check_shape(who, "weight '" + s.name + "'", m.extents(), detail::member_shape<2>(s));
  }
  template <weight_element<T> E, std::size_t FR, std::size_t R>
  void operator()(const weight_spec<FR>& s, const std::optional<tensor<E, R>>& m) const {
    require(m.has_value() == s.present, who,
            "weight '" + s.name + (s.present ? "' is required by this config" : "' is given but not used by this config"));
    if (m) (*this)(s, *m);
  }
};

/// Visitor: throws seqmix::error naming the weight when an element is NaN or infinite.
template <class T>
struct finite_checker {
  std::string_view who;

  template <weight_element<T> E, std::size_t FR, std::size_t R>
  void operator()(const weight_spec<FR>& s, const tensor<E, R>& m) const {
    if (const index_t i = io::detail::first_non_finite(m.data(), m.size()); i >= 0)
      throw error(std::string(who) + ": weight '" + s.name + "' has a non-finite value at element " + std::to_string(i));
  }
  template <weight_element<T> E, std::size_t FR>
  void operator()(const weight_spec<FR>& s, const nn::packed_matrix<E>& m) const {
    (*this)(s, m.unpacked());
  }
  template <weight_element<T> E, std::size_t FR, std::size_t R>
  void operator()(const weight_spec<FR>& s, const std::optional<tensor<E, R>>& m) const {
    if (m) (*this)(s, *m);
  }
};

/// Visitor: fills every present entry by its init rule from a seed (reproducible on every
/// platform: the bits come from std::mt19937_64, which the standard fixes).
template <class T>
struct weight_initializer {
  std::uint64_t seed;

  template <weight_element<T> E, std::size_t FR, std::size_t R>
  void operator()(const weight_spec<FR>& s, tensor<E, R>& m) const {
    if (!s.present) return void(m = tensor<E, R>());
    tensor<E, FR> t(s.shape);
    std::mt19937_64 rng(detail::weight_seed(seed, s.name));
    auto u = [&] { return double(rng() >> 11) * 0x1p-53; };
    index_t fan_in = 1;
    if (s.transposed) fan_in = s.shape[0];
    else
      for (std::size_t i = 1; i < FR; ++i) fan_in *= s.shape[i];
    const double bound = 1 / std::sqrt(double(std::max<index_t>(fan_in, 1)));
    const init_rule& r = s.init;
    for (index_t i = 0; i < t.size(); ++i) {
      double v = 0;
      switch (r.what) {
        case init_rule::kind::fan_in: v = -bound + 2 * bound * u(); break;
        case init_rule::kind::uniform: v = r.lo + (r.hi - r.lo) * u(); break;
        case init_rule::kind::constant: v = r.lo; break;
        case init_rule::kind::values: v = r.value(i, u()); break;
      }
      t.data()[i] = static_cast<E>(static_cast<T>(v));  // bf16: rounded from T
    }
    m = detail::to_member<R>(s, std::move(t));
  }
  template <weight_element<T> E, std::size_t FR>
  void operator()(const weight_spec<FR>& s, nn::packed_matrix<E>& m) const {
    tensor<E, 2> t;
    (*this)(s, t);
    m = nn::packed_matrix<E>(t.view());
  }
  template <weight_element<T> E, std::size_t FR, std::size_t R>
  void operator()(const weight_spec<FR>& s, std::optional<tensor<E, R>>& m) const {
    if (!s.present) return void(m.reset());
    m.emplace();
    (*this)(s, *m);
  }
};

/// The entries of a linear `<name>.weight` [out, in] and, with `bias`, `<name>.bias` [out]
/// (initialised as torch does: uniform in ±1/√in).
template <class F, class L>
void linear_weights(F& f, const std::string& name, L& lin, index_t out, index_t in, bool bias = false,
                    init_rule weight_init = {}) {
  f(weight_spec<2>{name + ".weight", {out, in}, std::move(weight_init)}, lin.weight);
  const double b = 1 / std::sqrt(double(std::max<index_t>(in, 1)));
  f(weight_spec<1>{name + ".bias", {out}, init_rule::uniform(-b, b), bias}, lin.bias);
}

/// The entries of a depthwise conv `<name>.weight` [C, 1, W] and, with `bias`, `<name>.bias` [C].
template <class F, class C>
void conv_weights(F& f, const std::string& name, C& conv, index_t channels, index_t width, bool bias) {
  f(weight_spec<3>{name + ".weight", {channels, 1, width}}, conv.weight);
  const double b = 1 / std::sqrt(double(std::max<index_t>(width, 1)));
  f(weight_spec<1>{name + ".bias", {channels}, init_rule::uniform(-b, b), bias}, conv.bias);
}

}  // namespace seqmix::layers
