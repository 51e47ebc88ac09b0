/* Files written atomically: the one writer of checkpoints, image grids and
 * the programs' outputs. The bytes go to a new temporary file beside the
 * target (so that the rename cannot cross file systems), which is flushed to
 * disk, closed and renamed over the target: an interrupted write leaves the
 * old file or the new one, never half of one, and at worst a PATH.tmp.XXXXXX
 * file beside it. The file is created with mode 0666 less the process's
 * umask, as any file a program creates. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core.h"

#define TEMP_NAME_TRIES 100

/* dir is the directory part of path ("." when there is none). */
static char *directory_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t len = slash ? (size_t)(slash - path) : 1;
    if (slash && len == 0)
        len = 1;   /* "/name": the root */
    char *dir = malloc(len + 1);
    if (!dir)
        return NULL;
    memcpy(dir, slash ? path : ".", len);
    dir[len] = '\0';
    return dir;
}

/* Six letters or digits that differ from one call to the next: the clock's
 * nanoseconds, the process id and the try number, mixed (splitmix64's
 * finaliser). Collisions only cost a retry: the file is created O_EXCL. */
static void temp_suffix(char out[7], int attempt)
{
    static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t z = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^
                 ((uint64_t)getpid() << 17) ^ (uint64_t)attempt * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    for (int i = 0; i < 6; i++, z /= 62)
        out[i] = digits[z % 62];
    out[6] = '\0';
}

/* Creates "PATH.tmp.XXXXXX" exclusively, mode 0666 less the umask; *tmp
 * receives its name (malloc'ed). */
static agave_status create_temp(agave_context *ctx, const char *path, char **tmp, int *fd)
{
    size_t len = strlen(path) + 16;
    char why[128], suffix[7];
    *tmp = malloc(len);
    if (!*tmp)
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "%s: out of memory", path);
    for (int k = 0; k < TEMP_NAME_TRIES; k++) {
        temp_suffix(suffix, k);
        snprintf(*tmp, len, "%s.tmp.%s", path, suffix);
        *fd = open(*tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (*fd >= 0)
            return AGAVE_OK;
        if (errno != EEXIST && errno != EINTR)
            break;
    }
    int err = errno;
    free(*tmp);
    *tmp = NULL;
    return ctx_error(ctx, AGAVE_ERR_IO, "%s: cannot create a temporary file beside it: %s",
                     path, errno_text(err, why, sizeof why));
}

static int write_all(int fd, const unsigned char *bytes, size_t len)
{
    while (len > 0) {
        ssize_t k = write(fd, bytes, len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            if (k == 0)
                errno = EIO;
            return -1;
        }
        bytes += k;
        len -= (size_t)k;
    }
    return 0;
}

static int fsync_retrying(int fd)
{
    int r;
    while ((r = fsync(fd)) != 0 && errno == EINTR)
        ;
    return r;
}

/* Writes, flushes and closes the temporary file, then renames it over path;
 * removes it on any failure. */
static agave_status commit_temp(agave_context *ctx, const char *path, const char *tmp, int fd,
                                const void *bytes, size_t len)
{
    char why[128];
    const char *step = NULL;
    if (write_all(fd, bytes, len) != 0)
        step = "write";
    else if (fsync_retrying(fd) != 0)
        step = "flush";
    int err = errno;
    /* close is not retried on EINTR: on Linux the descriptor is gone anyway. */
    if (close(fd) != 0 && !step) {
        step = "close";
        err = errno;
    }
    if (!step && rename(tmp, path) != 0) {
        step = "rename the temporary file over";
        err = errno;
    }
    if (!step)
        return AGAVE_OK;
    unlink(tmp);
    return ctx_error(ctx, AGAVE_ERR_IO, "%s: cannot %s it (%s): the previous file, if any, is "
                     "intact", path, step, errno_text(err, why, sizeof why));
}

/* The rename is only durable once the directory entry is on disk too; some
 * file systems cannot sync a directory, which is not worth failing for. */
static void sync_directory(const char *path)
{
    char *dir = directory_of(path);
    if (!dir)
        return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync_retrying(fd);
        close(fd);
    }
    free(dir);
}

agave_status file_write_atomic(agave_context *ctx, const char *path, const void *bytes,
                               size_t len)
{
    char *tmp = NULL;
    int fd = -1;
    TRY(create_temp(ctx, path, &tmp, &fd));
    agave_status st = commit_temp(ctx, path, tmp, fd, bytes, len);
    free(tmp);
    if (st == AGAVE_OK)
        sync_directory(path);
    return st;
}

agave_status agave_file_write_atomic(agave_context *ctx, const char *path, const void *data,
                                     size_t len)
{
    if (!ctx)
        return AGAVE_ERR_NULL;
    ctx_clear_error(ctx);
    if (!path || (!data && len > 0))
        return ctx_error(ctx, AGAVE_ERR_NULL, "agave_file_write_atomic: NULL path or data");
    if (!*path || path[strlen(path) - 1] == '/')
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG,
                         "agave_file_write_atomic: '%s' is not a file name", path);
    static const unsigned char nothing[1];
    return file_write_atomic(ctx, path, data ? data : nothing, len);
}
