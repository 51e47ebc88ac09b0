/* The generator of this directory's reference values: an implementation of
 * the two likelihoods of docs/losses.md written from that text alone, in
 * long double (64-bit mantissa) with the formulas of the text, independent
 * of lib/loss (it links nothing but libm). It chooses the inputs itself with
 * a fixed pseudo-random stream, so every file here can be regenerated and
 * reviewed:
 *
 *     cc -std=c11 -O2 -o gen_losses tests/data/losses/gen_losses.c -lm
 *     ./gen_losses tests/data/losses          (rewrites the files)
 *
 * tests/check_loss_data.sh (make check) builds it and compares its output
 * with the committed files byte for byte. `./gen_losses --compare DIR`
 * recomputes the outputs of the files in DIR from their inputs and prints
 * how far the stored outputs are (to review any other reference).
 *
 * Files (README.md): dlogistic.tsv (levels, y, mean, log_scale, log p) and,
 * for (C, M) = (1, 3) and (3, 4), dmol_cC_mM_x.u8 (2, C, 4, 4),
 * dmol_cC_mM_params.f32 (2, P, 4, 4) and dmol_cC_mM_logp.f64 (2, 4, 4). */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef long double real;

/* ---- inputs: a fixed stream (splitmix64) ------------------------------------------- */
static uint64_t stream = 0x5EED0F10551E5ull;

