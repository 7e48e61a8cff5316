// Shared between src/eval/metrics*.c only: not part of the public metrics API.
#pragma once

// Validates classification inputs (see eval/metrics.h conventions); fn names the caller.
int vm_metric_check_cls(const char *fn, int n, int C, const double *p, const int *y);
