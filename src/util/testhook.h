// Deterministic crash points for the kill tests (tests/cli/fit_kill.sh). With the environment
// variable VMOER_TEST_KILL="<point>:<N>" the process kills itself with SIGKILL the N-th time it
// passes vm_test_kill_point("<point>") (stdio flushed first, so a file being written is left as a
// real crash would leave it). Points: "fit-cache" (each example entering the fit's hidden-state
// cache), "fit-step" (after each optimiser step, before that step's checkpoint), "gguf-write"
// (half-way through the tensor data of each GGUF file written). Without the variable: nothing.
#pragma once

void vm_test_kill_point(const char *point);
