// Shared between src/eval/metrics*.c only: not part of the public metrics API.
#pragma once

// qsort comparator of doubles (ascending; NaN-free input).
int vm_cmp_double(const void *a, const void *b);
// Linear-interpolation quantile of sorted v (m >= 1), as numpy's default method.
double vm_quantile_sorted(const double *v, int m, double q);

// Validates classification inputs (see eval/metrics.h conventions); fn names the caller.
int vm_metric_check_cls(const char *fn, int n, int C, const double *p, const int *y);
