// SPDX-License-Identifier: GPL-2.0
/* Bind monitor, Linux flavour: the `bind` sample (bind_monitor.c) with Linux's hooks.
 * Linux has no unbind hook, so `cgroup/bind4` counts binds and `cgroup/sock_release`
 * uncounts the sockets bind4 counted when they are released. Per-process counts in
 * `process_map`, keyed by the calling process id (the tgid); `limits_map[0]` is the
 * limit (0 = no limit). bind4 returns 0 (deny: bind() fails with EPERM) when the count
 * has reached the limit, else counts it, remembers the socket (by its cookie, with the
 * process it counts for) in `bound_sockets` and returns 1; sock_release forgets a
 * remembered socket and uncounts it; an entry whose count falls to zero is deleted.
 * (bpf_sock's src_port, which would tell a bound socket, is readable in post_bind only.) */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, __u64);
	__uint(max_entries, 1024);
} process_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} limits_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);   /* socket cookie */
	__type(value, __u64); /* the process id the bind was counted for */
	__uint(max_entries, 4096);
} bound_sockets SEC(".maps");

static __always_inline __u32 current_limit(void)
{
	__u32 key = 0;
	__u32 *limit = bpf_map_lookup_elem(&limits_map, &key);

	return limit ? *limit : 0;
}

SEC("cgroup/bind4")
int bind_monitor_bind4(struct bpf_sock_addr *ctx)
{
	__u32 limit = current_limit();
	__u64 key = bpf_get_current_pid_tgid() >> 32;
	__u64 cookie = bpf_get_socket_cookie(ctx);
	__u64 one = 1, *count;

	if (limit == 0)
		return 1;
	if (bpf_map_lookup_elem(&bound_sockets, &cookie))
		return 1; /* counted already (a second bind attempt fails in the kernel) */
	count = bpf_map_lookup_elem(&process_map, &key);
	if (count && *count >= limit)
		return 0;
	if (count)
		__sync_fetch_and_add(count, 1);
	else
		bpf_map_update_elem(&process_map, &key, &one, BPF_NOEXIST);
	bpf_map_update_elem(&bound_sockets, &cookie, &key, BPF_ANY);
	return 1;
}

SEC("cgroup/sock_release")
int bind_monitor_release(struct bpf_sock *sk)
{
	__u64 cookie = bpf_get_socket_cookie(sk);
	__u64 *owner = bpf_map_lookup_elem(&bound_sockets, &cookie);
	__u64 key, *count;

	if (!owner)
		return 1; /* never counted */
	key = *owner;
	bpf_map_delete_elem(&bound_sockets, &cookie);
	count = bpf_map_lookup_elem(&process_map, &key);
	if (!count)
		return 1;
	if (*count <= 1)
		bpf_map_delete_elem(&process_map, &key);
	else
		__sync_fetch_and_sub(count, 1);
	return 1;
}

char _license[] SEC("license") = "GPL";
