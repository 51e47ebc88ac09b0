#include "progress.h"

#include <stdarg.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

double clock_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

void format_duration(double s, char *buf, size_t len)
{
    if (!(s >= 0) || s > 99 * 86400.0) {
        snprintf(buf, len, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t < 60)
        snprintf(buf, len, "%lds", t);
    else if (t < 3600)
        snprintf(buf, len, "%ldm%02lds", t / 60, t % 60);
    else if (t < 86400)
        snprintf(buf, len, "%ldh%02ldm", t / 3600, t % 3600 / 60);
    else
        snprintf(buf, len, "%ldd%02ldh", t / 86400, t % 86400 / 3600);
}

void progress_init(progress *p, FILE *out)
{
    p->out = out;
    p->tty = isatty(fileno(out));
    p->shown = 0;
    p->last = -1e9;
}

/* Columns of the terminal; a wrapped status line could not be rewritten by \r. */
static int terminal_width(FILE *out)
{
    struct winsize ws;
    if (ioctl(fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 10)
        return ws.ws_col;
    return 80;
}

void progress_update(progress *p, int milestone, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    if (!p->tty && !milestone)
        return;
    double now = clock_seconds();
    if (p->tty && !milestone && now - p->last < 0.1)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (!p->tty) {
        fprintf(p->out, "%s\n", line);
        fflush(p->out);
        return;
    }
    int width = terminal_width(p->out) - 1;
    /* \033[K clears what a longer previous line left behind. */
    fprintf(p->out, "\r%.*s\033[K", width, line);
    fflush(p->out);
    p->shown = 1;
    p->last = now;
}

void progress_end(progress *p)
{
    if (p->tty && p->shown) {
        fputc('\n', p->out);
        fflush(p->out);
    }
    p->shown = 0;
}

void progress_forget(progress *p) { p->shown = 0; }
