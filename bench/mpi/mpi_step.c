/* mpi_step: data-parallel training steps under mpirun (make MPI=1 builds it
 * into build-mpi/bench/). Every rank holds the same model, the global batch
 * is split over the ranks (agave_model_set_batch_slice) and one
 * MPI_Allreduce per step sums the fused gradient buffer
 * (agave_model_set_grad_reducer), as agave-train does.
 *
 * Per run: data-dependent init on the whole batch, `warmup` steps, then
 * `repeats` steps between two barriers. Reports, on rank 0:
 *  - images/s of the global batch (wall time of the slowest rank);
 *  - the time per step spent inside the reducer's MPI_Allreduce (mean over
 *    the ranks; it includes waiting for a slower rank);
 *  - the same allreduce alone: `repeats` calls on a buffer of the same size,
 *    each after a barrier, so that it is communication only;
 *  - the buffer's size (the gradients in float32 plus the step's sums);
 *  - each rank's CPU time over wall time during the steps (1.00 when the
 *    rank had its core to itself: the machine's other load shows here);
 *  - the busiest rank's CPU time per step outside the allreduce (its
 *    compute), and from it the images/s the ranks would reach with a core
 *    each: batch / (that CPU time + the allreduce alone). On a machine shared
 *    with other work (where the ranks get a fraction of a core each, or of
 *    the session's share of the machine) this is the figure to compare.
 * With 1 rank no reducer is installed: the plain step, as agave-train runs;
 * --sliced 1 installs the slice and the reducer anyway (an allreduce over
 * one rank), which measures what the data-parallel path itself costs.
 *
 * usage: mpirun -np P build-mpi/bench/mpi_step [--config fashion] [--batch 16]
 *                  [--threads 1] [--repeats 10] [--warmup 2] [--sliced 0|1] */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define AGAVE_EXPERIMENTAL   /* the data-parallel hooks */
#include "agave.h"

static double reduce_seconds, reduce_cpu;

/* Process CPU time (all threads), which other processes on the machine
 * barely disturb. */
static double cpu_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static agave_status allreduce(float *buf, size_t n, void *user)
{
    (void)user;
    double t0 = MPI_Wtime(), c0 = cpu_seconds();
    int rc = MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    reduce_seconds += MPI_Wtime() - t0;
    reduce_cpu += cpu_seconds() - c0;
    return rc == MPI_SUCCESS ? AGAVE_OK : AGAVE_ERR_IO;
}

static int die(const char *what)
{
    fprintf(stderr, "mpi_step: %s\n", what);
    MPI_Abort(MPI_COMM_WORLD, 2);
    return 2;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const char *config = "fashion";
    int batch = 16, threads = 1, repeats = 10, warmup = 2, sliced = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--config"))
            config = argv[i + 1];
        else if (!strcmp(argv[i], "--batch"))
            batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--repeats"))
            repeats = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--warmup"))
            warmup = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--sliced"))
            sliced = atoi(argv[i + 1]);
        else
            return die("unknown option (--config, --batch, --threads, --repeats, --warmup, "
                       "--sliced)");
    }
    if (batch < size || threads < 1 || repeats < 1 || warmup < 0)
        return die("need --batch >= ranks, --threads >= 1, --repeats >= 1, --warmup >= 0");

    agave_context *ctx;
    agave_config cfg;
    agave_model *m;
    if (agave_context_create(&ctx, 1) != AGAVE_OK || agave_config_init(&cfg, config) != AGAVE_OK ||
        agave_context_set_threads(ctx, threads) != AGAVE_OK ||
        agave_model_create(ctx, &cfg, &m) != AGAVE_OK)
        return die("cannot create the model (unknown --config?)");
    size_t D = (size_t)cfg.C * cfg.H * cfg.W;
    uint8_t *x = malloc((size_t)batch * D);
    if (!x)
        return die("out of memory");
    for (size_t i = 0; i < (size_t)batch * D; i++)
        x[i] = (uint8_t)((i * 2654435761u) >> 24);
    int lo = (int)((long long)batch * rank / size), hi = (int)((long long)batch * (rank + 1) / size);
    if (agave_model_init(m, x, batch) != AGAVE_OK)
        return die(agave_context_last_error(ctx));
    if ((size > 1 || sliced) && (agave_model_set_batch_slice(m, lo, batch) != AGAVE_OK ||
                     agave_model_set_grad_reducer(m, allreduce, NULL) != AGAVE_OK))
        return die(agave_context_last_error(ctx));
    agave_step_stats st = {.struct_size = sizeof st};
    for (int i = 0; i < warmup; i++)
        if (agave_model_train_step(m, x + (size_t)lo * D, hi - lo, &st) != AGAVE_OK)
            return die(agave_context_last_error(ctx));

    MPI_Barrier(MPI_COMM_WORLD);
    reduce_seconds = reduce_cpu = 0;
    double c0 = cpu_seconds(), t0 = MPI_Wtime();
    for (int i = 0; i < repeats; i++)
        if (agave_model_train_step(m, x + (size_t)lo * D, hi - lo, &st) != AGAVE_OK)
            return die(agave_context_last_error(ctx));
    double wall = MPI_Wtime() - t0, cpu = cpu_seconds() - c0;
    MPI_Barrier(MPI_COMM_WORLD);
    double wall_max = wall, reduce_sum = reduce_seconds, compute = (cpu - reduce_cpu) / repeats;
    MPI_Allreduce(MPI_IN_PLACE, &wall_max, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &compute, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &reduce_sum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    double *load = rank == 0 ? malloc(sizeof(double) * (size_t)size) : NULL;
    double mine = cpu / wall;
    MPI_Gather(&mine, 1, MPI_DOUBLE, load, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);

    /* The allreduce alone, on a buffer of the step's size. */
    size_t n = agave_model_param_numel(m) + 5;
    float *buf = calloc(n, sizeof *buf);
    double pure = 0;
    for (int i = 0; size > 1 && buf && i < repeats; i++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double a = MPI_Wtime();
        MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        pure += MPI_Wtime() - a;
    }
    MPI_Allreduce(MPI_IN_PLACE, &pure, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);

    if (rank == 0) {
        double alone = pure / repeats;
        printf("%s, %d rank%s x %d thread%s, batch %d (%d-%d per rank)%s, buffer %.2f MB\n"
               "  wall:  %6.1f images/s, %7.1f ms/step, allreduce in the step %6.2f ms, alone "
               "%6.2f ms; cpu/wall per rank",
               config, size, size == 1 ? "" : "s", threads, threads == 1 ? "" : "s", batch,
               batch / size, (batch + size - 1) / size,
               size == 1 && sliced ? ", sliced path" : "", n * 4.0 / 1e6, batch * repeats / wall_max,
               1e3 * wall_max / repeats, 1e3 * reduce_sum / size / repeats, 1e3 * alone);
        for (int r = 0; r < size; r++)
            printf(" %.2f", load[r]);
        printf("\n  cpu:   busiest rank %7.1f ms/step outside the allreduce -> %6.1f images/s "
               "with a core per rank\n", 1e3 * compute, batch / (compute + alone));
        fflush(stdout);
    }
    free(load), free(buf), free(x);
    agave_model_free(m);
    agave_context_free(ctx);
    MPI_Finalize();
    return 0;
}
