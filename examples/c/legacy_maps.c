// SPDX-License-Identifier: GPL-2.0
/* Pre-BTF maps: 20-byte `struct bpf_map_def` records in SEC("maps"), referenced by old
 * style section names ("socket1"), as samples/bpf built them. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct bpf_map_def_legacy {
	unsigned int type;
	unsigned int key_size;
	unsigned int value_size;
	unsigned int max_entries;
	unsigned int map_flags;
};

struct bpf_map_def_legacy SEC("maps") counters = {
	.type = BPF_MAP_TYPE_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(long),
	.max_entries = 256,
};

struct bpf_map_def_legacy SEC("maps") flows = {
	.type = BPF_MAP_TYPE_HASH,
	.key_size = sizeof(__u64),
	.value_size = sizeof(__u64),
	.max_entries = 1024,
	.map_flags = BPF_F_NO_PREALLOC,
};

SEC("socket1")
int count_len(struct __sk_buff *skb)
{
	__u32 index = skb->protocol & 0xff;
	__u64 key = skb->len;
	long *value = bpf_map_lookup_elem(&counters, &index);

	if (value)
		__sync_fetch_and_add(value, skb->len);
	bpf_map_update_elem(&flows, &key, &key, BPF_ANY);
	return 0;
}

char _license[] SEC("license") = "GPL";
