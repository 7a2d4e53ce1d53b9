#!/usr/bin/env bash
# The SIMD boundary: only include/seqmix/simd/ may name xsimd or x86 intrinsics. Fails (exit 1) and
# prints the offending lines when `xsimd::`, an xsimd include, an `_mm` intrinsic or type prefix, or
# <immintrin.h> / <*intrin.h> appears in include/ outside include/seqmix/simd/, or anywhere in
# bench/, tests/, examples/ or tools/. Comments count too: name the simd/ function instead.
#
# Usage: scripts/check_simd_boundary.sh [repository root]   (default: this script's parent folder)
# Exception: tests/core/test_simd.cpp, which tests simd/ itself, may name xsimd.
set -euo pipefail

root=${1:-"$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"}
cd "$root"

pattern='xsimd::|xsimd/|[^[:alnum:]_]_mm[[:alnum:]_]*|^_mm|__m(128|256|512)|[a-z]*intrin\.h'
dirs=()
for d in include bench tests examples tools; do [[ -d $d ]] && dirs+=("$d"); done

hits=$(grep -rnE --include='*.hpp' --include='*.h' --include='*.cpp' --include='*.cc' --include='*.inl' \
         "$pattern" "${dirs[@]}" \
       | grep -v '^include/seqmix/simd/' \
       | grep -v '^tests/core/test_simd\.cpp:' || true)

if [[ -n $hits ]]; then
  echo "SIMD boundary: xsimd or intrinsics outside include/seqmix/simd/ (add a named function to simd/):" >&2
  echo "$hits" >&2
  exit 1
fi
echo "SIMD boundary: ok (xsimd and intrinsics appear only in include/seqmix/simd/)"