static uint64_t next64(void)
{
    uint64_t z = (stream += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A float32 value uniform in [lo, hi]: inputs are exact float32 numbers. */
static float uniform(double lo, double hi)
{
    double u = (double)(next64() >> 11) * 0x1.0p-53;
    return (float)(lo + (hi - lo) * u);
}

static int below(int n) { return (int)(next64() % (uint64_t)n); }

/* ---- shared pieces ----------------------------------------------------------------- */
/* log(1 + e^x) without overflow or loss for large negative x. */
static real softplus(real x) { return x > 0 ? x + log1pl(expl(-x)) : log1pl(expl(x)); }
static real log_sigmoid(real x) { return -softplus(-x); }

/* The network scale of an 8-bit value. */
static real net(int v) { return (real)v / 127.5L - 1; }

/* log(sigmoid(a) - sigmoid(b)) for a > b, as the text writes it:
 * log sigmoid(a) + log sigmoid(-b) + log(1 - e^-(a-b)). */
static real log_bin(real a, real b) { return log_sigmoid(a) + log_sigmoid(-b) + logl(-expm1l(b - a)); }

/* ---- the discretized logistic with b levels ----------------------------------------- */
static real dlogistic_logp(int levels, int y, float mean, float log_scale)
{
    int width = 256 / levels, k = y / width;
    real ls = log_scale < -700 ? -700 : log_scale;
    real s = expl(ls), mu = mean;
    real lo = net(k * width) - 0.5L / 127.5L, hi = net((k + 1) * width) - 0.5L / 127.5L;
    real a = (hi - mu) / s, b = (lo - mu) / s;
    if (k == 0)
        return log_sigmoid(a);
    if (k == levels - 1)
        return log_sigmoid(-b);
    return log_bin(a, b);
}

static void dlogistic_file(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/dlogistic.tsv", dir);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "gen_losses: cannot write %s: %s\n", path, strerror(errno));
        exit(1);
    }
    fprintf(f, "# levels\ty\tmean\tlog_scale\tlogp_nats (reference of tests/data/losses/"
               "gen_losses.c; inputs are exact float32 values)\n");
    static const int level_set[] = {256, 64, 32, 8, 2};
    for (int li = 0; li < 5; li++) {
        int levels = level_set[li], width = 256 / levels;
        for (int i = 0; i < 64; i++) {
            int y;
            float mean, ls;
            switch (i) {
            case 0: y = 0, mean = 5, ls = -7; break;          /* a far tail, not log(0) */
            case 1: y = 255, mean = -5, ls = -7; break;
            case 2: y = 0, mean = uniform(-1.3, 1.3), ls = uniform(-3, 1); break;
            case 3: y = 255, mean = uniform(-1.3, 1.3), ls = uniform(-3, 1); break;
            case 4: y = 128, mean = uniform(-0.3, 0.3), ls = uniform(-9, -5); break;
            case 5: y = 1, mean = uniform(-1.1, -0.9), ls = uniform(-2, 0); break;
            default:
                /* a level's edges or any value; means near or far; sharp to wide */
                y = i % 3 == 0 ? below(levels) * width + (i % 2 ? width - 1 : 0) : below(256);
                mean = i % 5 == 0 ? uniform(-4, 4) : uniform(-1.3, 1.3);
                ls = i % 7 == 0 ? uniform(-12, -6) : uniform(-6, 1.5);
                break;
            }
            fprintf(f, "%d\t%d\t%.9g\t%.9g\t%.17g\n", levels, y, (double)mean, (double)ls,
                    (double)dlogistic_logp(levels, y, mean, ls));
        }
    }
    if (fclose(f) != 0) {
        fprintf(stderr, "gen_losses: cannot write %s\n", path);
        exit(1);
    }
}

/* ---- the discretized mixture of logistics --------------------------------------------- */
enum { N = 2, H = 4, W = 4, HW = H * W };

/* log p_c of value v with coupled mean mu and raw log-scale ls (docs/losses.md). */
static real channel_logp(int v, real mu, float ls)
{
    real s = expl(ls < -7.0f ? -7.0L : (real)ls), x = net(v);
    real a = (x + 1 / 255.0L - mu) / s, b = (x - 1 / 255.0L - mu) / s;
    if (v == 0)
        return log_sigmoid(a);
    if (v == 255)
        return log_sigmoid(-b);
    real lm = log_bin(a, b);
    if (expl(lm) > 1e-5L)
        return lm;
    real m = (x - mu) / s;
    return m - logl(s) - 2 * softplus(m) - logl(127.5L);
}

/* log p of one pixel: p is the pixel's first parameter, stride HW apart. */
static real pixel_logp(const float *p, int C, int M, const uint8_t *v)
{
    real lse_max = -INFINITY, terms[64], logit_max = -INFINITY, norm = 0;
    for (int m = 0; m < M; m++)
        logit_max = p[m * HW] > logit_max ? p[m * HW] : logit_max;
    for (int m = 0; m < M; m++)
        norm += expl((real)p[m * HW] - logit_max);
    for (int m = 0; m < M; m++) {
        real sum = (real)p[m * HW] - logit_max - logl(norm);   /* log softmax */
        if (C == 1) {
            sum += channel_logp(v[0], p[(M + m) * HW], p[(2 * M + m) * HW]);
        } else {
            real mean[3], coef[3], xr = net(v[0]), xg = net(v[HW]);
            float ls[3];
            for (int c = 0; c < 3; c++) {
                mean[c] = p[(M + 3 * M * c + m) * HW];
                ls[c] = p[(2 * M + 3 * M * c + m) * HW];
                coef[c] = tanhl(p[(3 * M + 3 * M * c + m) * HW]);
            }
            real mu[3] = {mean[0], mean[1] + coef[0] * xr, mean[2] + coef[1] * xr + coef[2] * xg};
            for (int c = 0; c < 3; c++)
                sum += channel_logp(v[c * HW], mu[c], ls[c]);
        }
        terms[m] = sum;
        lse_max = sum > lse_max ? sum : lse_max;
    }
    real total = 0;
    for (int m = 0; m < M; m++)
        total += expl(terms[m] - lse_max);
    return lse_max + logl(total);
}

static void write_file(const char *dir, const char *name, const void *p, size_t bytes)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, bytes, f) != bytes || fclose(f) != 0) {
        fprintf(stderr, "gen_losses: cannot write %s\n", path);
        exit(1);
    }
}

/* Pixel (0, 0) of every channel is 0 and pixel (0, 1) is 255 (the open
 * bins); row 1 has log-scales below the -7 clamp and means far from the
 * values (the 1e-5 fallback); the rest is drawn across the usual ranges. */
