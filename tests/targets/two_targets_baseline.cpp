// The baseline unit of the two-target binary (flags: -march=x86-64, SSE2).
#define TWO_TARGETS_ENTRY run_baseline
#include "unit.inc"
