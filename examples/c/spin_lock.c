// SPDX-License-Identifier: GPL-2.0
/* Spin-locked counters (XDP): every packet adds 1 to `hits` and its length to `bytes` of
 * element 0 of a HASH and of an ARRAY whose values hold a struct bpf_spin_lock, under that
 * lock, so user space may read and write the same values with BPF_F_LOCK meanwhile. The
 * hash element is created (plain update) when it is missing. A global lock in .bss guards
 * `packets`, the count of every packet (user space may lock the .bss value too). Every packet
 * passes. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct counter {
	__u32 hits;
	struct bpf_spin_lock lock;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, struct counter);
} locked_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct counter);
} locked_array SEC(".maps");

struct bpf_spin_lock packets_lock;
__u64 packets;

static __always_inline void add(struct counter *c, __u64 len)
{
	bpf_spin_lock(&c->lock);
	c->hits += 1;
	c->bytes += len;
	bpf_spin_unlock(&c->lock);
}

SEC("xdp")
int count_locked(struct xdp_md *ctx)
{
	__u64 len = ctx->data_end - ctx->data;
	__u32 key = 0;
	struct counter *c;

	bpf_spin_lock(&packets_lock);
	packets += 1;
	bpf_spin_unlock(&packets_lock);
	c = bpf_map_lookup_elem(&locked_hash, &key);

	if (!c) {
		struct counter fresh = { .hits = 0, .bytes = 0 };
		bpf_map_update_elem(&locked_hash, &key, &fresh, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&locked_hash, &key);
		if (!c)
			return XDP_PASS;
	}
	add(c, len);
	c = bpf_map_lookup_elem(&locked_array, &key);
	if (c)
		add(c, len);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
