// seqmix: sequence-mixing layers for LLMs on CPUs. Umbrella header: the core vocabulary, every op
// and every layer. (kernels/<family>/ref.hpp, the test oracles, are included separately;
// the reference-case runner lives in tools/refcheck/, outside the library.)
#pragma once

#include "config.hpp"
#include "error.hpp"
#include "io/safetensors.hpp"
#include "io/weights.hpp"
#include "policy/execution.hpp"
#include "policy/threads.hpp"
#include "simd/batch.hpp"
#include "simd/gemm.hpp"
#include "simd/math.hpp"
#include "simd/softmax.hpp"
#include "simd/vec.hpp"
#include "tensor/concepts.hpp"
#include "tensor/eigen.hpp"
#include "tensor/random.hpp"
#include "tensor/tensor.hpp"
#include "tensor/view.hpp"

// Building blocks with weights.
#include "nn/conv1d.hpp"
#include "nn/delta_branch.hpp"
#include "nn/group_norm.hpp"
#include "nn/linear.hpp"
#include "nn/rmsnorm.hpp"
#include "nn/rotary.hpp"

// Ops and layers: one line per layer.
#include "kernels/attention/attention.hpp"
#include "kernels/attention/differential.hpp"
#include "kernels/delta_rule/delta_rule.hpp"
#include "kernels/gla/gla.hpp"
#include "kernels/rwkv7/rwkv7.hpp"
#include "kernels/ssm/selective_scan.hpp"
#include "kernels/ssm/ssd.hpp"
#include "layers/attention.hpp"
#include "layers/concept.hpp"
#include "layers/cross_layer.hpp"
#include "layers/delta_net.hpp"
#include "layers/diff_attn.hpp"
#include "layers/gated_delta_net.hpp"
#include "layers/gla.hpp"
#include "layers/mamba.hpp"
#include "layers/mamba2.hpp"
#include "layers/ngpt.hpp"
#include "layers/rwkv7.hpp"
