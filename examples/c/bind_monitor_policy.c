// SPDX-License-Identifier: GPL-2.0
/* Socket policies beside the bind monitor (bind_monitor_cgroup.c), one per Linux socket
 * hook, configured through `config[0]`: bind4/bind6/connect4/connect6 redirect port
 * `from_port` to `to_port` (connect4 also to 127.0.0.1) and deny `deny_port`;
 * post_bind4 denies a socket bound to `post_deny_port`; sock_create denies datagram
 * sockets when `deny_dgram` is set and gives stream sockets priority `priority`;
 * sock_release counts released sockets. Every program records the caller's
 * pid_tgid in `seen[hook]` (0 bind4, 1 bind6, 2 connect4, 3 connect6, 4 post_bind4,
 * 5 sock_create, 6 sock_release). Ports are in host byte order in `config`. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct config {
	__u32 from_port;
	__u32 to_port;
	__u32 deny_port;
	__u32 post_deny_port;
	__u32 deny_dgram;
	__u32 priority;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct config);
	__uint(max_entries, 1);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 8);
} seen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} released SEC(".maps");

static __always_inline struct config *note(__u32 hook)
{
	__u32 key = 0;
	__u64 id = bpf_get_current_pid_tgid();

	bpf_map_update_elem(&seen, &hook, &id, BPF_ANY);
	return bpf_map_lookup_elem(&config, &key);
}

static __always_inline int port_policy(struct bpf_sock_addr *ctx, struct config *cfg)
{
	__u16 port = bpf_ntohs(ctx->user_port);

	if (!cfg)
		return 1;
	if (cfg->deny_port && port == cfg->deny_port)
		return 0;
	if (cfg->from_port && port == cfg->from_port)
		ctx->user_port = bpf_htons(cfg->to_port);
	return 1;
}

SEC("cgroup/bind4")
int policy_bind4(struct bpf_sock_addr *ctx)
{
	return port_policy(ctx, note(0));
}

SEC("cgroup/bind6")
int policy_bind6(struct bpf_sock_addr *ctx)
{
	return port_policy(ctx, note(1));
}

SEC("cgroup/connect4")
int policy_connect4(struct bpf_sock_addr *ctx)
{
	struct config *cfg = note(2);
	__u16 port = bpf_ntohs(ctx->user_port);

	if (cfg && cfg->from_port && port == cfg->from_port)
		ctx->user_ip4 = bpf_htonl(0x7f000001);
	return port_policy(ctx, cfg);
}

SEC("cgroup/connect6")
int policy_connect6(struct bpf_sock_addr *ctx)
{
	return port_policy(ctx, note(3));
}

SEC("cgroup/post_bind4")
int policy_post_bind4(struct bpf_sock *sk)
{
	struct config *cfg = note(4);

	if (cfg && cfg->post_deny_port && sk->src_port == cfg->post_deny_port)
		return 0;
	return 1;
}

SEC("cgroup/sock_create")
int policy_sock_create(struct bpf_sock *sk)
{
	struct config *cfg = note(5);

	if (!cfg)
		return 1;
	if (cfg->deny_dgram && sk->type == 2 /* SOCK_DGRAM */)
		return 0;
	if (sk->type == 1 /* SOCK_STREAM */ && cfg->priority)
		sk->priority = cfg->priority;
	return 1;
}

SEC("cgroup/sock_release")
int policy_sock_release(struct bpf_sock *sk)
{
	__u32 key = 0;
	__u64 *count;

	note(6);
	count = bpf_map_lookup_elem(&released, &key);
	if (count)
		__sync_fetch_and_add(count, 1);
	return 1;
}

char _license[] SEC("license") = "GPL";
