// SPDX-License-Identifier: MIT
/* An eBPF-for-Windows `bind` policy beside the bind monitor (bind_monitor.c): binds to
 * port `config[0]` are redirected (BIND_REDIRECT) to port `config[1]`, binds to port
 * `config[2]` are denied; every call's operation and port are appended to `calls` (a
 * queue of (operation << 16 | port)). */
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

typedef enum _bind_operation {
	BIND_OPERATION_BIND,
	BIND_OPERATION_POST_BIND,
	BIND_OPERATION_UNBIND,
} bind_operation_t;

typedef struct _bind_md {
	__u8 *app_id_start;
	__u8 *app_id_end;
	__u64 process_id;
	__u8 socket_address[16];
	__u8 socket_address_length;
	bind_operation_t operation;
	__u8 protocol;
} bind_md_t;

typedef enum _bind_action {
	BIND_PERMIT,
	BIND_DENY,
	BIND_REDIRECT,
} bind_action_t;

struct {
	__uint(type, 2); /* BPF_MAP_TYPE_ARRAY */
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 3);
} config SEC(".maps");

struct {
	__uint(type, 2);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 16);
} calls SEC(".maps");

struct {
	__uint(type, 2);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} calls_len SEC(".maps");

static __always_inline __u32 cfg(__u32 key)
{
	__u32 *value = bpf_map_lookup_elem(&config, &key);

	return value ? *value : 0;
}

SEC("bind")
int bind_policy(bind_md_t *ctx)
{
	__u16 port = (__u16)ctx->socket_address[2] << 8 | ctx->socket_address[3];
	__u32 zero = 0, *len = bpf_map_lookup_elem(&calls_len, &zero);

	if (len && *len < 16) {
		__u32 at = *len, entry = (__u32)ctx->operation << 16 | port;
		bpf_map_update_elem(&calls, &at, &entry, 0);
		*len += 1;
	}
	if (ctx->operation != BIND_OPERATION_BIND)
		return BIND_PERMIT;
	if (port && port == cfg(2))
		return BIND_DENY;
	if (port && port == cfg(0)) {
		__u32 to = cfg(1);
		ctx->socket_address[2] = to >> 8;
		ctx->socket_address[3] = to & 0xff;
		return BIND_REDIRECT;
	}
	return BIND_PERMIT;
}

char _license[] SEC("license") = "MIT";