static void dmol_files(const char *dir, int C, int M)
{
    const int P = (C == 1 ? 3 : 10) * M;
    uint8_t x[N * 3 * HW];
    float params[N * 30 * 4 * HW];
    double logp[N * HW];
    for (int i = 0; i < N * C * HW; i++) {
        int pixel = i % HW;
        x[i] = pixel == 0 ? 0 : pixel == 1 ? 255 : below(5) == 0 ? 255 * below(2) : below(256);
    }
    for (int n = 0; n < N; n++)
        for (int k = 0; k < P; k++)
            for (int i = 0; i < HW; i++) {
                int row1 = i / W == 1;
                int is_mean = k >= M && (k - M) % (3 * M) < M;
                int is_ls = k >= 2 * M && (k - 2 * M) % (3 * M) < M;
                float v;
                if (k < M)
                    v = uniform(-3, 3);                       /* logits */
                else if (is_ls)
                    v = row1 ? uniform(-9, -7.5) : uniform(-6, 1);
                else if (is_mean)
                    v = row1 ? (below(2) ? uniform(0.6, 1.3) : uniform(-1.3, -0.6))
                             : uniform(-1.2, 1.2);
                else
                    v = uniform(-3, 3);                       /* coefficients */
                params[(n * P + k) * HW + i] = v;
            }
    for (int n = 0; n < N; n++)
        for (int i = 0; i < HW; i++)
            logp[n * HW + i] = (double)pixel_logp(params + (size_t)n * P * HW + i, C, M,
                                                  x + (size_t)n * C * HW + i);
    char name[64];
    snprintf(name, sizeof name, "dmol_c%d_m%d_x.u8", C, M);
    write_file(dir, name, x, (size_t)N * C * HW);
    snprintf(name, sizeof name, "dmol_c%d_m%d_params.f32", C, M);
    write_file(dir, name, params, (size_t)N * P * HW * sizeof(float));
    snprintf(name, sizeof name, "dmol_c%d_m%d_logp.f64", C, M);
    write_file(dir, name, logp, sizeof logp);
}

/* --compare: recomputes the outputs from the inputs of the files in dir and
 * prints the largest relative difference from the stored outputs (to review
 * another reference, e.g. the files this generator replaced). */
static void compare(const char *dir)
{
    char path[4096], line[512];
    double worst = 0;
    int n = 0;
    snprintf(path, sizeof path, "%s/dlogistic.tsv", dir);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f)) {
        int levels, y;
        float mean, ls;
        double want;
        if (line[0] == '#' || sscanf(line, "%d %d %f %f %lf", &levels, &y, &mean, &ls, &want) != 5)
            continue;
        double got = (double)dlogistic_logp(levels, y, mean, ls), d = fabs(got - want) / fabs(got);
        worst = d > worst ? d : worst;
        n++;
    }
    if (f)
        fclose(f);
    printf("dlogistic.tsv: %d values, largest relative difference %.3g\n", n, worst);
    static const int cm[2][2] = {{1, 3}, {3, 4}};
    for (int t = 0; t < 2; t++) {
        int C = cm[t][0], M = cm[t][1], P = (C == 1 ? 3 : 10) * M;
        uint8_t x[N * 3 * HW];
        float params[N * 30 * 4 * HW];
        double logp[N * HW];
        const struct { const char *suffix; void *p; size_t bytes; } part[3] = {
            {"x.u8", x, (size_t)N * C * HW}, {"params.f32", params, (size_t)N * P * HW * 4},
            {"logp.f64", logp, sizeof logp}};
        for (int k = 0; k < 3; k++) {
            snprintf(path, sizeof path, "%s/dmol_c%d_m%d_%s", dir, C, M, part[k].suffix);
            FILE *g = fopen(path, "rb");
            if (!g || fread(part[k].p, 1, part[k].bytes, g) != part[k].bytes) {
                fprintf(stderr, "gen_losses: cannot read %s\n", path);
                exit(1);
            }
            fclose(g);
        }
        worst = 0;
        for (int i = 0; i < N * HW; i++) {
            double got = (double)pixel_logp(params + (size_t)(i / HW) * P * HW + i % HW, C, M,
                                            x + (size_t)(i / HW) * C * HW + i % HW);
            double d = fabs(got - logp[i]) / fabs(got);
            worst = d > worst ? d : worst;
        }
        printf("dmol C=%d M=%d: %d values, largest relative difference %.3g\n", C, M, N * HW,
               worst);
    }
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--compare") == 0) {
        compare(argv[2]);
        return 0;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: gen_losses DIR             writes the reference files into DIR\n"
                        "       gen_losses --compare DIR   recomputes DIR's outputs from its "
                        "inputs, prints the differences\n");
        return 2;
    }
    dlogistic_file(argv[1]);
    dmol_files(argv[1], 1, 3);
    dmol_files(argv[1], 3, 4);
    return 0;
}
