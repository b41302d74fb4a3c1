// SPDX-License-Identifier: GPL-2.0
/* XDP packet counter: BTF-defined maps, .rodata/.data/.bss globals, a static and a global
 * subprogram, bpf_printk. Counts packets per IP protocol and drops one protocol, chosen by
 * the .rodata constant drop_proto (set it before load). */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u64);
} proto_count SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} verdicts SEC(".maps");

const volatile __u32 drop_proto = 17; /* .rodata: UDP unless changed before load */
__u64 seen = 0;                       /* .bss */
__u32 verbose = 1;                    /* .data */
char tag[8] SEC(".data.tag") = "count";

static __noinline int parse_proto(void *data, void *data_end)
{
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);

	if ((void *)(ip + 1) > data_end)
		return -1;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return -1;
	return ip->protocol;
}

__noinline int count(__u32 proto)
{
	__u64 one = 1, *value;

	value = bpf_map_lookup_elem(&proto_count, &proto);
	if (value) {
		__sync_fetch_and_add(value, 1);
		return 0;
	}
	return bpf_map_update_elem(&proto_count, &proto, &one, BPF_NOEXIST);
}

SEC("xdp")
int xdp_count(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 verdict = 1;
	__u64 *n;
	int proto;

	seen++;
	proto = parse_proto(data, data_end);
	if (proto < 0)
		return XDP_PASS;
	count(proto);
	if (verbose)
		bpf_printk("%s: proto %d", tag, proto);
	if ((__u32)proto == drop_proto)
		verdict = 0;
	n = bpf_map_lookup_elem(&verdicts, &verdict);
	if (n)
		*n += 1;
	return verdict ? XDP_PASS : XDP_DROP;
}

char _license[] SEC("license") = "GPL";
