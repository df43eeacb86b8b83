/* systemd's cleanup style: a variable marked _cleanup_(f) has f(&var) called
 * when it goes out of scope, so that error paths return without freeing by
 * hand. Each f accepts a pointer to NULL. */
#pragma once

#include <stdlib.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void freep(void *p) {
        free(*(void **)p);
}
#define _cleanup_free_ _cleanup_(freep)

/* Hand a value over: the variable no longer frees it. */
#define TAKE_PTR(p)                              \
        ({                                       \
                __typeof__(p) _taken_ = (p);     \
                (p) = NULL;                      \
                _taken_;                         \
        })
