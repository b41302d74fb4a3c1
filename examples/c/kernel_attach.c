// SPDX-License-Identifier: GPL-2.0
/* Attach targets of the kernel backend: one program per hook kind, each counting its runs
 * into its own slot of `hits` (tests attach them, trigger the hook, and read the count).
 * Tracing programs count only the process whose tgid is the .bss variable `target_tgid`
 * (0: every process). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

enum { TP_GETPID, RAW_TP_SYS_ENTER, KPROBE_GETPID, UPROBE_GETPID, XDP_RX, CGROUP_SOCK,
       FENTRY_GETPID, TC_INGRESS, NSLOTS };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NSLOTS);
	__type(key, __u32);
	__type(value, __u64);
} hits SEC(".maps");

__u32 target_tgid = 0;

static __always_inline void count(__u32 slot)
{
	__u64 *value = bpf_map_lookup_elem(&hits, &slot);
	if (value)
		__sync_fetch_and_add(value, 1);
}

static __always_inline int ours(void)
{
	return !target_tgid || (bpf_get_current_pid_tgid() >> 32) == target_tgid;
}

SEC("tracepoint/syscalls/sys_enter_getpid")
int tp_getpid(void *ctx)
{
	if (ours())
		count(TP_GETPID);
	return 0;
}

SEC("raw_tracepoint/sys_enter")
int raw_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	if (ours())
		count(RAW_TP_SYS_ENTER);
	return 0;
}

SEC("kprobe/__x64_sys_getpid")
int kprobe_getpid(void *ctx)
{
	if (ours())
		count(KPROBE_GETPID);
	return 0;
}

SEC("uprobe")
int uprobe_getpid(void *ctx)
{
	if (ours())
		count(UPROBE_GETPID);
	return 0;
}

SEC("xdp")
int xdp_rx(struct xdp_md *ctx)
{
	count(XDP_RX);
	return XDP_PASS;
}

SEC("cgroup/sock_create")
int sock_create(struct bpf_sock *sk)
{
	count(CGROUP_SOCK);
	return 1;
}

SEC("fentry/__x64_sys_getpid")
int fentry_getpid(void *ctx)
{
	if (ours())
		count(FENTRY_GETPID);
	return 0;
}

SEC("tcx/ingress")
int tc_ingress(struct __sk_buff *skb)
{
	count(TC_INGRESS);
	return -1; /* TCX_NEXT */
}

char LICENSE[] SEC("license") = "GPL";
