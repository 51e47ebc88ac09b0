/* Where the taps of PixelCNN++'s stride-2 shifted convolutions and
 * transposed convolutions land (lib/nn/linear.c), against positions derived
 * by hand from openai/pixel-cnn's definitions (pixel_cnn_pp/nn.py), with one
 * input channel, one output channel, a single non-zero weight tap (a, b) and
 * a single non-zero input pixel (r, c), on a 4 x 4 input:
 *
 *  - down_shifted_conv2d (2x3) pads KH-1 = 1 row on top and (KW-1)/2 = 1
 *    column each side, down_right_shifted_conv2d (2x2) 1 row on top and
 *    KW-1 = 1 column on the left; then a VALID cross-correlation of stride 2:
 *    y[i][j] = sum_ab xpad[2i + a][2j + b] w[a][b] = sum x[2i + a - 1][2j + b - 1] w[a][b]
 *    for both. Output 2 x 2; pixel (r, c) through tap (a, b) reaches
 *    ((r + 1 - a) / 2, (c + 1 - b) / 2) when both are whole and inside.
 *  - deconv2d with pad VALID computes TensorFlow's full transposed
 *    convolution, (2H + KH - 1) x (2W + KW - 1), where input (r, c) through
 *    tap (a, b) lands at (2r + a, 2c + b); down_shifted_deconv2d keeps rows
 *    [0, 2H) and columns [(KW-1)/2, 2W + (KW-1)/2), i.e. (2r + a, 2c + b - 1);
 *    down_right_shifted_deconv2d keeps rows [0, 2H) and columns [0, 2W),
 *    i.e. (2r + a, 2c + b). Positions outside the kept window are dropped.
 *
 * The weights are weight-normalised (w = g v / ||v||): with v the unit tap,
 * g = 1 and no bias, w is the tap, so the output is exactly 1 where the
 * pixel lands and 0 elsewhere. Every (r, c) and every tap is tried. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agave.h"

enum { SIDE = 4 };

static agave_context *ctx;

static int setup(void **state)
{
    (void)state;
    return agave_context_create(&ctx, 1) == AGAVE_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    agave_context_free(ctx);
    return 0;
}

static agave_layer *unit_layer(agave_layer_kind kind, int kh, int kw, agave_shift shift)
{
    agave_layer_options o;
    assert_int_equal(agave_layer_options_init(&o), AGAVE_OK);
    o.in_channels = 1, o.out_channels = 1, o.kernel_h = kh, o.kernel_w = kw;
    o.stride = 2, o.shift = shift;
    agave_layer *l;
    assert_int_equal(agave_layer_create(ctx, kind, &o, &l), AGAVE_OK);
    assert_int_equal(agave_layer_skip_init(l), AGAVE_OK);
    return l;
}

/* v = the unit tap (a, b), g = 1, bias 0. */
static void set_tap(agave_layer *l, int kw, int a, int b)
{
    for (int i = 0; i < agave_layer_param_tensor_count(l); i++) {
        const char *name;
        agave_tensor *p;
        assert_int_equal(agave_layer_param(l, i, &name, &p), AGAVE_OK);
        float *d = agave_tensor_data(p);
        if (strcmp(name, "v") == 0) {
            agave_tensor_fill(p, 0.0f);
            d[a * kw + b] = 1.0f;   /* v is (out, in, KH, KW) = (1, 1, KH, KW) */
        } else if (strcmp(name, "g") == 0) {
            agave_tensor_fill(p, 1.0f);
        } else {
            agave_tensor_fill(p, 0.0f);
        }
    }
}

/* Runs the layer on the unit pixel (r, c) and compares the output (oh x ow)
 * with 1 at (er, ec) (when er >= 0) and 0 elsewhere. */
