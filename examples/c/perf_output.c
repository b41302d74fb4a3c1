// SPDX-License-Identifier: GPL-2.0
/* Perf event output (XDP): every packet sends one sample to the perf event array `events`
 * on the current CPU: a header (a running sequence number, the frame's length) followed by
 * the frame's first `snap` bytes (a .bss variable, at most 256; the kernel copies them from
 * the packet: BPF_F_CTXLEN_MASK). Samples that find no room are counted in `failed`.
 * `seq` counts without atomics (tests run one CPU at a time). Every packet passes. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct header {
	__u32 seq;
	__u32 len;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} events SEC(".maps");

__u32 snap = 0;
__u32 seq = 0;
__u64 failed = 0;

SEC("xdp")
int perf_sample(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct header h = { .seq = seq++, .len = data_end - data };
	__u64 n = snap;

	if (n > h.len)
		n = h.len;
	if (n > 256)
		n = 256;
	if (bpf_perf_event_output(ctx, &events, (n << 32) | BPF_F_CURRENT_CPU, &h, sizeof(h)))
		__sync_fetch_and_add(&failed, 1);
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
