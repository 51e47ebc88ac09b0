/* Opening files for reading. A name given by a user can be anything: a
 * FIFO, whose open() waits for a writer for ever, a device, a directory, a
 * link planted in a run directory. Only regular files are read, and the
 * check never blocks: open with O_NONBLOCK, fstat the descriptor (not the
 * name, which may change in between), then make it blocking again. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core.h"

const char *errno_text(int err, char *buf, size_t len)
{
    if (strerror_r(err, buf, len) != 0)
        snprintf(buf, len, "error %d", err);
    return buf;
}

static const char *file_kind(mode_t mode)
{
    return S_ISDIR(mode)    ? "a directory"
           : S_ISFIFO(mode) ? "a FIFO"
           : S_ISCHR(mode)  ? "a character device"
           : S_ISBLK(mode)  ? "a block device"
           : S_ISSOCK(mode) ? "a socket"
           : S_ISLNK(mode)  ? "a symbolic link"
                            : "not a file";
}

agave_status file_open_regular(agave_context *ctx, const char *what, const char *path,
                               unsigned flags, int *fd, uint64_t *size)
{
    char why[128];
    int oflags = O_RDONLY | O_NONBLOCK | O_CLOEXEC;
    if (flags & FILE_NO_SYMLINK)
        oflags |= O_NOFOLLOW;
    *fd = open(path, oflags);
    if (*fd < 0) {
        int err = errno;
        if (err == ELOOP && (flags & FILE_NO_SYMLINK))
            return ctx_error(ctx, AGAVE_ERR_IO, "%s%s: is a symbolic link, refused", what, path);
        return ctx_error(ctx, AGAVE_ERR_IO, "%s%s: cannot open: %s", what, path,
                         errno_text(err, why, sizeof why));
    }
    struct stat st;
    if (fstat(*fd, &st) != 0) {
        int err = errno;
        close(*fd);
        return ctx_error(ctx, AGAVE_ERR_IO, "%s%s: cannot stat: %s", what, path,
                         errno_text(err, why, sizeof why));
    }
    if (!S_ISREG(st.st_mode)) {
        close(*fd);
        return ctx_error(ctx, AGAVE_ERR_IO, "%s%s: is %s, not a regular file", what, path,
                         file_kind(st.st_mode));
    }
    int fl = fcntl(*fd, F_GETFL);
    if (fl < 0 || fcntl(*fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        int err = errno;
        close(*fd);
        return ctx_error(ctx, AGAVE_ERR_IO, "%s%s: cannot read: %s", what, path,
                         errno_text(err, why, sizeof why));
    }
    *size = (uint64_t)st.st_size;
    return AGAVE_OK;
}

long long file_read_full(int fd, void *buf, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t k = read(fd, (char *)buf + done, n - done);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -1;
        if (k == 0)
            break;
        done += (size_t)k;
    }
    return (long long)done;
}
