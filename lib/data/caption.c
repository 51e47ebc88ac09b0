/* Caption rows of image grids: text above the images, in the 5x7 font of
 * lib/data/font.c, wrapped at spaces to the picture's width. */
#include <stdlib.h>
#include <string.h>

#include "caption.h"
#include "font.h"

/* Characters the font has; any other byte is drawn as '?'. */
static char printable(char c) { return c >= ' ' && c <= '~' ? c : '?'; }

int caption_scale(int grid_scale) { return grid_scale >= 2 ? 2 : 1; }

uint64_t caption_advance(int scale) { return (uint64_t)(FONT_WIDTH + 1) * (uint64_t)scale; }

uint64_t caption_line_height(int scale) { return (uint64_t)(FONT_HEIGHT + 3) * (uint64_t)scale; }

/* Greedy wrapping: the line starting at text[*at] ends before the last space
 * that keeps it within `per_line` characters (or at per_line characters for
 * a longer word, or at a newline); *at moves to the next line's start. */
static void next_line(const char *text, size_t *at, size_t per_line, size_t *start, size_t *len)
{
    size_t i = *at, n = strlen(text);
    while (i < n && text[i] == ' ')
        i++;   /* a wrapped line does not start with spaces */
    *start = i;
    size_t end = i, last_space = 0;
    int seen_space = 0;
    while (end < n && text[end] != '\n' && end - i < per_line) {
        if (text[end] == ' ')
            last_space = end, seen_space = 1;
        end++;
    }
    if (end < n && text[end] != '\n' && end - i == per_line && seen_space && text[end] != ' ')
        end = last_space;   /* break at the last space rather than inside a word */
    *len = end - i;
    while (end < n && text[end] == ' ')
        end++;
    if (end < n && text[end] == '\n')
        end++;
    *at = end;
}

int caption_lines(const char *text, size_t per_line)
{
    if (!text || !*text)
        return 0;
    if (per_line < 1)
        per_line = 1;
    size_t at = 0, n = strlen(text), start, len;
    int lines = 0;
    while (at < n) {
        next_line(text, &at, per_line, &start, &len);
        lines++;
    }
    return lines;
}

/* One glyph at (y0, x0), scale x scale pixels per font pixel, in ink. */
static void draw_glyph(uint8_t *canvas, uint64_t canvas_w, int channels, uint64_t y0, uint64_t x0,
                       char ch, int scale, const uint8_t *ink)
{
    uint8_t rows[FONT_HEIGHT];
    font_glyph(printable(ch), rows);
    for (int r = 0; r < FONT_HEIGHT; r++)
        for (int c = 0; c < FONT_WIDTH; c++) {
            if (!(rows[r] >> (FONT_WIDTH - 1 - c) & 1))
                continue;
            for (int dy = 0; dy < scale; dy++)
                for (int dx = 0; dx < scale; dx++) {
                    uint64_t y = y0 + (uint64_t)(r * scale + dy), x = x0 + (uint64_t)(c * scale + dx);
                    uint8_t *px = canvas + (y * canvas_w + x) * (uint64_t)channels;
                    for (int k = 0; k < channels; k++)
                        px[k] = ink[k];
                }
        }
}

void caption_draw(uint8_t *canvas, uint64_t canvas_w, int channels, uint64_t top, uint64_t left,
                  const char *text, size_t per_line, int scale, const uint8_t *background)
{
    /* Dark ink on a light background, light ink on a dark one. */
    unsigned luma = (299u * background[0] + 587u * background[1] + 114u * background[2]) / 1000u;
    uint8_t ink[3];
    memset(ink, luma >= 128 ? 0 : 255, sizeof ink);
    size_t at = 0, n = strlen(text), start, len;
    uint64_t y = top + (uint64_t)scale;   /* a font pixel of space above the letters */
    while (at < n) {
        next_line(text, &at, per_line, &start, &len);
        for (size_t i = 0; i < len; i++)
            draw_glyph(canvas, canvas_w, channels, y, left + i * caption_advance(scale),
                       text[start + i], scale, ink);
        y += caption_line_height(scale);
    }
}
