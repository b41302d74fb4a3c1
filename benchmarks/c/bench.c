// SPDX-License-Identifier: GPL-2.0
/* The benchmark suite's programs (benchmarks/run.py): XDP programs over one packet whose
 * contents decide the trip counts. The computations live in bench_core.h, shared with the
 * native C build; the map, tail-call and helper programs exist only here. Every program
 * returns a value that depends on its work (the kernel reports the low 32 bits). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "bench_core.h"

#define DATA(ctx) ((const __u8 *)(long)(ctx)->data)
#define DATA_END(ctx) ((const __u8 *)(long)(ctx)->data_end)
#define COMPUTE(name)                                        \
	SEC("xdp") int name(struct xdp_md *ctx)              \
	{                                                    \
		return name##_core(DATA(ctx), DATA_END(ctx)); \
	}

COMPUTE(sum)
COMPUTE(prime)
COMPUTE(ilog2)
COMPUTE(compare)
COMPUTE(byte_sum)
COMPUTE(branches)
COMPUTE(parse)

struct buffer {
	__u8 bytes[256];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct buffer);
} scratch SEC(".maps");

SEC("xdp") int copy(struct xdp_md *ctx)
{
	__u32 key = 0;
	struct buffer *dst = bpf_map_lookup_elem(&scratch, &key);
	if (!dst)
		return 0;
	return copy_core(DATA(ctx), DATA_END(ctx), dst->bytes);
}

/* ---- maps: n lookups and updates (n = the packet's first u16), keys from the packet ---- */
#define COUNTERS(name, map_type)                      \
	struct {                                        \
		__uint(type, map_type);                 \
		__uint(max_entries, 256);               \
		__type(key, __u32);                     \
		__type(value, __u64);                   \
	} name##_map SEC(".maps");

COUNTERS(array, BPF_MAP_TYPE_ARRAY)
COUNTERS(hash, BPF_MAP_TYPE_HASH)
COUNTERS(lru, BPF_MAP_TYPE_LRU_HASH)
COUNTERS(percpu, BPF_MAP_TYPE_PERCPU_ARRAY)

/* for each i < n: key = (p[2] + i) & 63; value += 1 by lookup, or insert 1 by update */
#define MAP_PROGRAM(name)                                                       \
	SEC("xdp") int name##_map_ops(struct xdp_md *ctx)                      \
	{                                                                       \
		const __u8 *p = DATA(ctx), *end = DATA_END(ctx);               \
		if (p + 3 > end)                                                \
			return 0;                                               \
		__u32 n = p[0] | (__u32)p[1] << 8, base = p[2];                 \
		__u64 total = 0;                                                \
		for (__u32 i = 0; i < 256; i++) {                               \
			if (i >= n)                                             \
				break;                                          \
			__u32 key = (base + i) & 63;                            \
			__u64 *value = bpf_map_lookup_elem(&name##_map, &key);  \
			if (value) {                                            \
				*value += 1;                                    \
				total += *value & 1;                            \
			} else {                                                \
				__u64 one = 1;                                  \
				bpf_map_update_elem(&name##_map, &key, &one, 0); \
				total += 100;                                   \
			}                                                       \
		}                                                               \
		return total;                                                   \
	}

MAP_PROGRAM(array)
MAP_PROGRAM(hash)
MAP_PROGRAM(lru)
MAP_PROGRAM(percpu)

/* ---- tail calls: stage i tail-calls stage i + 1 while i < n = p[0] (8 stages) ---------- */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 9);
	__type(key, __u32);
	__type(value, __u32);
} stages SEC(".maps");

#define STAGE(i)                                              \
	SEC("xdp") int stage##i(struct xdp_md *ctx)          \
	{                                                     \
		const __u8 *p = DATA(ctx), *end = DATA_END(ctx); \
		if (p + 1 > end)                              \
			return 0;                             \
		if (p[0] > i)                                 \
			bpf_tail_call(ctx, &stages, i + 1);   \
		return 1000 + i;                              \
	}

STAGE(0)
STAGE(1)
STAGE(2)
STAGE(3)
STAGE(4)
STAGE(5)
STAGE(6)
STAGE(7)
STAGE(8)

/* ---- helpers: n rounds of bpf_ktime_get_ns and bpf_get_smp_processor_id ------------------ */
SEC("xdp") int helpers(struct xdp_md *ctx)
{
	__u32 n = arg16(DATA(ctx), DATA_END(ctx));
	__u64 ticks = 0;
	for (__u32 i = 0; i < 256; i++) {
		if (i >= n)
			break;
		ticks += bpf_ktime_get_ns() != 0;
		ticks += bpf_get_smp_processor_id() < 4096;
	}
	return ticks;
}

/* ---- ring buffer: n rounds of reserve + submit, reserve + discard and output of 16 bytes,
 * then the data available (benchmarks/run.py empties the ring before each timing) --------- */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} ring SEC(".maps");

SEC("xdp") int ringbuf(struct xdp_md *ctx)
{
	__u32 n = arg16(DATA(ctx), DATA_END(ctx));
	__u64 sent = 0;
	for (__u32 i = 0; i < 256; i++) {
		if (i >= n)
			break;
		__u64 *e = bpf_ringbuf_reserve(&ring, 16, 0);
		if (e) {
			e[0] = i;
			e[1] = n;
			bpf_ringbuf_submit(e, 0);
			sent++;
		}
		e = bpf_ringbuf_reserve(&ring, 16, 0);
		if (e) {
			e[0] = i;
			bpf_ringbuf_discard(e, 0);
		}
		__u64 v[2] = {i, n};
		sent += bpf_ringbuf_output(&ring, v, sizeof(v), 0) == 0;
	}
	return sent * 1000 + bpf_ringbuf_query(&ring, BPF_RB_AVAIL_DATA) / 8;
}

char LICENSE[] SEC("license") = "GPL";
