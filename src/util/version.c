#include "vmoer.h"
const char *vmoer_version(void) { return VMOER_VERSION; }
