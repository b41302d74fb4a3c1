// SPDX-License-Identifier: GPL-2.0
/* Tail-call dispatcher (XDP): the entry program reads the IPv4 protocol and tail-calls the
 * handler stored at that index of the PROG_ARRAY jt (user space fills it: jt[17] = the UDP
 * handler). A protocol without a handler passes and counts in handled[0]. Handlers count in
 * handled[protocol] and decide: UDP passes, TCP drops connections to port 23 (telnet), ICMP
 * echo requests are answered in place (XDP_TX, addresses swapped, type 0). The handlers count
 * before they parse: a packet pointer checked before a helper call and used after it is
 * accepted by Linux but not yet by pybpf's verifier when it may also be NULL. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define ICMP_ECHOREPLY 0
#define ICMP_ECHO 8

struct icmphdr { /* <linux/icmp.h> pulls in libc headers: the part used here */
	__u8 type;
	__u8 code;
	__u16 checksum;
	__u16 id;
	__u16 sequence;
};

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32);
} jt SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u64);
} handled SEC(".maps");

static __always_inline struct iphdr *ipv4(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);

	if ((void *)(ip + 1) > (void *)(long)ctx->data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return 0;
	return ip;
}

static __always_inline void count(__u32 index)
{
	__u64 *n = bpf_map_lookup_elem(&handled, &index);

	if (n)
		__sync_fetch_and_add(n, 1);
}

SEC("xdp")
int dispatch(struct xdp_md *ctx)
{
	struct iphdr *ip = ipv4(ctx);

	if (!ip)
		return XDP_PASS;
	bpf_tail_call(ctx, &jt, ip->protocol);
	count(0); /* no handler for this protocol */
	return XDP_PASS;
}

SEC("xdp")
int handle_udp(struct xdp_md *ctx)
{
	count(IPPROTO_UDP);
	return XDP_PASS;
}

SEC("xdp")
int handle_tcp(struct xdp_md *ctx)
{
	struct iphdr *ip;
	struct tcphdr *tcp;

	count(IPPROTO_TCP);
	ip = ipv4(ctx);
	if (!ip || ip->ihl != 5)
		return XDP_PASS;
	tcp = (void *)(ip + 1);
	if ((void *)(tcp + 1) > (void *)(long)ctx->data_end)
		return XDP_PASS;
	return tcp->dest == bpf_htons(23) ? XDP_DROP : XDP_PASS;
}

SEC("xdp")
int handle_icmp(struct xdp_md *ctx)
{
	struct iphdr *ip;
	struct icmphdr *icmp;
	__u32 addr;

	count(IPPROTO_ICMP);
	ip = ipv4(ctx);
	if (!ip || ip->ihl != 5)
		return XDP_PASS;
	icmp = (void *)(ip + 1);
	if ((void *)(icmp + 1) > (void *)(long)ctx->data_end || icmp->type != ICMP_ECHO)
		return XDP_PASS;
	addr = ip->saddr;
	ip->saddr = ip->daddr;
	ip->daddr = addr;
	icmp->type = ICMP_ECHOREPLY;
	/* the checksum covers the type: 8 -> 0 adds 0x0800 to it (one's complement) */
	icmp->checksum = bpf_htons(bpf_ntohs(icmp->checksum) + 0x0800 +
				   (bpf_ntohs(icmp->checksum) >= 0xf800));
	return XDP_TX;
}

char _license[] SEC("license") = "GPL";
