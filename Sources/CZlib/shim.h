#pragma once
#include <zlib.h>
// inflateInit is a macro over inflateInit_: expose it as a function.
static inline int mancs_inflate_init(z_stream *s) { return inflateInit(s); }
