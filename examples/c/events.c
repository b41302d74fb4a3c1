// SPDX-License-Identifier: GPL-2.0
/* Ring buffer event stream (XDP): one event per TCP connection attempt (a SYN without ACK
 * over IPv4) into a RINGBUF, read by user space as it comes; every packet passes. An event
 * that does not fit is counted in lost[0]. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct event {
	__u32 saddr; /* network byte order */
	__u32 daddr;
	__u16 sport; /* host byte order */
	__u16 dport;
	__u32 ifindex;
	__u32 len;   /* the frame's length */
	__u32 seq;   /* the SYN's sequence number */
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

SEC("xdp")
int syn_events(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	struct tcphdr *tcp;
	struct event *e;
	__u32 ihl, zero = 0;
	__u64 *n;

	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	if (ip->protocol != IPPROTO_TCP)
		return XDP_PASS;
	ihl = ip->ihl * 4;
	if (ihl < sizeof(*ip))
		return XDP_PASS;
	tcp = (void *)ip + ihl;
	if ((void *)(tcp + 1) > data_end || !tcp->syn || tcp->ack)
		return XDP_PASS;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		n = bpf_map_lookup_elem(&lost, &zero);
		if (n)
			__sync_fetch_and_add(n, 1);
		return XDP_PASS;
	}
	e->saddr = ip->saddr;
	e->daddr = ip->daddr;
	e->sport = bpf_ntohs(tcp->source);
	e->dport = bpf_ntohs(tcp->dest);
	e->ifindex = ctx->ingress_ifindex;
	e->len = data_end - data;
	e->seq = bpf_ntohl(tcp->seq);
	bpf_ringbuf_submit(e, 0);
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
