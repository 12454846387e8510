/* Elementary functions over long runs, four elements at a time.
 *
 * Map entries apply one unary operation to many elements. glibc ships
 * vectorised versions of libm (libmvec, documented accurate to 4 ulp; the
 * accuracy measured here is in tests/test_vector_math.py and the README);
 * its AVX2 variants _ZGVdN4v_<name> take and return four doubles in one
 * register. They are looked up at run time (dlopen, CPU check), not linked,
 * so the same build runs where libmvec or AVX2 is missing (musl, older
 * CPUs, other systems) and then uses scalar libm, exactly as scalar entries
 * do. Every element of a run, the last partial group of four included, goes
 * through the same function, so an element's bits do not depend on where
 * it sits in the run, on the batch size or on the number of directions.
 */
#ifndef WG_VECTOR_MATH_H
#define WG_VECTOR_MATH_H

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

typedef double (*wg_scalar_fn)(double);

#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
#define WG_HAVE_AVX2_PATH 1
#include <dlfcn.h>
#include <immintrin.h>
typedef __m256d (*wg_avx2_fn)(__m256d);
#else
typedef void *wg_avx2_fn;
#endif

typedef struct {
    wg_scalar_fn scalar;
    wg_avx2_fn avx2;   /* NULL: the scalar function, element by element */
} wg_vector_fn;

#ifdef WG_HAVE_AVX2_PATH
__attribute__((target("avx2,fma")))
static void wg_avx2_apply(wg_avx2_fn f, const double *x, double *r, ptrdiff_t n)
{
    ptrdiff_t i = 0;
    double tail[4];
    for (; i + 4 <= n; i += 4)
        _mm256_storeu_pd(r + i, f(_mm256_loadu_pd(x + i)));
    if (i < n) {
        /* The unused lanes repeat a real input: no spurious overflow or
           invalid-operation work on garbage. */
        tail[0] = tail[1] = tail[2] = tail[3] = x[i];
        memcpy(tail, x + i, (size_t)(n - i) * sizeof(double));
        _mm256_storeu_pd(tail, f(_mm256_loadu_pd(tail)));
        memcpy(r + i, tail, (size_t)(n - i) * sizeof(double));
    }
}
#endif

/* r[i] = f(x[i]) for i < n; x and r may be the same array. */
static inline void wg_vector_apply(const wg_vector_fn *f, const double *x, double *r,
                                   ptrdiff_t n)
{
    ptrdiff_t i;
#ifdef WG_HAVE_AVX2_PATH
    if (f->avx2 != NULL) {
        wg_avx2_apply(f->avx2, x, r, n);
        return;
    }
#endif
    for (i = 0; i < n; i++)
        r[i] = f->scalar(x[i]);
}

/* Fill fns[k] = {scalars[k], AVX2 variant of names[k] or NULL}; returns 1
   if the vector variants are in use (all of them found), else 0. Called
   once, at import, with the GIL held. */
static int wg_vector_setup(wg_vector_fn *fns, const char *const *names,
                           wg_scalar_fn const *scalars, int n, int enable)
{
    int k, found = 0;
    for (k = 0; k < n; k++) {
        fns[k].scalar = scalars[k];
        fns[k].avx2 = NULL;
    }
#ifdef WG_HAVE_AVX2_PATH
    if (enable) {
        void *lib;
        char symbol[64];
        wg_avx2_fn variants[64];
        __builtin_cpu_init();
        if (n > 64 || !__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
            return 0;
        /* Kept open for the life of the process, as the functions are. */
        lib = dlopen("libmvec.so.1", RTLD_NOW | RTLD_LOCAL);
        if (lib == NULL)
            return 0;
        for (k = 0; k < n; k++) {
            snprintf(symbol, sizeof symbol, "_ZGVdN4v_%s", names[k]);
            variants[k] = (wg_avx2_fn)dlsym(lib, symbol);
            found += variants[k] != NULL;
        }
        /* All or none: a glibc that lacks some variants (older than 2.35)
           is used for none, so which path an operation takes never
           depends on the glibc version in more than one way. */
        if (found != n)
            return 0;
        for (k = 0; k < n; k++)
            fns[k].avx2 = variants[k];
        return 1;
    }
#else
    (void)names;
    (void)enable;
#endif
    return 0;
}

#endif /* WG_VECTOR_MATH_H */
