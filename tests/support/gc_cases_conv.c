/* Gradient-check cases for the convolution family: conv2d, conv2d_transpose,
 * nin and dense. Odd shapes, batch > 1, with and without bias, strides 1 and
 * 2, asymmetric padding, both PixelCNN++ deconvolution crops, and cases where
 * only some inputs are differentiated. Sizes are chosen so that some cases
 * fold several images into one GEMM and others (planes of >= 1024 pixels)
 * run one GEMM per image, the two code paths of the conv family (lib/ops/conv_blocks.h).
 *
 * The harness defaults hold (eps 1e-2, rtol 1e-2, atol 2e-3): every op here is
 * linear in each input, so the central difference has no truncation error,
 * and outputs sum at most 3*5*5 = 75 products of values in [-1, 1], so the
 * float32 noise after division by 2 eps stays near 1e-4. */
#include "gradcheck.h"
#include "ops/fused.h"

#define SHAPE4(n, c, h, w) 4, {n, c, h, w}
#define SHAPE2(a, b) 2, {a, b, 1, 1}
#define VEC(n) 1, {n, 1, 1, 1}
#define RANDOM -1, 1, 0   /* values in [-1, 1], differentiated */
#define FIXED -1, 1, 1    /* values in [-1, 1], not differentiated */

/* ---- conv2d ---------------------------------------------------------------------- */
static agave_status conv_3x3_s1_pad1(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return agave_conv2d(ctx, in[0], in[1], in[2], 1, 1, 1, 1, 1, out);
}
static agave_status conv_3x2_s2_asym(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return agave_conv2d(ctx, in[0], in[1], NULL, 2, 0, 2, 1, 0, out);
}
static agave_status conv_down_shifted_s2(agave_context *ctx, agave_tensor **in,
                                         agave_tensor **out)
{
    return agave_conv2d(ctx, in[0], in[1], in[2], 2, 1, 0, 1, 1, out);
}
static agave_status conv_down_right_s1(agave_context *ctx, agave_tensor **in,
                                       agave_tensor **out)
{
    return agave_conv2d(ctx, in[0], in[1], in[2], 1, 1, 0, 1, 0, out);
}
static agave_status conv_5x5_s3_pad2(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return agave_conv2d(ctx, in[0], in[1], in[2], 3, 2, 1, 2, 2, out);
}

/* ---- conv2d_transpose: w is (Cin,Cout,KH,KW) ------------------------------------------ */
static agave_status deconv_s1_full(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return agave_conv2d_transpose(ctx, in[0], in[1], in[2], 1, 0, 0, 5 + 2, 3 + 2, out);
}
static agave_status deconv_s1_same(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return agave_conv2d_transpose(ctx, in[0], in[1], NULL, 1, 1, 1, 5, 3, out);
}
/* x (N,C,3,5): PixelCNN++ down-shifted 2x3 stride 2, crop_left = (3-1)/2, out 6x10 */
static agave_status deconv_down_shifted(agave_context *ctx, agave_tensor **in,
                                        agave_tensor **out)
{
    return agave_conv2d_transpose(ctx, in[0], in[1], in[2], 2, 0, 1, 6, 10, out);
}
/* x (N,C,5,3): PixelCNN++ down-right-shifted 2x2 stride 2, crop (0,0), out 10x6 */
static agave_status deconv_down_right(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return agave_conv2d_transpose(ctx, in[0], in[1], in[2], 2, 0, 0, 10, 6, out);
}
/* x (N,C,32,32): one image per GEMM, down-shifted crop, out 64x64 */
static agave_status deconv_large_plane(agave_context *ctx, agave_tensor **in,
                                       agave_tensor **out)
{
    return agave_conv2d_transpose(ctx, in[0], in[1], in[2], 2, 0, 1, 64, 64, out);
}

