// SPDX-License-Identifier: GPL-2.0
/* XDP context reader: writes what it sees of struct xdp_md (ingress_ifindex, rx_queue_index,
 * packet length, metadata length) into the first 16 bytes of the packet, flips the first 4
 * bytes of the metadata when there are any, and returns the low 2 bits of byte 15 of the
 * packet as it came in (ABORTED, DROP, PASS or TX). Used to compare test_run with Linux. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_ctx(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	void *meta = (void *)(long)ctx->data_meta;
	__u32 *out = data;
	__u8 verdict;

	if (data + 16 > data_end)
		return XDP_ABORTED;
	verdict = ((__u8 *)data)[15] & 3;
	out[0] = ctx->ingress_ifindex;
	out[1] = ctx->rx_queue_index;
	out[2] = (__u32)(data_end - data);
	out[3] = (__u32)(data - meta);
	if (meta + 4 <= data)
		*(__u32 *)meta ^= 0xffffffff;
	return verdict;
}

char _license[] SEC("license") = "GPL";
