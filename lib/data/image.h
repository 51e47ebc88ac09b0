/* Internal: image files (PNG, JPEG, BMP, PGM/PPM) as data: decoding, the
 * crop and resize that give every image one size, and image folders read as
 * data sets. Private to the library (lib/data). docs/data.md states the rules. */
#ifndef AGAVE_DATA_IMAGE_H
#define AGAVE_DATA_IMAGE_H

#include "data.h"

/* One image file may hold at most this many bytes, and decode to at most
 * this many pixels (each side at most AGAVE_DATASET_MAX_SIDE): refused before
 * decoding, so a small file that claims a huge picture costs nothing. */
#define IMAGE_MAX_FILE_BYTES ((uint64_t)256 << 20)
#define IMAGE_MAX_PIXELS ((uint64_t)64 << 20)

/* ---- what a file is, from its first bytes ----------------------------------- */
typedef enum image_kind {
    IMAGE_NONE = 0,          /* not a known image format */
    IMAGE_PNG, IMAGE_JPEG, IMAGE_BMP, IMAGE_PNM,   /* read */
    IMAGE_PNM_TEXT,          /* P1..P4: ASCII PNM or a 1-bit PBM, not read */
    IMAGE_GIF, IMAGE_TIFF, IMAGE_WEBP              /* recognised, not read */
} image_kind;

/* The kind of n (>= 0) leading bytes; IMAGE_NONE when nothing matches. */
image_kind image_kind_of(const uint8_t *head, size_t n);
/* "PNG", "JPEG", "BMP", "PGM/PPM", ... for messages. */
const char *image_kind_name(image_kind kind);
/* 1 for the kinds image_decode reads. */
int image_kind_readable(image_kind kind);

/* ---- decoding ---------------------------------------------------------------- */
/* A decoded image: channels (1: grey, 3: RGB) planes of height x width, the
 * layout of a data set's images. */
typedef struct decoded_image {
    int channels, height, width;
    uint8_t *pixels;         /* (channels,height,width), malloc'ed */
} decoded_image;

/* Decodes len bytes of one file (name only for messages). Grey files, with
 * or without alpha, give 1 channel, colour ones 3; alpha is dropped, 16-bit
 * PNG samples keep their high byte and PGM/PPM samples are scaled from
 * 0..maxval to 0..255. max_pixels bounds height * width
 * (AGAVE_ERR_LIMIT above it, before any decoding). AGAVE_ERR_FORMAT for a
 * file that is not a readable image, with the decoder's reason. */
agave_status image_decode(agave_context *ctx, const char *name, const uint8_t *bytes, size_t len,
                          uint64_t max_pixels, decoded_image *out);
void image_free(decoded_image *im);
/* The JPEG part of image_decode (lib/data/image_jpeg.c, libjpeg-turbo). */
agave_status image_decode_jpeg(agave_context *ctx, const char *name, const uint8_t *bytes,
                               size_t len, uint64_t max_pixels, decoded_image *out);
/* The PNG part (lib/data/image_png.c, libpng). */
agave_status image_decode_png(agave_context *ctx, const char *name, const uint8_t *bytes,
                              size_t len, uint64_t max_pixels, decoded_image *out);
/* The PGM/PPM part (lib/data/image_pnm.c). */
agave_status image_decode_pnm(agave_context *ctx, const char *name, const uint8_t *bytes,
                              size_t len, uint64_t max_pixels, decoded_image *out);
/* Interleaved (h,w,c) pixels to planar (c,h,w). */
void image_to_planar(const uint8_t *src, int c, int h, int w, uint8_t *dst);
/* The decoders' common tail: out gets planar pixels copied from the
 * interleaved (h,w,c) ones and its geometry. The caller still frees
 * interleaved (each decoder with its own library's free). */
agave_status image_from_interleaved(agave_context *ctx, const char *name,
                                    const uint8_t *interleaved, int c, int h, int w,
                                    decoded_image *out);

/* ---- one size for all: crop, then resize ------------------------------------- */
/* What agave_dataset_options asks for, checked: a centred crop window (0 x 0:
 * none; crop_aspect: the largest window with the aspect of the resize size),
 * then a resize (0 x 0: none). */
