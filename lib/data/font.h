/* Internal: the 5x7 bitmap font of caption rows (lib/data/font.c). */
#ifndef AGAVE_DATA_FONT_H
#define AGAVE_DATA_FONT_H

#include <stdint.h>

#define FONT_WIDTH 5
#define FONT_HEIGHT 7

/* rows[r] receives row r of ch's glyph, bit 4 the leftmost column. Returns 0
 * (and a blank glyph) for a character outside printable ASCII. */
int font_glyph(char ch, uint8_t rows[FONT_HEIGHT]);

#endif
