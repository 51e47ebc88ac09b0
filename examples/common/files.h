/* Small file helpers. Every file the programs write themselves (not the
 * library's checkpoints and PNGs) is either appended line by line (train.csv)
 * or written whole by the library's atomic writer, so that an interrupted
 * program leaves the old file or the new one, never half of one. */
#ifndef AGAVE_EXAMPLES_FILES_H
#define AGAVE_EXAMPLES_FILES_H

#include <stddef.h>

#include <agave.h>

/* dir + "/" + name, malloc'ed (NULL when out of memory). */
char *path_join(const char *dir, const char *name);
/* 1 if path exists (any kind of file). */
int path_exists(const char *path);
/* 1 if path is a directory. */
int is_directory(const char *path);
/* Creates dir and its missing parents (mode 0777 minus the umask). On failure
 * writes a sentence into err and returns 0. */
int make_dirs(const char *dir, char *err, size_t len);
/* Writes n bytes to path atomically with the library's writer
 * (agave_file_write_atomic: a temporary file beside it, flushed, renamed
 * over it). On failure path is untouched, err gets the library's sentence
 * and 0 is returned. */
int write_file_atomic(agave_context *ctx, const char *path, const char *data, size_t n, char *err,
                      size_t len);
/* 1 if the directory that would hold path exists and is writable; otherwise
 * a sentence in err. Lets a program refuse a bad output path before it
 * spends minutes computing what it would write there. */
int output_dir_ok(const char *path, char *err, size_t len);
/* Takes an exclusive lock on dir/name (created if missing) for the life of
 * the process: returns the descriptor to keep open, or -1 with a sentence in
 * err when another process holds it or the file cannot be made. The kernel
 * drops the lock when the process ends, even by kill -9. */
int lock_file(const char *dir, const char *name, char *err, size_t len);
/* Removes dir's files named base + ".tmp." + anything: the temporary files a
 * write_file_atomic or agave_model_save killed before its rename leaves
 * behind. Only safe while holding the directory's lock. Returns how many. */
int remove_stale_temporaries(const char *dir, const char *base);
/* Opens a file of a run directory (open(2) flags such as O_RDONLY or
 * O_WRONLY | O_APPEND, O_CREAT allowed): never through a symbolic link (one
 * planted there would redirect the run's writes), never waiting on a FIFO,
 * and only a regular file. Returns a blocking descriptor, or -1 with a
 * sentence in err (errno as open left it when the file does not exist). */
int open_run_file(const char *path, int flags, char *err, size_t len);
/* Opens a file the user named for reading (a link is fine there): only a
 * regular file, never waiting on a FIFO. A blocking descriptor, or -1 with a
 * sentence in err. */
int open_input_file(const char *path, char *err, size_t len);
/* Reads a whole (small) file of a run directory, opened by open_run_file,
 * into a NUL-terminated malloc'ed buffer; *n receives the length when n is
 * not NULL. NULL with a sentence in err if it cannot be read; *missing is
 * then 1 if the file does not exist. */
char *read_text_file(const char *path, size_t *n, int *missing, char *err, size_t len);

#endif