typedef struct image_fit {
    int crop_height, crop_width;
    int crop_aspect;
    int resize_height, resize_width;
} image_fit;

/* 1 when the fit changes nothing. */
int image_fit_is_identity(const image_fit *fit);
/* The size an image of height x width has after the fit; AGAVE_ERR_FORMAT
 * (the message naming `name`) when it is smaller than the crop window. */
agave_status image_fit_size(agave_context *ctx, const char *name, const image_fit *fit, int height,
                            int width, int *out_height, int *out_width);
/* Applies the fit to src (channels,height,width) into dst, which holds
 * channels * out_height * out_width bytes (image_fit_size's). Only
 * AGAVE_ERR_NOMEM can go wrong. */
agave_status image_fit_apply(agave_context *ctx, const char *name, const image_fit *fit,
                             const uint8_t *src, int channels, int height, int width, uint8_t *dst);

/* The centred window of ch x cw in an image of h x w: its top-left corner. */
void image_crop_origin(int h, int w, int ch, int cw, int *top, int *left);
/* Area-average resampling of src (channels,h,w) to dst (channels,H,W): each
 * output pixel is the mean of the source over its footprint, source pixels
 * weighted by the area they share with it, computed exactly in integers and
 * rounded half up. acc is scratch for w numbers. */
void image_resize_area(const uint8_t *src, int channels, int h, int w, uint8_t *dst, int H, int W,
                       uint64_t *acc);

/* ---- image folders ------------------------------------------------------------- */
/* Opens directory dir as an image folder for split. Returns AGAVE_OK with
 * *out set, or an error; *found is set to 0 (without an error) when dir
 * holds no image file and no train/ or test/ folder, so that the caller can
 * say what was expected. */
agave_status image_folder_open(agave_context *ctx, const char *dir, agave_data_split split,
                               const image_fit *fit, int test_percent, int *found,
                               agave_dataset **out);

/* The split rule of one folder: 1 when the file whose path relative to the
 * folder is rel falls in the test split (FNV-1a 64 of the path's bytes,
 * modulo 100, below test_percent). */
int image_folder_is_test(const char *rel, int test_percent);

/* ---- writing pictures (lib/data/image_encode.c) ------------------------------ */
typedef enum image_format { IMAGE_OUT_PNG, IMAGE_OUT_BMP, IMAGE_OUT_PPM, IMAGE_OUT_PGM } image_format;

/* The format a picture of `channels` (1 or 3) channels is written in, from
 * path's ending: .bmp, .ppm, .pgm (grey pictures only), .pnm (PGM for grey,
 * PPM for colour), otherwise PNG. AGAVE_ERR_INVALID_ARG for a format that is
 * not written (.jpg, .jpeg, .gif, .tif, .webp, ...) or a colour .pgm. */
agave_status image_format_of(agave_context *ctx, const char *path, int channels,
                             image_format *format);
/* Encodes interleaved (h,w,channels) pixels as BMP or PGM/PPM into *bytes
 * (malloc'ed, *len bytes). */
agave_status image_encode_plain(agave_context *ctx, const char *path, image_format format,
                                const uint8_t *pixels, int w, int h, int channels,
                                uint8_t **bytes, size_t *len);

/* ---- options ------------------------------------------------------------------ */
/* Reads agave_dataset_options (NULL: the defaults) into a checked fit and the
 * one-folder split percentage; AGAVE_ERR_INVALID_ARG naming the field. */
agave_status dataset_options_read(agave_context *ctx, const agave_dataset_options *options,
                                  image_fit *fit, int *test_percent);
/* Crops and resizes every image of *ds (one size in, one size out); nothing
 * when the fit is the identity. On failure *ds is freed and NULL. */
agave_status dataset_fit(agave_context *ctx, const char *name, const image_fit *fit,
                         agave_dataset **ds);

/* Decodes and fits one in-memory image file as a one-image data set named
 * name (what the fuzzer drives). */
agave_status image_open_memory(agave_context *ctx, const char *name, const uint8_t *bytes,
                               size_t len, const image_fit *fit, uint64_t max_pixels,
                               agave_dataset **out);

#endif
