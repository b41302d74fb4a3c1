// SPDX-License-Identifier: GPL-2.0
/* Drop empty UDP datagrams (XDP): the sample eBPF for Windows shipped first, for a DNS server
 * flooded with zero-length UDP. IPv4/UDP datagrams whose UDP length is just the 8-byte header
 * are dropped and counted in dropped_packet_map[0]; everything else passes. The program acts
 * only on the interface whose index is in interface_index_map[0] (0: any interface). */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} dropped_packet_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} interface_index_map SEC(".maps");

SEC("xdp")
int drop_empty_udp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	struct udphdr *udp;
	__u32 key = 0, ihl, *ifindex;
	__u64 *dropped;

	ifindex = bpf_map_lookup_elem(&interface_index_map, &key);
	if (ifindex && *ifindex && *ifindex != ctx->ingress_ifindex)
		return XDP_PASS;
	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	if (ip->protocol != IPPROTO_UDP || (ip->frag_off & bpf_htons(0x1fff)))
		return XDP_PASS; /* later fragments carry no UDP header */
	ihl = ip->ihl * 4;
	if (ihl < sizeof(*ip))
		return XDP_PASS;
	udp = (void *)ip + ihl;
	if ((void *)(udp + 1) > data_end)
		return XDP_PASS;
	if (bpf_ntohs(udp->len) != sizeof(*udp))
		return XDP_PASS;
	dropped = bpf_map_lookup_elem(&dropped_packet_map, &key);
	if (dropped)
		__sync_fetch_and_add(dropped, 1);
	return XDP_DROP;
}

char _license[] SEC("license") = "GPL";
