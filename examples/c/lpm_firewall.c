// SPDX-License-Identifier: GPL-2.0
/* LPM-trie firewall (XDP): the IPv4 source address is looked up in an LPM_TRIE of prefixes;
 * the longest matching prefix's rule decides: RULE_DENY drops, RULE_ALLOW passes (so a longer
 * allow prefix overrides a shorter deny one), no match passes. Each rule counts its hits, and
 * stats[0]/stats[1] count passed/dropped IPv4 packets. The prefixes are filled from user space. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define RULE_ALLOW 0
#define RULE_DENY 1

struct prefix {
	__u32 prefixlen; /* bits of addr that count */
	__u32 addr;      /* network byte order */
};

struct rule {
	__u32 action; /* RULE_ALLOW or RULE_DENY */
	__u32 pad;
	__u64 hits;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct prefix);
	__type(value, struct rule);
} prefixes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

SEC("xdp")
int lpm_firewall(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	struct prefix key = { .prefixlen = 32 };
	struct rule *rule;
	__u32 verdict = 0;
	__u64 *n;

	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	key.addr = ip->saddr;
	rule = bpf_map_lookup_elem(&prefixes, &key);
	if (rule) {
		__sync_fetch_and_add(&rule->hits, 1);
		verdict = rule->action == RULE_DENY;
	}
	n = bpf_map_lookup_elem(&stats, &verdict);
	if (n)
		__sync_fetch_and_add(n, 1);
	return verdict ? XDP_DROP : XDP_PASS;
}

char _license[] SEC("license") = "GPL";
