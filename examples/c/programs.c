// SPDX-License-Identifier: GPL-2.0
/* Many program types in one object, two programs in one section, a legacy version
 * section and a program that calls a subprogram living in another program's section. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("xdp")
int xdp_drop(struct xdp_md *ctx)
{
	return XDP_DROP;
}

SEC("tc")
int tc_ok(struct __sk_buff *skb)
{
	return skb->len > 64 ? 0 : 2;
}

SEC("socket")
int socket_all(struct __sk_buff *skb)
{
	return skb->len;
}

SEC("kprobe/do_sys_openat2")
int kprobe_open(void *ctx)
{
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_write")
int tp_write(void *ctx)
{
	return 0;
}

SEC("cgroup/bind4")
int bind4_allow(struct bpf_sock_addr *ctx)
{
	return ctx->user_port == bpf_htons(8080) ? 0 : 1;
}

SEC("cgroup_skb/egress")
int egress_allow(struct __sk_buff *skb)
{
	return 1;
}

__u32 _version SEC("version") = 0x050a00;
char _license[] SEC("license") = "Dual BSD/GPL";
