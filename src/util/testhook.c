// Crash points for the kill tests (testhook.h): a kill at a point named in advance replaces kills
// at wall-clock fractions of a run, whose outcome depended on the machine's speed.
#include "util/testhook.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void vm_test_kill_point(const char *point) {
    const char *spec = getenv("VMOER_TEST_KILL");
    const size_t n = strlen(point);
    if (!spec || strncmp(spec, point, n) || spec[n] != ':') return;
    static long passed;   // one point is named per process; only the main thread passes points
    if (++passed == atol(spec + n + 1)) {
        fflush(NULL);
        raise(SIGKILL);
    }
}
