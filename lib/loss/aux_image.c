/* The auxiliary image y = Q_b(P_s(x)) (docs/model.md, "The auxiliary image y", the
 * paper's Eq. 8), on 8-bit images. Integer arithmetic only, so the rounding is
 * exact: no float mean can land a hair below a half. */
#include "loss.h"

/* x is (n,c,h,w), y is (n,c,h/s,w/s): y = floor(mean of the s x s block + 0.5)
 * = floor((sum + s*s/2) / (s*s)) (s*s/2 is exact: s*s is 1, 4 or 16; for s = 1
 * the block is the value itself). */
agave_status agave_image_pool(const uint8_t *x, int n, int c, int h, int w, int s, uint8_t *y)
{
    if (!x || !y)
        return AGAVE_ERR_NULL;
    if (n < 1 || c < 1 || h < 1 || w < 1 || (s != 1 && s != 2 && s != 4))
        return AGAVE_ERR_INVALID_ARG;
    if (h % s || w % s)
        return AGAVE_ERR_SHAPE;
    if ((size_t)n * c > SIZE_MAX / ((size_t)h * w))
        return AGAVE_ERR_LIMIT;
    size_t planes = (size_t)n * c;
    int ho = h / s, wo = w / s, area = s * s;
    for (size_t p = 0; p < planes; p++) {
        const uint8_t *in = x + p * h * w;
        uint8_t *out = y + p * ho * wo;
        for (int i = 0; i < ho; i++)
            for (int j = 0; j < wo; j++) {
                int sum = 0;
                for (int di = 0; di < s; di++)
                    for (int dj = 0; dj < s; dj++)
                        sum += in[(size_t)(i * s + di) * w + j * s + dj];
                out[(size_t)i * wo + j] = (uint8_t)((sum + area / 2) / area);
            }
    }
    return AGAVE_OK;
}

/* level = floor(v / (256/levels)) = v >> log2(256/levels). */
agave_status agave_image_quantize(const uint8_t *x, size_t count, int levels, uint8_t *level)
{
    if (!x || !level)
        return AGAVE_ERR_NULL;
    if (!loss_levels_valid(levels))
        return AGAVE_ERR_INVALID_ARG;
    int width = 256 / levels;
    for (size_t i = 0; i < count; i++)
        level[i] = (uint8_t)(x[i] / width);
    return AGAVE_OK;
}
