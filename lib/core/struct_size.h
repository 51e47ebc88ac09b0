/* The struct_size rule (docs/build.md, "ABI policy"). Every public struct
 * that a program allocates starts with size_t struct_size, the size of the
 * struct in the header the program was compiled against. A program built
 * against an older header passes a smaller size, one built against a newer
 * header a larger one; the library then works on the bytes both know:
 *  - an _init zeroes all of the caller's bytes and writes the defaults of
 *    the fields that fit;
 *  - a reader starts from the defaults and takes the caller's values of the
 *    fields its size covers; bytes past the library's own struct must be zero
 *    (a field this library does not know, left at its _init value), so that
 *    a setting it cannot honour is refused rather than ignored;
 *  - a writer writes the fields the caller's size covers and nothing else.
 * A field counts as covered when it ends within struct_size, so fields are
 * only ever appended. */
#ifndef AGAVE_STRUCT_SIZE_H
#define AGAVE_STRUCT_SIZE_H

#include <stddef.h>

/* The offset just past a field: the smallest struct_size that covers it. */
#define STRUCT_END(type, field) (offsetof(type, field) + sizeof(((type *)0)->field))

/* sizeof a struct whose last field is `last`: STRUCT_END rounded up to the
 * struct's alignment (the size a header of that layout gave its programs). */
#define STRUCT_SIZE(type, last)                                                            \
    ((STRUCT_END(type, last) + _Alignof(type) - 1) / _Alignof(type) * _Alignof(type))

/* The caller's struct_size. */
size_t struct_size_get(const void *caller);

/* _init: zeroes caller_size bytes at caller, copies the fields of defaults (a
 * library struct of lib_size bytes) that fit and sets struct_size to
 * caller_size. Nothing when caller_size does not cover struct_size itself. */
void struct_init(void *caller, size_t caller_size, const void *defaults, size_t lib_size);

/* Reader: lib (lib_size bytes) holds the defaults; the caller's bytes both
 * know are copied over them, and lib's struct_size becomes lib_size. Returns 0
 * with a sentence in why (naming the struct as `what`) when the caller's
 * struct_size is below min_size or the caller's bytes past lib_size are not
 * all zero; lib is then untouched. */
int struct_read(void *lib, size_t lib_size, const void *caller, size_t min_size,
                const char *what, char *why, size_t len);

/* Writer: copies the fields of lib (lib_size bytes) that the caller's
 * struct_size covers; the caller's struct_size and any bytes past lib_size
 * stay. Returns 0 with a sentence in why when the caller's struct_size is
 * below min_size; nothing is written then. */
int struct_write(void *caller, const void *lib, size_t lib_size, size_t min_size,
                 const char *what, char *why, size_t len);

#endif
