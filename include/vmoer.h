// vmoer public API. The library's modules (GGUF, tensor types, model, routers, tokenizer) are
// declared here for users; see the README for a tour.
#ifndef VMOER_H
#define VMOER_H

#define VMOER_VERSION "0.1.0"
const char *vmoer_version(void);

#endif
