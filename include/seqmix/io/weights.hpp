// seqmix::io::weight_source: a layer's view of a safetensors file (name prefix + layer name for
// messages), so layers load their weights with one call and uniform error messages.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

#include "../config.hpp"
#include "../error.hpp"
#include "../tensor/tensor.hpp"
#include "safetensors.hpp"

namespace seqmix::io {

/// Options of a weight_source.
struct weight_options {
  /// load() throws seqmix::error naming the weight when a value is NaN or infinite. Also on when
  /// the file was opened with load_options::check_finite.
  bool check_finite = false;
};

/// Loads weights named `prefix + name` from a safetensors file, reporting errors as `who`.
/// Holds a pointer to the file: the safetensors object must outlive the weight_source.
class weight_source {
 public:
  /// `prefix` is prepended to every name (e.g. "model.layers.3.attn."); `who` names the layer in
  /// messages (e.g. "GatedLinearAttention").
  explicit weight_source(const safetensors& file, std::string prefix = {}, std::string who = "weights",
                         weight_options options = {})
      : file_(&file), prefix_(std::move(prefix)), who_(std::move(who)), options_(options) {}
  // A temporary file would dangle.
  weight_source(const safetensors&&, std::string = {}, std::string = {}, weight_options = {}) = delete;

  /// Weight `prefix + name` as a tensor<T, R> of exactly `shape`. Throws seqmix::error
  /// "<who>: weight '<prefix+name>' not found in <source>",
  /// "<who>: weight '<prefix+name>' has shape [..], expected [..]" or, when finite values are
  /// checked, "<who>: weight '<prefix+name>' holds a non-finite value (NaN) at element i of ...".
  template <class T, std::size_t R>
  tensor<T, R> load(std::string_view name, const std::array<index_t, R>& shape) const {
    const std::string full = prefix_ + std::string(name);
    if (!file_->contains(full)) throw error(who_ + ": weight '" + full + "' not found in " + file_->source());
    check_shape(who_, "weight '" + full + "'", file_->info(full).shape, shape);
    tensor<T, R> out = file_->read<T, R>(full);
    if (check_finite()) {
      const index_t bad = detail::first_non_finite(out.data(), out.size());
      if (bad >= 0)
        throw error(who_ + ": weight '" + full + "' holds a non-finite value (" + detail::value_string(out.data()[bad]) +
                    ") at element " + std::to_string(bad) + " of shape " + shape_string(out.extents()) + " in " +
                    file_->source());
    }
    return out;
  }

  /// True if load() checks that values are finite.
  bool check_finite() const { return options_.check_finite || file_->options().check_finite; }

  /// True if weight `prefix + name` exists.
  bool has(std::string_view name) const { return file_->contains(prefix_ + std::string(name)); }

  const safetensors& file() const { return *file_; }
  const std::string& prefix() const { return prefix_; }
  const std::string& who() const { return who_; }

 private:
  const safetensors* file_;
  std::string prefix_;
  std::string who_;
  weight_options options_;
};

}  // namespace seqmix::io
