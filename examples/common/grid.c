/* Picture grids of samples and reconstructions, as agave-sample draws them
 * and agave-train --sample-every writes them. */
#include "common.h"

/* The sets of the grid, in display order, by mode: samples are {f(z), x}
 * side by side, reconstructions {input, f(z), x} as rows; a mode without
 * f(z) or without a PixelCNN leaves that set out. */
static int grid_sets(const agave_config *cfg, const uint8_t *input, const uint8_t *fz,
                     const uint8_t *x, const uint8_t *sets[3], int heights[3], int widths[3])
{
    int n = 0;
    if (input) {
        sets[n] = input, heights[n] = cfg->H, widths[n++] = cfg->W;
    }
    if (cfg->mode != AGAVE_MODE_PIXELCNN) {
        sets[n] = fz, heights[n] = cfg->H / cfg->s, widths[n++] = cfg->W / cfg->s;
    }
    if (cfg->mode != AGAVE_MODE_VAE) {
        sets[n] = x, heights[n] = cfg->H, widths[n++] = cfg->W;
    }
    return n;
}

void sample_grid_options(const agave_config *cfg, int scale, const char *caption,
                         agave_grid_options *opt)
{
    agave_grid_options_init(opt);
    opt->scale = scale ? scale : (cfg->H <= 32 && cfg->W <= 32 ? 2 : 1);
    opt->caption = caption;
}

int write_sample_grid(const char *prog, agave_context *ctx, const char *path,
                      const agave_config *cfg, const uint8_t *input, const uint8_t *fz,
                      const uint8_t *x, int n, int cols, int scale, const char *caption)
{
    const uint8_t *sets[3];
    int heights[3], widths[3];
    int n_sets = grid_sets(cfg, input, fz, x, sets, heights, widths);
    agave_grid_options opt;
    sample_grid_options(cfg, scale, caption, &opt);
    /* A lone f(z) at H/s is drawn at the size of the images it stands for. */
    if (n_sets == 1 && heights[0] < cfg->H && opt.scale * cfg->s <= 64)
        opt.scale *= cfg->s;
    agave_grid_layout layout = input ? AGAVE_GRID_SETS_AS_ROWS : AGAVE_GRID_SETS_SIDE_BY_SIDE;
    if (agave_image_grid_write_sets(ctx, path, sets, n_sets, n, cfg->C, heights, widths,
                                    cols ? cols : 8, layout, &opt) != AGAVE_OK)
        return fail(prog, "%s", agave_context_last_error(ctx));
    return EXIT_OK;
}
