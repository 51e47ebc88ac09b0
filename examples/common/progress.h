/* Progress output on stderr: in a terminal one line rewritten in place
 * (carriage return, cut to the terminal's width, at most ten times a
 * second); otherwise plain lines, only when the caller asks for one, so that
 * logs stay readable. */
#ifndef AGAVE_EXAMPLES_PROGRESS_H
#define AGAVE_EXAMPLES_PROGRESS_H

#include <stdio.h>

typedef struct progress {
    FILE *out;
    int tty;          /* out is a terminal */
    int shown;        /* a status line is on the screen (tty only) */
    double last;      /* time of the last tty update */
} progress;

void progress_init(progress *p, FILE *out);
/* A status update. In a terminal it replaces the line (rate-limited unless
 * milestone); otherwise it is printed as a line only when milestone is set. */
void progress_update(progress *p, int milestone, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Ends the status line (a newline in a terminal) before other output. */
void progress_end(progress *p);
/* Other output has already moved the cursor to a fresh line (a signal
 * handler's message): progress_end then adds no empty line. */
void progress_forget(progress *p);

/* Monotonic seconds. */
double clock_seconds(void);
/* "45s", "9m41s", "2h05m", "3d04h": short, for ETAs and elapsed times. */
void format_duration(double seconds, char *buf, size_t len);

#endif
