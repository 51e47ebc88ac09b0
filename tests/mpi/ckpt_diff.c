/* ckpt_diff: compares two agave checkpoints (docs/checkpoint.md) section by
 * section. Everything but the float values must be equal byte for byte: the
 * configuration, the step counts, the random state, the tensor names and
 * shapes, the optimiser and averaging step counts. The floats (parameters,
 * optimiser moments, the parameter average) are compared per section as
 * max |a - b| / max |a|, which must not exceed the tolerance.
 *
 * usage: ckpt_diff A.ckpt B.ckpt RTOL     (RTOL 0: bit-identical)
 * Prints one line per section; exit 0 if they agree, 1 if not, 2 on bad input. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct file {
    unsigned char *p;
    size_t n, at;
    const char *name;
} file;

static int load(file *f, const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return 0;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    f->p = malloc((size_t)n);
    f->n = fread(f->p, 1, (size_t)n, fp);
    f->at = 0;
    f->name = path;
    fclose(fp);
    return f->n == (size_t)n && n > 28;
}

static int worst;   /* exit status so far */

static void need(file *f, size_t k)
{
    if (f->at + k > f->n - 4) {
        fprintf(stderr, "ckpt_diff: %s is truncated\n", f->name);
        exit(2);
    }
}

/* k bytes that must be equal in both files. */
static void same_bytes(file *a, file *b, size_t k, const char *what)
{
    need(a, k), need(b, k);
    if (memcmp(a->p + a->at, b->p + b->at, k) != 0) {
        printf("%-28s DIFFERENT\n", what);
        worst = 1;
    }
    a->at += k, b->at += k;
}

static uint32_t u32(const file *f, size_t at)
{
    uint32_t v;
    memcpy(&v, f->p + at, 4);
    return v;
}

/* Folds count floats of each file into the section's max |a-b| and max |a|. */
static void floats(file *a, file *b, size_t count, double *dmax, double *amax)
{
    need(a, count * 4), need(b, count * 4);
    for (size_t i = 0; i < count; i++) {
        float x, y;
        memcpy(&x, a->p + a->at + 4 * i, 4);
        memcpy(&y, b->p + b->at + 4 * i, 4);
        double d = fabs((double)x - y);
        if (!(d <= *dmax))
            *dmax = isnan(d) ? INFINITY : d;
        if (fabs((double)x) > *amax)
            *amax = fabs((double)x);
    }
    a->at += count * 4, b->at += count * 4;
}

static void report(const char *what, double dmax, double amax, double rtol)
{
    double rel = amax > 0 ? dmax / amax : dmax;
    int ok = rtol == 0 ? dmax == 0 : rel <= rtol;
    printf("%-28s max |a-b| %.3g, max |a| %.3g, relative %.3g %s\n", what, dmax, amax, rel,
           ok ? "ok" : "TOO FAR");
    if (!ok)
        worst = 1;
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return fprintf(stderr, "usage: ckpt_diff A.ckpt B.ckpt RTOL\n"), 2;
    file a, b;
    double rtol = atof(argv[3]);
    if (!load(&a, argv[1]) || !load(&b, argv[2]))
        return fprintf(stderr, "ckpt_diff: cannot read %s or %s\n", argv[1], argv[2]), 2;
    same_bytes(&a, &b, 12, "magic and version");
    uint32_t flags = u32(&a, 12);
    same_bytes(&a, &b, 4, "flags");
    a.at += 8, b.at += 8;   /* payload length: follows from the rest */
    need(&a, 4);   /* the configuration block says how many 4-byte fields it has */
    same_bytes(&a, &b, 4 + 4 * (size_t)u32(&a, a.at), "configuration");
    same_bytes(&a, &b, 16, "step and rejected counts");
    same_bytes(&a, &b, 8, "bad_steps and initialized");
    same_bytes(&a, &b, 32, "random state");
    need(&a, 4);
    uint32_t tensors = u32(&a, a.at);
    same_bytes(&a, &b, 4, "tensor count");
    size_t total = 0;
    double dmax = 0, amax = 0;
    for (uint32_t t = 0; t < tensors && !worst; t++) {
        need(&a, 2);
        uint16_t len;
        memcpy(&len, a.p + a.at, 2);
        same_bytes(&a, &b, 2 + len, "tensor name");
        need(&a, 4);
        uint32_t rank = u32(&a, a.at);
        need(&a, 4 + 4 * rank);
        size_t numel = 1;
        for (uint32_t d = 0; d < rank; d++)
            numel *= u32(&a, a.at + 4 + 4 * d);
        same_bytes(&a, &b, 4 + 4 * rank, "tensor shape");
        floats(&a, &b, numel, &dmax, &amax);
        total += numel;
    }
    if (worst)
        return 1;
    report("parameters", dmax, amax, rtol);
    if (flags & 1) {
        same_bytes(&a, &b, 8, "optimiser step count");
        dmax = amax = 0;
        floats(&a, &b, total, &dmax, &amax);
        report("optimiser first moments", dmax, amax, rtol);
        dmax = amax = 0;
        floats(&a, &b, total, &dmax, &amax);
        report("optimiser second moments", dmax, amax, rtol);
    }
    if (flags & 2) {
        same_bytes(&a, &b, 8, "averaging step count");
        dmax = amax = 0;
        floats(&a, &b, total, &dmax, &amax);
        report("Polyak average", dmax, amax, rtol);
    }
    if (flags & 4)   /* the run state: seed epoch index batch threads images */
        same_bytes(&a, &b, 48, "run state");
    if (a.at != a.n - 4 || b.at != b.n - 4) {
        printf("trailing bytes before the CRC\n");
        worst = 1;
    }
    printf("%s\n", worst ? "checkpoints differ" : "checkpoints agree");
    return worst;
}
