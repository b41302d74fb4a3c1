// SPDX-License-Identifier: GPL-2.0
/* tc (sched_cls) context reader: copies what it sees of struct __sk_buff into the packet
 * from byte 14 on (one u32 each: len, pkt_type, mark, queue_mapping, protocol, vlan_present,
 * vlan_tci, vlan_proto, priority, ingress_ifindex, ifindex, tc_index, cb[0..4], hash,
 * tc_classid, napi_id, data_end - data, data - data_meta, wire_len, gso_segs, gso_size),
 * bumps mark, priority and cb[0], and returns the low 3 bits of byte 13 (TC_ACT_*).
 * Used to compare test_run with Linux. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#define NWORDS 25

SEC("tc")
int tc_ctx(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	void *meta = (void *)(long)skb->data_meta;
	__u32 *out = data + 14;
	int verdict;

	if (data + 14 + NWORDS * 4 > data_end)
		return TC_ACT_SHOT;
	verdict = ((__u8 *)data)[13] & 7;
	out[0] = skb->len;
	out[1] = skb->pkt_type;
	out[2] = skb->mark;
	out[3] = skb->queue_mapping;
	out[4] = skb->protocol;
	out[5] = skb->vlan_present;
	out[6] = skb->vlan_tci;
	out[7] = skb->vlan_proto;
	out[8] = skb->priority;
	out[9] = skb->ingress_ifindex;
	out[10] = skb->ifindex;
	out[11] = skb->tc_index;
	out[12] = skb->cb[0];
	out[13] = skb->cb[1];
	out[14] = skb->cb[2];
	out[15] = skb->cb[3];
	out[16] = skb->cb[4];
	out[17] = skb->hash;
	out[18] = skb->tc_classid;
	out[19] = skb->napi_id;
	out[20] = (__u32)(data_end - data);
	out[21] = (__u32)(data - meta);
	out[22] = skb->wire_len;
	out[23] = skb->gso_segs;
	out[24] = skb->gso_size;
	skb->mark += 1;
	skb->priority += 2;
	skb->cb[0] ^= 0xff;
	return verdict;
}

char _license[] SEC("license") = "GPL";
