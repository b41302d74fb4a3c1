// SPDX-License-Identifier: GPL-2.0
/* Built with -mcpu=v3 and -mcpu=v4 (clang-19) so that JMP32, atomics, sign-extending loads
 * and moves, signed division and unconditional byte swaps appear. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

__s64 total = 0;
__u64 flags = 0;

SEC("socket")
int newer_insns(struct __sk_buff *skb)
{
	__s8 small = (__s8)skb->mark;
	__s16 medium = (__s16)skb->priority;
	__s64 wide = small * medium;

#if __BPF_CPU_VERSION__ >= 4
	__s32 q = (__s32)skb->len;

	if (q != 0)
		wide = wide / q + wide % q; /* sdiv, smod: cpu v4 only */
#endif
	__sync_fetch_and_add(&total, wide);
	__sync_fetch_and_or(&flags, 1);
	__u64 old = __sync_val_compare_and_swap(&flags, 1, 2);
	return (int)__builtin_bswap32((__u32)(wide + old));
}

char _license[] SEC("license") = "GPL";
