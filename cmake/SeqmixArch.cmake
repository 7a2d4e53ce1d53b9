# seqmix_arch_flags(<arch> <out-var>): compiler flags that select the compile-time SIMD target.
#   native  -march=native (AVX-512 on this project's machines)
#   avx2    AVX2 + FMA (x86-64-v3)
#   generic the x86-64 baseline (SSE2); xsimd then uses its sse2 kernels
#   none    no flags: the consumer's own flags decide
function(seqmix_arch_flags arch out)
  if(arch STREQUAL "native")
    set(flags -march=native)
  elseif(arch STREQUAL "avx2")
    set(flags -march=x86-64-v3)
  elseif(arch STREQUAL "generic")
    set(flags -march=x86-64)
  elseif(arch STREQUAL "none")
    set(flags "")
  else()
    message(FATAL_ERROR "SEQMIX_ARCH='${arch}': expected native, avx2, generic or none")
  endif()
  set(${out} "${flags}" PARENT_SCOPE)
endfunction()
