/* A growing text buffer for the files and lines the programs compose (JSON
 * objects, CSV tables, the codec's files), with the quoting those formats
 * need. */
#ifndef AGAVE_EXAMPLES_TEXTBUF_H
#define AGAVE_EXAMPLES_TEXTBUF_H

#include <stddef.h>

typedef struct textbuf {
    char *data;     /* NUL-terminated, malloc'ed; NULL until the first append */
    size_t len, cap;
    int failed;     /* an allocation failed: the text is incomplete */
} textbuf;

/* Appends n bytes as they are (binary data too: len counts them). */
void textbuf_append(textbuf *b, const void *data, size_t n);
/* Appends printf-formatted text. */
void textbuf_printf(textbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string, quoted and escaped; NULL as null. */
void textbuf_json_string(textbuf *b, const char *s);
/* Appends a JSON number with 6 decimals, or null for what JSON cannot hold
 * (NaN, infinities). */
void textbuf_json_number(textbuf *b, double v);
/* Appends s as one CSV field (RFC 4180): quoted when it holds a comma, a
 * quote or a line break, quotes doubled; NULL as an empty field. */
void textbuf_csv_field(textbuf *b, const char *s);
void textbuf_free(textbuf *b);

#endif
