/* dist.h for `make MPI=1`: the processes are the ranks of MPI_COMM_WORLD.
 * Built with mpicc in place of dist.c; the library itself never sees MPI. */
#include "dist.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

/* Set once by dist_init; afterwards only read (and reduce_seconds summed). */
static int rank, size = 1, local_size = 1;
static double reduce_seconds;

int dist_init(int *argc, char ***argv)
{
    if (MPI_Init(argc, argv) != MPI_SUCCESS) {
        fprintf(stderr, "MPI_Init failed\n");
        return EXIT_ERROR;
    }
    /* Errors come back as codes, so that a failed call can be reported
     * before the run is stopped, instead of killing it without a word. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm node;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node) ==
        MPI_SUCCESS) {
        MPI_Comm_size(node, &local_size);
        MPI_Comm_free(&node);
    }
    if (rank > 0) {
        cli_mute(1);
        if (!freopen("/dev/null", "w", stdout))
            fclose(stdout);
    }
    return EXIT_OK;
}

void dist_finalize(void) { MPI_Finalize(); }
int dist_rank(void) { return rank; }
int dist_size(void) { return size; }
int dist_local_size(void) { return local_size; }
const char *dist_kind(void) { return "MPI"; }

agave_status dist_reduce(float *buf, size_t n, void *user)
{
    (void)user;
    double t0 = MPI_Wtime();
    /* One call for the whole buffer: gradients up to 2^31 - 1 floats (8 GiB)
     * fit MPI's int count; beyond that, chunks. */
    for (size_t off = 0; off < n;) {
        int count = n - off > (size_t)0x7fffffff ? 0x7fffffff : (int)(n - off);
        if (MPI_Allreduce(MPI_IN_PLACE, buf + off, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD) !=
            MPI_SUCCESS)
            return AGAVE_ERR_IO;
        off += (size_t)count;
    }
    reduce_seconds += MPI_Wtime() - t0;
    return AGAVE_OK;
}

double dist_reduce_seconds(void) { return reduce_seconds; }

void dist_sum_doubles(double *v, int n)
{
    MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}

int dist_any(int flag)
{
    int any = flag != 0;
    MPI_Allreduce(MPI_IN_PLACE, &any, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD);
    return any;
}

int dist_all_equal(uint64_t value)
{
    uint64_t v[2] = {value, ~value}, r[2];   /* max(v) == v and max(~v) == ~v: all equal */
    MPI_Allreduce(v, r, 2, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    return r[0] == v[0] && r[1] == v[1];
}

int dist_agree(int rc)
{
    int first = rc != EXIT_OK ? rank : size;
    MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (first == size)
        return EXIT_OK;
    int status = rc;
    MPI_Bcast(&status, 1, MPI_INT, first, MPI_COMM_WORLD);
    if (rank == first && rank > 0)
        fprintf(stderr, "%s (MPI rank %d of %d)\n", cli_held_message(), rank, size);
    return status;
}

int dist_abort(int rc)
{
    if (size == 1)
        return rc;
    if (rank > 0)
        fprintf(stderr, "%s (MPI rank %d of %d)\n", cli_held_message(), rank, size);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, rc);
    return rc;
}

void dist_slice(int n, int *first, int *last)
{
    int base = n / size, extra = n % size;
    *first = rank * base + (rank < extra ? rank : extra);
    *last = *first + base + (rank < extra);
}
