/* dist.h for the plain build: one process. */
#include "dist.h"

#include "cli.h"

int dist_init(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    return EXIT_OK;
}

void dist_finalize(void) {}
int dist_rank(void) { return 0; }
int dist_size(void) { return 1; }
int dist_local_size(void) { return 1; }
const char *dist_kind(void) { return ""; }

agave_status dist_reduce(float *buf, size_t n, void *user)
{
    (void)buf, (void)n, (void)user;
    return AGAVE_OK;
}

double dist_reduce_seconds(void) { return 0; }
void dist_sum_doubles(double *v, int n) { (void)v, (void)n; }
int dist_any(int flag) { return flag != 0; }
int dist_all_equal(uint64_t value)
{
    (void)value;
    return 1;
}
int dist_agree(int rc) { return rc; }
int dist_abort(int rc) { return rc; }

void dist_slice(int n, int *first, int *last)
{
    *first = 0;
    *last = n;
}
