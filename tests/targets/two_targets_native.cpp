// The native-target unit of the two-target binary (flags: -march=native).
#define TWO_TARGETS_ENTRY run_native
#include "unit.inc"
