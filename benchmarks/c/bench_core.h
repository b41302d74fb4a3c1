/* SPDX-License-Identifier: GPL-2.0
 * The computations of the benchmark suite, shared by the eBPF programs (bench.c, built with
 * clang -target bpf) and the native C build (native.c, cc -O2): each takes the packet
 * [p, end) and returns a u64. Inputs in the packet decide every trip count at run time
 * (LLVM would fold constant loops away); every loop has a constant bound the verifiers
 * can see. Little-endian packet fields: n = p[0] | p[1] << 8.
 */
#ifndef BENCH_CORE_H
#define BENCH_CORE_H

#ifdef __bpf__
#define CORE static __always_inline
#else
#include <stdint.h>
typedef uint8_t __u8;
typedef uint16_t __u16;
typedef uint32_t __u32;
typedef uint64_t __u64;
#define CORE static inline __attribute__((always_inline))
#endif

#define LOOP_MAX 4096
/* hides a value from the optimiser, so that the mask after it stays in the code (clang
 * drops a mask it can prove useless; the verifiers then lose the bound) */
#define OPAQUE(x) __asm__ volatile("" : "+r"(x))

CORE __u32 arg16(const __u8 *p, const __u8 *end)
{
	if (p + 2 > end)
		return 0;
	return p[0] | (__u32)p[1] << 8;
}

/* n iterations of a non-affine recurrence (no closed form for the optimiser) */
CORE __u64 sum_core(const __u8 *p, const __u8 *end)
{
	__u32 n = arg16(p, end);
	__u64 s = 0;
	for (__u32 i = 0; i < LOOP_MAX; i++) {
		if (i >= n)
			break;
		s += i ^ (s >> 7);
	}
	return s;
}

/* primes below n (n <= 512) by trial division with 64-bit modulo */
CORE __u64 prime_core(const __u8 *p, const __u8 *end)
{
	__u32 n = arg16(p, end);
	__u64 count = 0;
	for (__u64 k = 2; k < 512; k++) {
		if (k >= n)
			break;
		__u64 prime = 1;
		for (__u64 d = 2; d < 24; d++) {
			if (d * d > k)
				break;
			if (k % d == 0) {
				prime = 0;
				break;
			}
		}
		count += prime;
	}
	return count;
}

/* floor(log2(x)) of each u32 word after the 2-byte count, by shifting */
CORE __u64 ilog2_core(const __u8 *p, const __u8 *end)
{
	__u32 n = arg16(p, end);
	__u64 total = 0;
	for (__u32 i = 0; i < 64; i++) {
		const __u8 *w = p + 2 + 4 * (i & 63); /* the mask keeps the bound visible */
		if (i >= n || w + 4 > end)
			break;
		__u32 x = w[0] | (__u32)w[1] << 8 | (__u32)w[2] << 16 | (__u32)w[3] << 24;
		__u32 r = 0;
		for (int k = 0; k < 32; k++) {
			x >>= 1;
			if (!x)
				break;
			r++;
		}
		total += r;
	}
	return total;
}

/* copy n bytes (n <= 256) after the count into dst, byte by byte; a checksum of dst */
CORE __u64 copy_core(const __u8 *p, const __u8 *end, __u8 *dst)
{
	__u32 n = arg16(p, end);
	__u32 i;
	for (i = 0; i < 256; i++) {
		__u32 j = i;
		OPAQUE(j);
		j &= 255;
		if (i >= n || p + 3 + j > end)
			break;
		dst[j] = p[2 + j];
	}
	return i + dst[(n - 1) & 255] + dst[0];
}

/* strcmp of the NUL-terminated strings at p + 2 and p + 66 (64 bytes each at most) */
CORE __u64 compare_core(const __u8 *p, const __u8 *end)
{
	const __u8 *a = p + 2, *b = p + 66;
	for (int k = 0; k < 64; k++) {
		int i = k;
		OPAQUE(i);
		i &= 63;
		if (b + i + 1 > end)
			return 1000;
		__u8 x = a[i], y = b[i];
		if (x != y)
			return 256 + x - y;
		if (!x)
			return 0;
	}
	return 0;
}

/* the sum of every byte of the packet (512 at most) */
CORE __u64 byte_sum_core(const __u8 *p, const __u8 *end)
{
	__u64 s = 0;
	for (__u32 i = 0; i < 512; i++) {
		if (p + i + 1 > end)
			break;
		s += p[i];
	}
	return s;
}

/* a switch on each byte's low three bits (256 bytes at most) */
CORE __u64 branches_core(const __u8 *p, const __u8 *end)
{
	__u64 s = 0;
	for (__u32 i = 0; i < 256; i++) {
		if (p + i + 1 > end)
			break;
		__u8 b = p[i];
		switch (b & 7) {
		case 0: s += b; break;
		case 1: s ^= (__u64)b << 3; break;
		case 2: s -= b; break;
		case 3: s = (s << 1) | (b & 1); break;
		case 4: s += (__u64)b * 3; break;
		case 5: s >>= 1; break;
		case 6: s |= b; break;
		default: s += i; break;
		}
	}
	return s;
}

/* Ethernet/IPv4/UDP: 1 (XDP_DROP) for a UDP datagram with an empty payload, else 2 */
CORE __u64 parse_core(const __u8 *p, const __u8 *end)
{
	if (p + 14 > end)
		return 2;
	if (p[12] != 0x08 || p[13] != 0x00)
		return 2;
	const __u8 *ip = p + 14;
	if (ip + 20 > end)
		return 2;
	if (ip[9] != 17)
		return 2;
	const __u8 *udp = ip + ((ip[0] & 15) << 2);
	if (udp + 8 > end)
		return 2;
	__u32 len = (__u32)udp[4] << 8 | udp[5];
	return len == 8 ? 1 : 2;
}

#endif
