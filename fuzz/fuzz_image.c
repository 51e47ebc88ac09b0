/* libFuzzer harness: the image decoders (PNG, JPEG, BMP, PGM/PPM through
 * stb_image) and the crop and resize behind image folders
 * (agave_dataset_open_v2). The first input byte chooses the fit, the rest is
 * one image file:
 *   bits 0-1  0: none; 1: resize to 8x8; 2: crop 4x4; 3: the largest window
 *             of aspect 5:3, resized to 5x3
 *   bits 2-7  unused
 * The harness hands the file to image_open_memory (lib/data/image.h), the
 * code path of every file of a folder, with a limit of 1 Mi pixels (a folder
 * allows 64 Mi: the smaller limit keeps each input fast under the
 * sanitizers; the check itself is the same). With FUZZ_DUMP=path the file
 * is written there (fuzz/fuzz_common.h). On success the promises are a
 * one-image data set of 1 or 3 channels, of the fit's size when there is a
 * resize, every byte readable. */
#include "data/image.h"
#include "fuzz_common.h"

static agave_context *ctx;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ctx && agave_context_create(&ctx, 1) != AGAVE_OK)
        __builtin_trap();
    if (size == 0)
        return 0;
    static const image_fit fits[4] = {
        {0, 0, 0, 0, 0}, {0, 0, 0, 8, 8}, {4, 4, 0, 0, 0}, {0, 0, 1, 5, 3}};
    const image_fit *fit = &fits[data[0] & 3];
    const uint8_t *file = data + 1;
    size_t len = size - 1;
    fuzz_dump("fuzz-image", file, len);
    static const uint8_t none[1];
    agave_dataset *ds = (agave_dataset *)(uintptr_t)1;   /* must be reset to NULL */
    agave_status st = image_open_memory(ctx, "fuzz-image", len ? file : none, len, fit,
                                        (uint64_t)1 << 20, &ds);
    fuzz_check_status(ctx, st);
    if (st != AGAVE_OK) {
        FUZZ_CHECK(ds == NULL);
        return 0;
    }
    int c = agave_dataset_channels(ds), h = agave_dataset_height(ds), w = agave_dataset_width(ds);
    FUZZ_CHECK(agave_dataset_count(ds) == 1 && (c == 1 || c == 3) && h >= 1 && w >= 1);
    if (fit->resize_height)
        FUZZ_CHECK(h == fit->resize_height && w == fit->resize_width);
    if (fit->crop_height)
        FUZZ_CHECK(h == fit->crop_height && w == fit->crop_width);
    FUZZ_CHECK((uint64_t)h * (uint64_t)w <= (uint64_t)1 << 20);
    const uint8_t *px = agave_dataset_pixels(ds);
    unsigned sum = 0;
    for (size_t i = 0; i < (size_t)c * h * w; i++)
        sum += px[i];
    FUZZ_CHECK(sum <= 255u * (unsigned)(c * h * w));
    agave_dataset_free(ds);
    return 0;
}