/* ---- conv2d_ce (internal, ops/fused.h): conv2d(concat_elu(x)) ------------------------- */
static agave_status ce_down_shifted_s1(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return conv2d_ce(ctx, in[0], in[1], in[2], 1, 1, 0, 1, 1, out);
}
static agave_status ce_down_shifted_s2(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return conv2d_ce(ctx, in[0], in[1], in[2], 2, 1, 0, 1, 1, out);
}
static agave_status ce_down_right_nobias(agave_context *ctx, agave_tensor **in,
                                         agave_tensor **out)
{
    return conv2d_ce(ctx, in[0], in[1], NULL, 1, 1, 0, 1, 0, out);
}

/* ---- nin_add (internal, ops/fused.h): base + nin(x or concat_elu(x)) ------------------- */
static agave_status nin_add_ce(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return nin_add(ctx, in[0], in[1], in[2], in[3], 1, out);
}
static agave_status nin_add_ce_nobias(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return nin_add(ctx, in[0], in[1], NULL, in[2], 1, out);
}
static agave_status nin_add_plain(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return nin_add(ctx, in[0], in[1], in[2], in[3], 0, out);
}
/* concat_elu has a kink at 0: keep x at least 0.05 away, beyond eps. */
static void x_away_from_zero(agave_tensor **in)
{
    float *x = agave_tensor_data(in[0]);
    for (size_t i = 0; i < agave_tensor_numel(in[0]); i++)
        if (x[i] > -0.05f && x[i] < 0.05f)
            x[i] = x[i] < 0 ? x[i] - 0.05f : x[i] + 0.05f;
}

/* ---- nin and dense --------------------------------------------------------------------- */
static agave_status run_nin(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return agave_nin(ctx, in[0], in[1], in[2], out);
}
static agave_status run_nin_nobias(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return agave_nin(ctx, in[0], in[1], NULL, out);
}
static agave_status run_dense(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return agave_dense(ctx, in[0], in[1], in[2], out);
}
static agave_status run_dense_nobias(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return agave_dense(ctx, in[0], in[1], NULL, out);
}

