#include "files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <dirent.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

char *path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    size_t at = a;
    if (a && dir[a - 1] != '/')
        p[at++] = '/';
    memcpy(p + at, name, b + 1);
    return p;
}

int path_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

int is_directory(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int make_dirs(const char *dir, char *err, size_t len)
{
    char *p = strdup(dir);
    if (!p) {
        snprintf(err, len, "out of memory");
        return 0;
    }
    /* Create each prefix ending before a '/', then the whole path. */
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char saved = *s;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            snprintf(err, len, "cannot create directory %s: %s", p, strerror(errno));
            free(p);
            return 0;
        }
        *s = saved;
        if (saved == '\0')
            break;
    }
    free(p);
    if (!is_directory(dir)) {
        snprintf(err, len, "%s exists and is not a directory", dir);
        return 0;
    }
    return 1;
}

int write_file_atomic(agave_context *ctx, const char *path, const char *data, size_t n, char *err,
                      size_t len)
{
    if (agave_file_write_atomic(ctx, path, data, n) == AGAVE_OK)
        return 1;
    snprintf(err, len, "%s", agave_context_last_error(ctx));
    return 0;
}

int output_dir_ok(const char *path, char *err, size_t len)
{
    char *d = strdup(path);
    if (!d) {
        snprintf(err, len, "out of memory");
        return 0;
    }
    char *slash = strrchr(d, '/');
    const char *dir = slash ? (slash == d ? "/" : (*slash = '\0', d)) : ".";
    int ok = is_directory(dir) && access(dir, W_OK) == 0;
    if (!ok)
        snprintf(err, len, "%s: directory %s %s", path, dir,
                 is_directory(dir) ? "is not writable" : "does not exist");
    free(d);
    return ok;
}

static const char *kind_of(mode_t mode)
{
    return S_ISDIR(mode) ? "a directory" : S_ISFIFO(mode) ? "a FIFO"
           : S_ISLNK(mode) ? "a symbolic link" : S_ISSOCK(mode) ? "a socket"
           : S_ISCHR(mode) || S_ISBLK(mode) ? "a device" : "not a file";
}

/* open_run_file and open_input_file: flags may include O_NOFOLLOW. */
static int open_regular(const char *path, int flags, char *err, size_t len)
{
    int fd = open(path, flags | O_NONBLOCK | O_CLOEXEC, 0666);
    struct stat st;
    if (fd < 0) {
        int e = errno;
        if (e == ELOOP)
            snprintf(err, len, "%s is a symbolic link; a run directory's files must be its own "
                     "(replace the link by the file)", path);
        else if (e != ENOENT && lstat(path, &st) == 0 && !S_ISREG(st.st_mode))
            snprintf(err, len, "%s is %s, not a regular file", path, kind_of(st.st_mode));
        else
            snprintf(err, len, "cannot open %s: %s", path, strerror(e));
        errno = e;
        return -1;
    }
    int fl;
    if (fstat(fd, &st) != 0) {
        snprintf(err, len, "cannot use %s: %s", path, strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        snprintf(err, len, "%s is %s, not a regular file", path, kind_of(st.st_mode));
    } else if ((fl = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        snprintf(err, len, "cannot use %s: %s", path, strerror(errno));
    } else {
        return fd;
    }
    close(fd);
    return -1;
}

int open_run_file(const char *path, int flags, char *err, size_t len)
{
    return open_regular(path, flags | O_NOFOLLOW, err, len);
}

int open_input_file(const char *path, char *err, size_t len)
{
    return open_regular(path, O_RDONLY, err, len);
}

char *read_text_file(const char *path, size_t *n, int *missing, char *err, size_t len)
{
    int fd = open_run_file(path, O_RDONLY, err, len);
    *missing = fd < 0 && errno == ENOENT;
    FILE *f = fd >= 0 ? fdopen(fd, "rb") : NULL;
    if (!f) {
        if (fd >= 0) {
            snprintf(err, len, "cannot read %s: %s", path, strerror(errno));
            close(fd);
        }
        return NULL;
    }
    size_t cap = 4096, used = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + used, 1, cap - used - 1, f);
        used += got;
        if (used + 1 < cap)
            break;
        char *bigger = realloc(buf, cap * 2);
        if (!bigger) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = bigger;
        cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        snprintf(err, len, "cannot read %s: %s", path, buf ? "read error" : "out of memory");
        free(buf);
        return NULL;
    }
    buf[used] = '\0';
    if (n)
        *n = used;
    return buf;
}

int lock_file(const char *dir, const char *name, char *err, size_t len)
{
    char *path = path_join(dir, name);
    if (!path) {
        snprintf(err, len, "out of memory");
        return -1;
    }
    int fd = open_run_file(path, O_RDWR | O_CREAT, err, len);
    if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            snprintf(err, len, "another process is using %s (it holds %s); wait for it to end "
                     "or choose another directory", dir, path);
        else
            snprintf(err, len, "cannot lock %s: %s", path, strerror(errno));
        close(fd);
        fd = -1;
    }
    free(path);
    return fd;
}

int remove_stale_temporaries(const char *dir, const char *base)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    char prefix[256];
    snprintf(prefix, sizeof prefix, "%s.tmp.", base);
    size_t plen = strlen(prefix);
    int removed = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strncmp(e->d_name, prefix, plen) != 0)
            continue;
        char *path = path_join(dir, e->d_name);
        if (path && unlink(path) == 0)
            removed++;
        free(path);
    }
    closedir(d);
    return removed;
}
