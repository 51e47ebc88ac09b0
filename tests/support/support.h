/* Helpers shared by the test programs (linked into every one of them). */
#ifndef AGAVE_TEST_SUPPORT_H
#define AGAVE_TEST_SUPPORT_H

#include <agave.h>

/* The "tiny" configuration (1x8x8, F = 8) with these fields changed: the
 * smallest model that has every part. Fails the test if tiny is unknown. */
agave_config support_tiny_config(int C, int T, int s, int b, agave_mode mode);

/* A file of the source tree (path relative to its top), whole, as a
 * NUL-terminated string (malloc'ed). The tree is $AGAVE_SRCDIR when set, else
 * the working directory (make runs the tests from the top). Fails the test
 * if the file cannot be read. */
char *support_read_text(const char *path);

/* A file's bytes (malloc'ed; *len their count), and a file written with
 * len bytes; either fails the test on an I/O error. */
unsigned char *support_read_file(const char *path, size_t *len);
void support_write_file(const char *path, const void *p, size_t len);

/* The tests' one temporary directory helper. A new empty directory
 * $TMPDIR/NAME.XXXXXX (/tmp when TMPDIR is unset or empty), its path written
 * into buf: 0 on success, -1 otherwise, so that a cmocka setup can return it.
 * support_tmpdir_remove removes it with everything in it (following no
 * symbolic link): 0 when it is gone, so that a teardown can return it. */
int support_tmpdir_make(char *buf, size_t len, const char *name);
int support_tmpdir_remove(const char *dir);

/* dir + "/" + name in a static ring of 8 buffers (valid for 8 calls). */
const char *support_path(const char *dir, const char *name);

/* calloc that fails the test when it returns NULL. */
void *support_calloc(size_t n, size_t size);

/* A new tensor of ndim of the dims d0..d3, every value test_uniform(-1, 1)
 * (support/gradcheck.h's stream); fails the test on an error. */
agave_tensor *support_uniform_tensor(agave_context *ctx, int ndim, int d0, int d1, int d2,
                                     int d3);

/* L = sum(y * R), R a new uniform tensor of y's (4-D) shape, back-propagated:
 * every input of y that requires a gradient gets dL/dinput, and dL/dy = R.
 * *R is R (the caller frees it); returns its values. */
const float *support_backward_against_random(agave_context *ctx, agave_tensor *y,
                                             agave_tensor **R);

#endif
