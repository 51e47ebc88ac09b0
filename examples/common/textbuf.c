#include "textbuf.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Room for n more bytes and the NUL. */
static int reserve(textbuf *b, size_t n)
{
    if (b->failed)
        return 0;
    if (b->len + n + 1 <= b->cap)
        return 1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) {
        b->failed = 1;
        return 0;
    }
    b->data = p;
    b->cap = cap;
    return 1;
}

void textbuf_append(textbuf *b, const void *data, size_t n)
{
    const char *s = data;
    if (!reserve(b, n))
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void textbuf_printf(textbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !reserve(b, (size_t)n)) {
        b->failed = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void textbuf_json_string(textbuf *b, const char *s)
{
    if (!s) {
        textbuf_append(b, "null", 4);
        return;
    }
    textbuf_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            textbuf_printf(b, "\\%c", *p);
        else if (*p < 0x20)
            textbuf_printf(b, "\\u%04x", *p);
        else
            textbuf_append(b, (const char *)p, 1);
    }
    textbuf_append(b, "\"", 1);
}

void textbuf_json_number(textbuf *b, double v)
{
    if (isfinite(v))
        textbuf_printf(b, "%.6f", v);
    else
        textbuf_append(b, "null", 4);
}

void textbuf_csv_field(textbuf *b, const char *s)
{
    if (!s)
        return;
    if (!strpbrk(s, ",\"\r\n")) {
        textbuf_append(b, s, strlen(s));
        return;
    }
    textbuf_append(b, "\"", 1);
    for (const char *p = s; *p; p++) {
        if (*p == '"')
            textbuf_append(b, "\"\"", 2);
        else
            textbuf_append(b, p, 1);
    }
    textbuf_append(b, "\"", 1);
}

void textbuf_free(textbuf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = 0;
}
