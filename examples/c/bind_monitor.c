// SPDX-License-Identifier: MIT
/* Bind monitor, eBPF-for-Windows flavour (program type `bind`, context bind_md): limits how
 * many sockets each process may have bound. Per-process entries in `process_map` (keyed by
 * the context's process id) count binds and hold the first bytes of the app id (the
 * process image path); `limits_map[0]` is the limit (0 = no limit). BIND: deny when the
 * count has reached the limit, else count it; UNBIND: uncount; an entry whose count falls
 * to zero is deleted. As eBPF for Windows' own bindmonitor sample does. */
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

/* eBPF for Windows' ebpf_nethooks.h, written out (64-bit pointers). */
typedef enum _bind_operation {
	BIND_OPERATION_BIND,      /* entry to bind */
	BIND_OPERATION_POST_BIND, /* after port allocation */
	BIND_OPERATION_UNBIND,    /* release port */
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

#define APP_ID_BYTES 32

struct process_entry {
	__u64 count;
	__u8 name[APP_ID_BYTES];
};

struct {
	__uint(type, 1); /* BPF_MAP_TYPE_HASH (the same id in eBPF for Windows) */
	__type(key, __u64);
	__type(value, struct process_entry);
	__uint(max_entries, 1024);
} process_map SEC(".maps");

struct {
	__uint(type, 2); /* BPF_MAP_TYPE_ARRAY */
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} limits_map SEC(".maps");

static __always_inline struct process_entry *find_or_create_entry(bind_md_t *ctx)
{
	__u64 key = ctx->process_id;
	struct process_entry value = {};
	struct process_entry *entry = bpf_map_lookup_elem(&process_map, &key);

	if (entry || ctx->operation != BIND_OPERATION_BIND)
		return entry;
	__u8 *start = ctx->app_id_start, *end = ctx->app_id_end;
#pragma unroll
	for (int i = 0; i < APP_ID_BYTES; i++) {
		if (start + i + 1 > end)
			break;
		value.name[i] = start[i];
	}
	bpf_map_update_elem(&process_map, &key, &value, 0);
	return bpf_map_lookup_elem(&process_map, &key);
}

SEC("bind")
int bind_monitor(bind_md_t *ctx)
{
	__u32 limit_key = 0;
	__u32 *limit = bpf_map_lookup_elem(&limits_map, &limit_key);

	if (!limit || *limit == 0)
		return BIND_PERMIT;
	struct process_entry *entry = find_or_create_entry(ctx);
	if (!entry)
		return BIND_PERMIT;
	switch (ctx->operation) {
	case BIND_OPERATION_BIND:
		if (entry->count >= *limit)
			return BIND_DENY;
		entry->count++;
		break;
	case BIND_OPERATION_UNBIND:
		if (entry->count > 0)
			entry->count--;
		break;
	default:
		break;
	}
	if (entry->count == 0) {
		__u64 key = ctx->process_id;
		bpf_map_delete_elem(&process_map, &key);
	}
	return BIND_PERMIT;
}

char _license[] SEC("license") = "MIT";