static void expect_landing(agave_layer *l, const char *what, int a, int b, int r, int c, int oh,
                           int ow, int er, int ec)
{
    int dims[4] = {1, 1, SIDE, SIDE};
    agave_tensor *x, *y;
    assert_int_equal(agave_tensor_create(ctx, 4, dims, &x), AGAVE_OK);
    agave_tensor_fill(x, 0.0f);
    agave_tensor_data(x)[r * SIDE + c] = 1.0f;
    agave_tape_reset(ctx);
    assert_int_equal(agave_layer_forward(l, x, &y), AGAVE_OK);
    assert_int_equal(agave_tensor_dim(y, 2), oh);
    assert_int_equal(agave_tensor_dim(y, 3), ow);
    const float *d = agave_tensor_data(y);
    for (int i = 0; i < oh; i++)
        for (int j = 0; j < ow; j++) {
            float want = i == er && j == ec ? 1.0f : 0.0f;
            if (d[i * ow + j] != want)
                fail_msg("%s, tap (%d,%d), pixel (%d,%d): output (%d,%d) is %g, expected %g "
                         "(the pixel should land at (%d,%d))", what, a, b, r, c, i, j,
                         (double)d[i * ow + j], (double)want, er, ec);
        }
    agave_tape_reset(ctx);
    agave_tensor_free(x);
}

/* ---- stride-2 shifted convolutions ---------------------------------------------------- */
static void check_conv(int kh, int kw, agave_shift shift, const char *what)
{
    agave_layer *l = unit_layer(AGAVE_LAYER_CONV, kh, kw, shift);
    int out = SIDE / 2, landed = 0;
    for (int a = 0; a < kh; a++)
        for (int b = 0; b < kw; b++) {
            set_tap(l, kw, a, b);
            for (int r = 0; r < SIDE; r++)
                for (int c = 0; c < SIDE; c++) {
                    /* both shifts pad one row on top and one column on the left */
                    int pr = r + 1 - a, pc = c + 1 - b;
                    int hit = pr >= 0 && pc >= 0 && pr % 2 == 0 && pc % 2 == 0 &&
                              pr / 2 < out && pc / 2 < out;
                    expect_landing(l, what, a, b, r, c, out, out, hit ? pr / 2 : -1,
                                   hit ? pc / 2 : -1);
                    landed += hit;
                }
        }
    print_message("%s: %d of %d (tap, pixel) pairs land, each where expected\n", what, landed,
                  kh * kw * SIDE * SIDE);
    agave_layer_free(l);
}

static void test_down_shifted_conv_stride2(void **state)
{
    (void)state;
    check_conv(2, 3, AGAVE_SHIFT_DOWN, "down-shifted 2x3 conv, stride 2");
}

static void test_down_right_shifted_conv_stride2(void **state)
{
    (void)state;
    check_conv(2, 2, AGAVE_SHIFT_DOWN_RIGHT, "down-right-shifted 2x2 conv, stride 2");
}

/* ---- stride-2 shifted transposed convolutions ------------------------------------------ */
static void check_deconv(int kh, int kw, agave_shift shift, const char *what)
{
    agave_layer *l = unit_layer(AGAVE_LAYER_DECONV, kh, kw, shift);
    int out = 2 * SIDE, landed = 0;
    /* the first column kept of the full (2W + KW - 1)-wide output */
    int left = shift == AGAVE_SHIFT_DOWN ? (kw - 1) / 2 : 0;
    for (int a = 0; a < kh; a++)
        for (int b = 0; b < kw; b++) {
            set_tap(l, kw, a, b);
            for (int r = 0; r < SIDE; r++)
                for (int c = 0; c < SIDE; c++) {
                    int fr = 2 * r + a, fc = 2 * c + b;   /* in the full output */
                    int er = fr, ec = fc - left;
                    int hit = er < out && ec >= 0 && ec < out;
                    expect_landing(l, what, a, b, r, c, out, out, hit ? er : -1,
                                   hit ? ec : -1);
                    landed += hit;
                }
        }
    print_message("%s: %d of %d (tap, pixel) pairs land, each where expected\n", what, landed,
                  kh * kw * SIDE * SIDE);
    agave_layer_free(l);
}

static void test_down_shifted_deconv_stride2(void **state)
{
    (void)state;
    check_deconv(2, 3, AGAVE_SHIFT_DOWN, "down-shifted 2x3 deconv, stride 2");
}

static void test_down_right_shifted_deconv_stride2(void **state)
{
    (void)state;
    check_deconv(2, 2, AGAVE_SHIFT_DOWN_RIGHT, "down-right-shifted 2x2 deconv, stride 2");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_down_shifted_conv_stride2),
        cmocka_unit_test(test_down_right_shifted_conv_stride2),
        cmocka_unit_test(test_down_shifted_deconv_stride2),
        cmocka_unit_test(test_down_right_shifted_deconv_stride2),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
