// SPDX-License-Identifier: GPL-2.0
/* Externs: .kconfig values (strong and weak) and kernel symbols (__ksym). */
#include <stdbool.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

extern unsigned int LINUX_KERNEL_VERSION __kconfig;
extern int CONFIG_HZ __kconfig __weak;
extern bool CONFIG_BPF_SYSCALL __kconfig __weak;
extern const int bpf_prog_active __ksym;

__u64 result = 0;

SEC("kprobe/do_nanosleep")
int kconfig_probe(void *ctx)
{
	result = LINUX_KERNEL_VERSION + CONFIG_HZ + CONFIG_BPF_SYSCALL;
	result += (long)&bpf_prog_active;
	return 0;
}

char _license[] SEC("license") = "GPL";
