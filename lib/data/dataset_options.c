/* agave_dataset_options: defaults, the checks, and the crop and resize of a
 * data set read from CIFAR-10 or IDX files (image folders fit each image as
 * it is decoded, lib/data/image_folder.c). */
#include <stdlib.h>
#include <string.h>

#include "../core/struct_size.h"
#include "image.h"

#define DEFAULT_TEST_PERCENT 10

static void options_defaults(agave_dataset_options *o)
{
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    o->test_percent = DEFAULT_TEST_PERCENT;
}

void agave_dataset_options_init_sized(agave_dataset_options *opt, size_t struct_size)
{
    if (!opt)
        return;
    agave_dataset_options d;
    options_defaults(&d);
    struct_init(opt, struct_size, &d, sizeof d);
}

static int side_ok(int v) { return v >= 1 && v <= AGAVE_DATASET_MAX_SIDE; }

static agave_status check_options(agave_context *ctx, const agave_dataset_options *o)
{
    int crop_none = o->crop_height == 0 && o->crop_width == 0;
    int crop_aspect = o->crop_height == AGAVE_CROP_ASPECT && o->crop_width == AGAVE_CROP_ASPECT;
    int resize_none = o->resize_height == 0 && o->resize_width == 0;
    if (!resize_none && !(side_ok(o->resize_height) && side_ok(o->resize_width)))
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG,
                         "data set options: resize %dx%d; expected 0x0 (none) or 1..%d on "
                         "each side",
                         o->resize_height, o->resize_width, AGAVE_DATASET_MAX_SIDE);
    if (!crop_none && !crop_aspect && !(side_ok(o->crop_height) && side_ok(o->crop_width)))
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG,
                         "data set options: crop %dx%d; expected 0x0 (none), 1..%d on each "
                         "side, or AGAVE_CROP_ASPECT in both",
                         o->crop_height, o->crop_width, AGAVE_DATASET_MAX_SIDE);
    if (crop_aspect && resize_none)
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG,
                         "data set options: crop AGAVE_CROP_ASPECT takes the aspect ratio of "
                         "the resize size, but there is no resize");
    if (o->test_percent < 1 || o->test_percent > 99)
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG,
                         "data set options: test_percent %d; expected 1..99", o->test_percent);
    return AGAVE_OK;
}

agave_status dataset_options_read(agave_context *ctx, const agave_dataset_options *options,
                                  image_fit *fit, int *test_percent)
{
    agave_dataset_options o;
    options_defaults(&o);
    char why[256];
    if (options && !struct_read(&o, sizeof o, options, sizeof o.struct_size,
                                "agave_dataset_options", why, sizeof why))
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG, "data set options: %s", why);
    agave_status st = check_options(ctx, &o);
    if (st != AGAVE_OK)
        return st;
    memset(fit, 0, sizeof *fit);
    fit->crop_aspect = o.crop_height == AGAVE_CROP_ASPECT;
    if (!fit->crop_aspect) {
        fit->crop_height = o.crop_height;
        fit->crop_width = o.crop_width;
    }
    fit->resize_height = o.resize_height;
    fit->resize_width = o.resize_width;
    *test_percent = o.test_percent;
    return AGAVE_OK;
}

agave_status dataset_fit(agave_context *ctx, const char *name, const image_fit *fit,
                         agave_dataset **ds)
{
    agave_dataset *d = *ds;
    if (image_fit_is_identity(fit))
        return AGAVE_OK;
    int h, w;
    agave_status st = image_fit_size(ctx, name, fit, d->height, d->width, &h, &w);
    size_t out_bytes = (size_t)d->channels * (size_t)h * (size_t)w;
    if (st == AGAVE_OK && (uint64_t)out_bytes * d->count > AGAVE_DATASET_MAX_BYTES)
        st = ctx_error(ctx, AGAVE_ERR_LIMIT,
                       "%s: %zu images of %dx%dx%d would need more than the data set limit "
                       "of %llu bytes",
                       name, d->count, d->channels, h, w, (unsigned long long)AGAVE_DATASET_MAX_BYTES);
    uint8_t *pixels = st == AGAVE_OK ? malloc(out_bytes * d->count) : NULL;
    if (st == AGAVE_OK && !pixels)
        st = ctx_error(ctx, AGAVE_ERR_NOMEM, "%s: out of memory for the resized images", name);
    for (size_t i = 0; st == AGAVE_OK && i < d->count; i++)
        st = image_fit_apply(ctx, name, fit, d->pixels + i * d->image_bytes, d->channels,
                             d->height, d->width, pixels + i * out_bytes);
    if (st != AGAVE_OK) {
        free(pixels);
        agave_dataset_free(d);
        *ds = NULL;
        return st;
    }
    free(d->pixels);
    d->pixels = pixels;
    d->height = h;
    d->width = w;
    d->image_bytes = out_bytes;
    return AGAVE_OK;
}
