/* The struct_size rule: _init, read and write over the bytes that both the
 * caller's struct and the library's know (struct_size.h). */
#include "struct_size.h"

#include <stdio.h>
#include <string.h>

#include "agave_version.h"

size_t struct_size_get(const void *caller)
{
    size_t size;
    memcpy(&size, caller, sizeof size);
    return size;
}

static size_t smaller(size_t a, size_t b) { return a < b ? a : b; }

void struct_init(void *caller, size_t caller_size, const void *defaults, size_t lib_size)
{
    if (caller_size < sizeof(size_t))
        return;
    memset(caller, 0, caller_size);
    memcpy(caller, defaults, smaller(caller_size, lib_size));
    memcpy(caller, &caller_size, sizeof caller_size);
}

static int too_small(size_t size, size_t min_size, const char *what, char *why, size_t len)
{
    if (size >= min_size)
        return 0;
    if (why && len)
        snprintf(why, len, "%s.struct_size is %zu, less than the %zu bytes it must cover: "
                 "fill the struct with its _init function (or set struct_size to sizeof the "
                 "struct)", what, size, min_size);
    return 1;
}

int struct_read(void *lib, size_t lib_size, const void *caller, size_t min_size,
                const char *what, char *why, size_t len)
{
    size_t size = struct_size_get(caller);
    if (too_small(size, min_size < sizeof size ? sizeof size : min_size, what, why, len))
        return 0;
    const unsigned char *tail = (const unsigned char *)caller;
    for (size_t i = lib_size; i < size; i++)
        if (tail[i] != 0) {
            if (why && len)
                snprintf(why, len, "%s has %zu bytes, this library knows %zu, and byte %zu is "
                         "set: the program was built against a newer agave.h and sets a field "
                         "this library (%s) cannot honour", what, size, lib_size, i,
                         AGAVE_VERSION_STRING);
            return 0;
        }
    size_t lib_struct_size = lib_size;
    memcpy(lib, caller, smaller(size, lib_size));
    memcpy(lib, &lib_struct_size, sizeof lib_struct_size);
    return 1;
}

int struct_write(void *caller, const void *lib, size_t lib_size, size_t min_size,
                 const char *what, char *why, size_t len)
{
    size_t size = struct_size_get(caller);
    if (too_small(size, min_size < sizeof size ? sizeof size : min_size, what, why, len))
        return 0;
    size_t n = smaller(size, lib_size);
    memcpy((unsigned char *)caller + sizeof size, (const unsigned char *)lib + sizeof size,
           n - sizeof size);
    return 1;
}
