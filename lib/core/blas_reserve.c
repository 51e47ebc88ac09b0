/* OpenBLAS's work buffers, taken while memory is there.
 *
 * OpenBLAS 0.3.21 (Debian 12) gives every concurrent caller of cblas_sgemm a
 * work buffer from a process-wide pool, mapped at first use (128 MiB of
 * address space each here), and when that mmap fails it retries for ever at
 * full CPU instead of failing (OpenMathLib/OpenBLAS#5289; fixed in 0.3.30).
 * A process near its memory limit (ulimit -v) at its first product therefore
 * hung inside the library's first GEMM. So the library takes the buffers when
 * a context is created or its thread count raised: it first checks that the
 * address space can hold them (a PROT_NONE probe: it counts against
 * RLIMIT_AS but touches nothing) and refuses with AGAVE_ERR_NOMEM if not, then
 * runs one product on every thread at once, so that the pool holds one
 * buffer per thread before any model exists and never maps one later. */
#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "core.h"

#define OPENBLAS_BUFFER_BYTES ((size_t)128 << 20)
/* Large enough that OpenBLAS takes its ordinary (buffered) path, not a
 * small-matrix kernel, and that the threads' products overlap in time. */
#define WARM_SIZE 256

/* The most threads whose buffers are in OpenBLAS's pool: the pool is
 * process-wide, so this mirror of it is too (it only ever grows). */
static atomic_int warmed_threads;

static int address_space_has(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return 0;
    munmap(p, bytes);
    return 1;
}

/* Every thread runs a WARM_SIZE^3 product after a barrier. */
static agave_status run_products(agave_context *ctx, int threads)
{
    const size_t n = (size_t)WARM_SIZE * WARM_SIZE;
    float *a = calloc(n * (size_t)(threads + 1), sizeof *a);
    if (!a)
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "cannot allocate %zu bytes to start OpenBLAS",
                         n * (size_t)(threads + 1) * sizeof *a);
#pragma omp parallel num_threads(threads)
    {
        int t = 0;
#ifdef _OPENMP
        t = omp_get_thread_num();
#endif
#pragma omp barrier
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, WARM_SIZE, WARM_SIZE, WARM_SIZE,
                    1.0f, a, WARM_SIZE, a, WARM_SIZE, 0.0f, a + n * (size_t)(t + 1), WARM_SIZE);
    }
    free(a);
    return AGAVE_OK;
}

agave_status blas_reserve(agave_context *ctx, int threads)
{
    if (threads <= atomic_load(&warmed_threads))
        return AGAVE_OK;
    if (openblas_get_num_threads() != 1)
        openblas_set_num_threads(1);
    /* Room for the buffers plus a margin for OpenBLAS's rounding and the
     * small allocations around the products. */
    size_t need = (size_t)threads * OPENBLAS_BUFFER_BYTES + ((size_t)16 << 20);
    if (!address_space_has(need))
        return ctx_error(ctx, AGAVE_ERR_NOMEM,
                         "not enough address space for OpenBLAS's work buffers (%d thread%s x "
                         "%zu MiB): raise the memory limit (ulimit -v) or use fewer threads",
                         threads, threads == 1 ? "" : "s", OPENBLAS_BUFFER_BYTES >> 20);
    agave_status st = run_products(ctx, threads);
    if (st != AGAVE_OK)
        return st;
    int seen = atomic_load(&warmed_threads);
    while (seen < threads && !atomic_compare_exchange_weak(&warmed_threads, &seen, threads)) {
    }
    return AGAVE_OK;
}
