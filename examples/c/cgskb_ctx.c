// SPDX-License-Identifier: GPL-2.0
/* cgroup_skb context reader: stores what it sees of struct __sk_buff in cb[0..4] (len,
 * family, local_ip4, remote_ip4, first byte of the packet | data_end - data << 8) and
 * returns 1 (allow) unless the packet's first byte is 0x46. Used to compare test_run with
 * Linux, whose test runs give the program a socket made from the IP header. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("cgroup_skb/ingress")
int cgskb_ctx(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u32 first = 0;

	if (data + 1 <= data_end)
		first = *(__u8 *)data;
	skb->cb[0] = skb->len;
	skb->cb[1] = skb->family;
	skb->cb[2] = skb->local_ip4;
	skb->cb[3] = skb->remote_ip4;
	skb->cb[4] = first | (__u32)(data_end - data) << 8;
	return first != 0x46;
}

char _license[] SEC("license") = "GPL";
