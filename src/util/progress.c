#include "util/progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

int vm_progress_want(int mode) { return mode == 1 || (mode < 0 && isatty(2)); }

void vm_progress_bar(int64_t done, int64_t total, const char *what, double rate, const char *unit,
                     double eta_seconds) {
    char bar[31];
    const int w = 30, f = total > 0 ? (int)(w * (done < total ? done : total) / total) : w;
    for (int i = 0; i < w; i++) bar[i] = i < f ? '#' : '-';
    bar[w] = 0;
    if (!(eta_seconds >= 0) || eta_seconds > 359999) eta_seconds = 0;   // NaN / unknown: show 0
    const int eta = (int)eta_seconds;
    fprintf(stderr, "\r[%s] %lld/%lld%s%s %.0f %s/s ETA %dm%02ds  ", bar, (long long)done, (long long)total,
            what ? " " : "", what ? what : "", rate, unit ? unit : "it", eta / 60, eta % 60);
    fflush(stderr);
}

void vm_progress_end(void) { fputc('\n', stderr); fflush(stderr); }

double vm_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
