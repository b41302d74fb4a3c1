/* SPDX-License-Identifier: GPL-2.0
 * The benchmark computations as native code (benchmarks/run.py builds this with cc -O2 into
 * a shared library): bench(name, packet, length, runs, &result) times `runs` calls in C and
 * returns ns per call. The packet pointer passes through an empty asm each run, so the
 * compiler cannot hoist the work out of the loop. */
#include <string.h>
#include <time.h>
#include "bench_core.h"

static __u8 scratch[256];

static __u64 copy_native(const __u8 *p, const __u8 *end)
{
	return copy_core(p, end, scratch);
}

typedef __u64 (*core_fn)(const __u8 *, const __u8 *);

static const struct {
	const char *name;
	core_fn fn;
} table[] = {
	{"sum", sum_core},       {"prime", prime_core},       {"ilog2", ilog2_core},
	{"copy", copy_native},   {"compare", compare_core},   {"byte_sum", byte_sum_core},
	{"branches", branches_core}, {"parse", parse_core},
};

double bench(const char *name, const __u8 *packet, __u64 length, __u64 runs, __u64 *result)
{
	core_fn fn = 0;
	for (unsigned i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (!strcmp(table[i].name, name))
			fn = table[i].fn;
	if (!fn || !runs)
		return -1.0;
	struct timespec a, b;
	__u64 r = 0;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (__u64 i = 0; i < runs; i++) {
		const __u8 *p = packet;
		__asm__ volatile("" : "+r"(p) : : "memory");
		r = fn(p, p + length);
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	*result = r;
	return ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / (double)runs;
}
