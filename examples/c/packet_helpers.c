// SPDX-License-Identifier: GPL-2.0
/* Packet helpers: XDP programs that push/pop a header (adjust_head), trim or grow the tail
 * (adjust_tail), reserve metadata (adjust_meta) and redirect; a tc program that copies bytes
 * with skb_load_bytes/skb_store_bytes and redirects. The first byte(s) of the packet choose
 * the amounts, so one program covers good and bad cases. Used to compare test_run with Linux. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_push(struct xdp_md *ctx)
{
	__u8 *data = (void *)(long)ctx->data;
	__u32 *hdr;

	/* encapsulate only packets whose first byte is set */
	if ((void *)(data + 1) > (void *)(long)ctx->data_end || !data[0])
		return XDP_PASS;
	if (bpf_xdp_adjust_head(ctx, -8))
		return XDP_ABORTED;
	hdr = (void *)(long)ctx->data;
	if ((void *)(hdr + 2) > (void *)(long)ctx->data_end)
		return XDP_DROP;
	hdr[0] = 0xefbeadde;
	hdr[1] = ctx->data_end - ctx->data;
	return XDP_PASS;
}

SEC("xdp")
int xdp_pop(struct xdp_md *ctx)
{
	__u8 *data = (void *)(long)ctx->data;
	int n;

	if ((void *)(data + 2) > (void *)(long)ctx->data_end)
		return XDP_ABORTED;
	n = (short)(data[0] | data[1] << 8);
	if (bpf_xdp_adjust_head(ctx, n))
		return XDP_DROP;
	return XDP_PASS;
}

SEC("xdp")
int xdp_tail(struct xdp_md *ctx)
{
	__u8 *data = (void *)(long)ctx->data;
	int n;

	if ((void *)(data + 2) > (void *)(long)ctx->data_end)
		return XDP_ABORTED;
	n = (short)(data[0] | data[1] << 8);
	if (bpf_xdp_adjust_tail(ctx, n))
		return XDP_DROP;
	return XDP_PASS;
}

SEC("xdp")
int xdp_meta(struct xdp_md *ctx)
{
	__u8 *data = (void *)(long)ctx->data;
	__u32 *meta, *out;
	long r;
	int n;

	if ((void *)(data + 2) > (void *)(long)ctx->data_end)
		return XDP_ABORTED;
	n = (short)(data[0] | data[1] << 8);
	r = bpf_xdp_adjust_meta(ctx, n);
	out = (void *)(long)ctx->data;
	meta = (void *)(long)ctx->data_meta;
	if ((void *)(out + 2) > (void *)(long)ctx->data_end)
		return XDP_ABORTED;
	out[0] = (__u32)r;
	out[1] = ctx->data - ctx->data_meta;
	if ((void *)(meta + 1) <= (void *)out)
		*meta = 0x44332211;
	return XDP_PASS;
}

SEC("xdp")
int xdp_redir(struct xdp_md *ctx)
{
	__u8 *data = (void *)(long)ctx->data;

	if ((void *)(data + 2) > (void *)(long)ctx->data_end)
		return XDP_ABORTED;
	return bpf_redirect(data[0], data[1]);
}

SEC("tc")
int tc_bytes(struct __sk_buff *skb)
{
	__u8 mac[6], tail[4];
	long r1, r2, r3, r4;
	__u32 n;

	r1 = bpf_skb_load_bytes(skb, 0, mac, sizeof(mac));
	r2 = bpf_skb_store_bytes(skb, 6, mac, sizeof(mac), BPF_F_RECOMPUTE_CSUM);
	n = skb->len - 3;
	r3 = bpf_skb_load_bytes(skb, n, tail, sizeof(tail));
	r4 = bpf_skb_store_bytes(skb, 0, tail, 2, 4);
	skb->mark = (__u32)r3;
	if (r1 || r2 || r3 != -14 || r4 != -22 || tail[0] || tail[3])
		return TC_ACT_SHOT;
	if (!bpf_get_socket_cookie(skb))
		return TC_ACT_SHOT;
	return bpf_redirect(skb->len & 0xff, skb->len > 100 ? 2 : 1);
}


SEC("socket")
int sock_bytes(struct __sk_buff *skb)
{
	__u32 word = 0;

	/* socket filters see skb->data from the network header: returns bytes 0..3 of L3 */
	if (bpf_skb_load_bytes(skb, 0, &word, sizeof(word)))
		return 1;
	return word;
}

char _license[] SEC("license") = "GPL";