const gc_case gc_cases_conv[] = {
    /* conv2d: x (N,Cin,H,W), w (Cout,Cin,KH,KW), bias (Cout) */
    {"conv2d", "3x3 stride 1 pad 1, bias, 7x5 planes folded", 3,
     {{SHAPE4(3, 3, 7, 5), RANDOM}, {SHAPE4(4, 3, 3, 3), RANDOM}, {VEC(4), RANDOM}},
     conv_3x3_s1_pad1, NULL, 0, 0, 0, 0},
    {"conv2d", "3x2 stride 2, pads top 0 bottom 2 left 1 right 0, no bias", 2,
     {{SHAPE4(3, 2, 9, 7), RANDOM}, {SHAPE4(3, 2, 3, 2), RANDOM}}, conv_3x2_s2_asym, NULL, 0, 0,
     0, 0},
    {"conv2d", "PixelCNN++ down-shifted 2x3 stride 2 (top 1, left 1, right 1)", 3,
     {{SHAPE4(2, 3, 7, 5), RANDOM}, {SHAPE4(5, 3, 2, 3), RANDOM}, {VEC(5), RANDOM}},
     conv_down_shifted_s2, NULL, 0, 0, 0, 0},
    {"conv2d", "PixelCNN++ down-right-shifted 2x2 stride 1 (top 1, left 1)", 3,
     {{SHAPE4(3, 2, 5, 5), RANDOM}, {SHAPE4(3, 2, 2, 2), RANDOM}, {VEC(3), RANDOM}},
     conv_down_right_s1, NULL, 0, 0, 0, 0},
    {"conv2d", "5x5 stride 3 pads (2,1,2,2), 32x33 planes: one image per GEMM", 3,
     {{SHAPE4(2, 3, 32, 33), RANDOM}, {SHAPE4(2, 3, 5, 5), RANDOM}, {VEC(2), RANDOM}},
     conv_5x5_s3_pad2, NULL, 0, 0, 0, 0},
    {"conv2d", "only x differentiated (w and bias fixed)", 3,
     {{SHAPE4(2, 3, 5, 6), RANDOM}, {SHAPE4(4, 3, 3, 3), FIXED}, {VEC(4), FIXED}},
     conv_3x3_s1_pad1, NULL, 0, 0, 0, 0},
    {"conv2d", "only w and bias differentiated (x fixed)", 3,
     {{SHAPE4(2, 3, 5, 6), FIXED}, {SHAPE4(4, 3, 3, 3), RANDOM}, {VEC(4), RANDOM}},
     conv_3x3_s1_pad1, NULL, 0, 0, 0, 0},

    /* conv2d_transpose: x (N,Cin,H,W), w (Cin,Cout,KH,KW), bias (Cout) */
    {"conv2d_transpose", "stride 1 uncropped (H+2)x(W+2), bias", 3,
     {{SHAPE4(2, 3, 5, 3), RANDOM}, {SHAPE4(3, 2, 3, 3), RANDOM}, {VEC(2), RANDOM}},
     deconv_s1_full, NULL, 0, 0, 0, 0},
    {"conv2d_transpose", "stride 1 crop (1,1) to HxW, no bias", 2,
     {{SHAPE4(3, 2, 5, 3), RANDOM}, {SHAPE4(2, 3, 3, 3), RANDOM}}, deconv_s1_same, NULL, 0, 0, 0,
     0},
    {"conv2d_transpose", "PixelCNN++ down-shifted 2x3 stride 2, crop (0,1), 2Hx2W", 3,
     {{SHAPE4(3, 3, 3, 5), RANDOM}, {SHAPE4(3, 4, 2, 3), RANDOM}, {VEC(4), RANDOM}},
     deconv_down_shifted, NULL, 0, 0, 0, 0},
    {"conv2d_transpose", "PixelCNN++ down-right-shifted 2x2 stride 2, crop (0,0), 2Hx2W", 3,
     {{SHAPE4(2, 3, 5, 3), RANDOM}, {SHAPE4(3, 2, 2, 2), RANDOM}, {VEC(2), RANDOM}},
     deconv_down_right, NULL, 0, 0, 0, 0},
    {"conv2d_transpose", "32x32 input, one image per GEMM, down-shifted crop", 3,
     {{SHAPE4(2, 2, 32, 32), RANDOM}, {SHAPE4(2, 2, 2, 3), RANDOM}, {VEC(2), RANDOM}},
     deconv_large_plane, NULL, 0, 0, 0, 0},
    {"conv2d_transpose", "only w differentiated", 3,
     {{SHAPE4(3, 3, 3, 5), FIXED}, {SHAPE4(3, 4, 2, 3), RANDOM}, {VEC(4), FIXED}},
     deconv_down_shifted, NULL, 0, 0, 0, 0},

    /* nin: x (N,Cin,H,W), w (Cout,Cin), bias (Cout) */
    {"nin", "(3,5,3,5) -> 4 channels, bias, planes folded", 3,
     {{SHAPE4(3, 5, 3, 5), RANDOM}, {SHAPE2(4, 5), RANDOM}, {VEC(4), RANDOM}}, run_nin, NULL, 0,
     0, 0, 0},
    {"nin", "(2,3,33,32) -> 2 channels, no bias, one image per GEMM", 2,
     {{SHAPE4(2, 3, 33, 32), RANDOM}, {SHAPE2(2, 3), RANDOM}}, run_nin_nobias, NULL, 0, 0, 0, 0},
    {"nin", "only x differentiated", 3,
     {{SHAPE4(3, 5, 3, 5), RANDOM}, {SHAPE2(4, 5), FIXED}, {VEC(4), FIXED}}, run_nin, NULL, 0, 0,
     0, 0},

    /* conv2d_ce: x (N,C,H,W), w (Cout,2C,KH,KW), bias (Cout) */
    {"conv2d_ce", "down-shifted 2x3 stride 1, bias, 5x6 planes folded", 3,
     {{SHAPE4(3, 2, 5, 6), RANDOM}, {SHAPE4(3, 4, 2, 3), RANDOM}, {VEC(3), RANDOM}},
     ce_down_shifted_s1, x_away_from_zero, 0, 0, 0, 0},
    {"conv2d_ce", "down-shifted 2x3 stride 2, bias, only x differentiated", 3,
     {{SHAPE4(2, 2, 6, 5), RANDOM}, {SHAPE4(2, 4, 2, 3), FIXED}, {VEC(2), FIXED}},
     ce_down_shifted_s2, x_away_from_zero, 0, 0, 0, 0},
    {"conv2d_ce", "down-right-shifted 2x2, no bias, 33x32 planes: one image per GEMM", 2,
     {{SHAPE4(2, 1, 33, 32), RANDOM}, {SHAPE4(2, 2, 2, 2), RANDOM}},
     ce_down_right_nobias, x_away_from_zero, 0, 0, 0, 0},

    /* nin_add: x (N,Cx,H,W), w (Cout, 2Cx under concat_elu), bias (Cout), base (N,Cout,H,W) */
    {"nin_add", "concat_elu, (3,2,3,5) -> 4 channels, bias, planes folded", 4,
     {{SHAPE4(3, 2, 3, 5), RANDOM}, {SHAPE2(4, 4), RANDOM}, {VEC(4), RANDOM},
      {SHAPE4(3, 4, 3, 5), RANDOM}},
     nin_add_ce, x_away_from_zero, 0, 0, 0, 0},
    {"nin_add", "concat_elu, (2,2,33,32) -> 3 channels, no bias, one image per GEMM", 3,
     {{SHAPE4(2, 2, 33, 32), RANDOM}, {SHAPE2(3, 4), RANDOM}, {SHAPE4(2, 3, 33, 32), RANDOM}},
     nin_add_ce_nobias, x_away_from_zero, 0, 0, 0, 0},
    {"nin_add", "(3,5,3,5) -> 4 channels, bias, planes folded", 4,
     {{SHAPE4(3, 5, 3, 5), RANDOM}, {SHAPE2(4, 5), RANDOM}, {VEC(4), RANDOM},
      {SHAPE4(3, 4, 3, 5), RANDOM}},
     nin_add_plain, NULL, 0, 0, 0, 0},
    {"nin_add", "(2,3,32,33), only x and base differentiated, one image per GEMM", 4,
     {{SHAPE4(2, 3, 32, 33), RANDOM}, {SHAPE2(2, 3), FIXED}, {VEC(2), FIXED},
      {SHAPE4(2, 2, 32, 33), RANDOM}},
     nin_add_plain, NULL, 0, 0, 0, 0},

    /* dense: x (N,K) or (N,...), w (M,K), bias (M) */
    {"dense", "x (5,3,2,2) flattened to K=12, bias", 3,
     {{SHAPE4(5, 3, 2, 2), RANDOM}, {SHAPE2(7, 12), RANDOM}, {VEC(7), RANDOM}}, run_dense, NULL,
     0, 0, 0, 0},
    {"dense", "x (3,9), no bias", 2, {{SHAPE2(3, 9), RANDOM}, {SHAPE2(4, 9), RANDOM}},
     run_dense_nobias, NULL, 0, 0, 0, 0},
    {"dense", "only w and bias differentiated", 3,
     {{SHAPE2(3, 9), FIXED}, {SHAPE2(4, 9), RANDOM}, {VEC(4), RANDOM}}, run_dense, NULL, 0, 0, 0,
     0},
};
const int gc_n_cases_conv = sizeof gc_cases_conv / sizeof gc_cases_conv[0];
