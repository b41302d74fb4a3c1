// SPDX-License-Identifier: GPL-2.0
/* Initial values of maps: a prog array filled with programs and a map-in-map filled with
 * maps (__array), plus a bpf_loop callback (a function address). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} inner_a SEC(".maps"), inner_b SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, struct inner);
} outer SEC(".maps") = {
	.values = { [0] = &inner_a, [2] = &inner_b },
};

int stage_one(struct xdp_md *ctx);
int stage_two(struct xdp_md *ctx);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__array(values, int (void *));
} jump_table SEC(".maps") = {
	.values = { [1] = (void *)&stage_one, [3] = (void *)&stage_two },
};

static long add_index(__u32 index, void *sum)
{
	*(__u64 *)sum += index;
	return 0;
}

SEC("xdp")
int entry(struct xdp_md *ctx)
{
	__u64 sum = 0;
	__u32 key = 0;
	void *inner;

	bpf_loop(4, add_index, &sum, 0);
	inner = bpf_map_lookup_elem(&outer, &key);
	if (inner) {
		__u64 *v = bpf_map_lookup_elem(inner, &key);
		if (v)
			*v = sum;
	}
	bpf_tail_call(ctx, &jump_table, 1);
	return XDP_PASS;
}

SEC("xdp")
int stage_one(struct xdp_md *ctx)
{
	bpf_tail_call(ctx, &jump_table, 3);
	return XDP_PASS;
}

SEC("xdp")
int stage_two(struct xdp_md *ctx)
{
	return XDP_DROP;
}

char _license[] SEC("license") = "GPL";
