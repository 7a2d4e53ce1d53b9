// model_state: one sequence's place in a model — every block's layer state, the one
// cross_layer<T> those states point to, the MLP buffers and the token count. Copying it forks the
// sequence: the copy gets its own cross-layer values and its layer states are repointed to them.
#pragma once

#include <memory>
#include <optional>
#include <type_traits>
#include <vector>

#include "../layers/cross_layer.hpp"
#include "../layers/scratch.hpp"
#include "block.hpp"
#include "families.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::models {

template <class T, class W>
class model;

/// W: the model's weight type (the layers' states are those of its layers).
template <class T, class W = T>
class model_state {
 public:
  model_state(const model_state& o)
      : cross_(std::make_unique<layers::cross_layer<T>>()), layers_(o.layers_), position_(o.position_), capacity_(o.capacity_) {
    repoint();
  }
  model_state& operator=(const model_state& o) {
    if (this != &o) {
      layers_ = o.layers_, position_ = o.position_, capacity_ = o.capacity_;
      cross_ = std::make_unique<layers::cross_layer<T>>();  // also for a moved-from state
      mlp_ = {}, buffers_ = {};
      repoint();
    }
    return *this;
  }
  model_state(model_state&&) noexcept = default;  // the cross-layer values keep their address
  model_state& operator=(model_state&&) noexcept = default;

  /// Tokens the sequence has seen.
  index_t position() const { return position_; }
  using layer_state = typename families_with_t<T, W>::state;
  /// Block i's layer state (a variant of state_of<L>); nullptr when the block's mixer is dropped.
  const layer_state* layer(std::size_t i) const { return layers_.at(i) ? &*layers_[i] : nullptr; }

 private:
  friend class model<T, W>;
  model_state() : cross_(std::make_unique<layers::cross_layer<T>>()) {}

  // Every value a producer leaves in cross_layer is rewritten by it before its consumers read it in
  // the same call, so a fork starts from empty cross-layer values.
  void repoint() {
    for (auto& s : layers_)
      if (s)
        std::visit(
            [&](auto& st) {
              if constexpr (requires { st.value.cross = cross_.get(); }) st.value.cross = cross_.get();
            },
            *s);
  }

  std::unique_ptr<layers::cross_layer<T>> cross_;
  std::vector<std::optional<layer_state>> layers_;  // none: the block's mixer is dropped
  index_t position_ = 0;
  index_t capacity_ = 0;
  // forward temporaries (not part of the sequence: a copy starts without them)
  mlp_buffers<T> mlp_;
  layers::scratch<T> buffers_;  // the hidden rows of a call
};

}  // namespace seqmix::models
