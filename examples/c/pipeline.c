// SPDX-License-Identifier: GPL-2.0
/* A two-stage pipeline whose context is plain memory (raw tracepoint arguments, u64s):
 * global data in .rodata/.data/.bss (a constant, a struct, an array), a hash map used as
 * a cache, an array of totals updated atomically, a subprogram and a tail call through a
 * prog array filled at load. With args (a, b, i): start caches a*a and b*b, adds
 * scale * (a*a + b*b) to totals[0] and tail-calls stages[i]; finish counts itself in
 * totals[1] and returns a*a + b*b + cfg.bias. An empty slot i makes start return 1000. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct config {
	__u16 port;
	__u8 verbose;
	char name[5];
	__s32 bias;
};

const volatile __u64 scale = 3;                                 /* .rodata */
struct config cfg = { .port = 8080, .name = "pipe", .bias = 10 }; /* .data */
__u64 calls = 0;                                                /* .bss */
__u64 last_sum = 0;                                             /* .bss */
__u32 stage_hits[2] = {};                                       /* .bss */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, __u64);
} squares SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} totals SEC(".maps");

int finish(struct bpf_raw_tracepoint_args *ctx);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, int (void *));
} stages SEC(".maps") = {
	.values = { [1] = (void *)&finish },
};

static __noinline __u64 square_of(__u64 x)
{
	__u64 *cached = bpf_map_lookup_elem(&squares, &x);
	__u64 square;

	if (cached)
		return *cached;
	square = x * x;
	bpf_map_update_elem(&squares, &x, &square, BPF_NOEXIST);
	return square;
}

SEC("raw_tp/sys_enter")
int start(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 key = 0;
	__u64 *total;

	calls++;
	stage_hits[0]++;
	last_sum = square_of(ctx->args[0]) + square_of(ctx->args[1]);
	total = bpf_map_lookup_elem(&totals, &key);
	if (total)
		__sync_fetch_and_add(total, last_sum * scale);
	bpf_tail_call(ctx, &stages, (__u32)ctx->args[2]);
	return 1000;
}

SEC("raw_tp/sys_enter")
int finish(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 key = 1;
	__u64 *total = bpf_map_lookup_elem(&totals, &key);

	stage_hits[1]++;
	if (total)
		__sync_fetch_and_add(total, 1);
	return last_sum + cfg.bias;
}

char _license[] SEC("license") = "GPL";
