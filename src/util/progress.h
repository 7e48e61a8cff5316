// A one-line progress bar on stderr for long work (fit, train, demo): done/total, a caller's
// label and value (e.g. "loss 2.31"), rate and ETA. Redrawn in place with '\r', so only when stderr
// is a terminal (vm_progress_want); log files get the callers' plain per-epoch lines instead.
#pragma once
#include <stdint.h>

// 1 when a bar should be drawn: mode 1 = always, mode < 0 = when stderr is a tty, else never.
int vm_progress_want(int mode);
// Draws "\r[#####-----] done/total <what> <rate> <unit>/s ETA XmYYs" (what may be NULL).
void vm_progress_bar(int64_t done, int64_t total, const char *what, double rate, const char *unit,
                     double eta_seconds);
// Monotonic wall-clock seconds (rates, ETAs, benchmark timings).
double vm_now_s(void);
// Ends the bar's line (a newline), so following messages start on a fresh line.
void vm_progress_end(void);
