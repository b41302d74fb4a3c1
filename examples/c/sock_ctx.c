// SPDX-License-Identifier: GPL-2.0
/* Socket filter context reader: stores what it sees of struct __sk_buff and of the packet
 * through legacy LD_ABS loads in cb[0..4] (len, protocol, pkt_type | ifindex << 8,
 * the first byte and half-word, the word at offset 12: all from the network header on,
 * as Linux's skb->data is for socket filters) and returns len + mark. Used to compare
 * test_run with Linux. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

unsigned long long load_byte(void *skb, unsigned long long off) asm("llvm.bpf.load.byte");
unsigned long long load_half(void *skb, unsigned long long off) asm("llvm.bpf.load.half");
unsigned long long load_word(void *skb, unsigned long long off) asm("llvm.bpf.load.word");

SEC("socket")
int sock_ctx(struct __sk_buff *skb)
{
	skb->cb[0] = skb->len;
	skb->cb[1] = skb->protocol;
	skb->cb[2] = skb->pkt_type | skb->ifindex << 8;
	skb->cb[3] = load_byte(skb, 0) | load_half(skb, 2) << 8;
	skb->cb[4] = load_word(skb, 12);
	return skb->len + skb->mark;
}

char _license[] SEC("license") = "GPL";
