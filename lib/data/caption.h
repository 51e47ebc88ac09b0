/* Internal: the caption rows of image grids (lib/data/caption.c). */
#ifndef AGAVE_DATA_CAPTION_H
#define AGAVE_DATA_CAPTION_H

#include <stddef.h>
#include <stdint.h>

/* Font pixels per caption pixel for a grid drawn at grid_scale: 1 or 2. */
int caption_scale(int grid_scale);
/* Pixels from one character to the next, and from one line to the next. */
uint64_t caption_advance(int scale);
uint64_t caption_line_height(int scale);
/* Lines the text takes when wrapped at spaces to per_line characters ('\n'
 * starts a line; a word longer than a line is cut); 0 for NULL or "". */
int caption_lines(const char *text, size_t per_line);
/* Draws the text wrapped the same way, its first line's top at `top`, its
 * left edge at `left`, on a canvas of canvas_w pixels of `channels` bytes,
 * in black on a light background and white on a dark one. */
void caption_draw(uint8_t *canvas, uint64_t canvas_w, int channels, uint64_t top, uint64_t left,
                  const char *text, size_t per_line, int scale, const uint8_t *background);

#endif
