/* Data parallelism for the programs: the processes that share a run.
 *
 * The plain build links dist.c: one process, nothing to communicate. `make
 * MPI=1` builds the programs again with dist_mpi.c, where the processes are
 * the ranks of MPI_COMM_WORLD under mpirun. Either way the programs make the
 * same calls, so that one rank behaves exactly like the plain build.
 *
 * Output: rank 0 alone prints and writes files. The other ranks' stdout goes
 * to /dev/null and their error messages are held (cli.h, fail) until
 * dist_agree or dist_abort decides whether anyone needs to see them. */
#ifndef AGAVE_EXAMPLES_DIST_H
#define AGAVE_EXAMPLES_DIST_H

#include <stddef.h>
#include <stdint.h>

#define AGAVE_EXPERIMENTAL   /* agave_grad_reduce_fn */
#include "agave.h"

/* Starts the processes' communication (MPI_Init); EXIT_OK or EXIT_ERROR. */
int dist_init(int *argc, char ***argv);
/* Ends it (MPI_Finalize); call once, before returning from main. */
void dist_finalize(void);

int dist_rank(void);         /* 0 .. dist_size() - 1 */
int dist_size(void);         /* processes in the run */
int dist_local_size(void);   /* processes on this machine, to share its cores */
/* "MPI" or "" (the plain build), for messages. */
const char *dist_kind(void);

/* The reducer for agave_model_set_grad_reducer: sums buf over the processes
 * in place (MPI_Allreduce, MPI_SUM), and adds its wall time to
 * dist_reduce_seconds. */
agave_status dist_reduce(float *buf, size_t n, void *user);
double dist_reduce_seconds(void);
/* Element-wise sums of n doubles over the processes, in place. */
void dist_sum_doubles(double *v, int n);
/* 1 if flag is non-zero in any process (every process gets the answer). */
int dist_any(int flag);
/* 1 if every process passes the same value. */
int dist_all_equal(uint64_t value);

/* After a phase in which any process may fail (option parsing, setup):
 * every process passes its exit status and gets the same one back: EXIT_OK
 * if all succeeded, else the status of the lowest failing rank, whose held
 * message is printed unless that rank is 0 (which printed its own). */
int dist_agree(int rc);
/* After an error that only this process has seen while the others may be
 * waiting in a collective call: prints the held message (ranks > 0) and
 * stops every process with status rc (MPI_Abort). Returns rc in the plain
 * build, which has nobody to stop. */
int dist_abort(int rc);

/* Images [*first, *last) of a batch of n for this process: n / size each,
 * the remainder spread over the first ranks. */
void dist_slice(int n, int *first, int *last);

#endif
