; ipv4_checksum.s: check the IPv4 header checksum of an Ethernet frame.
;
; Input: r1 = address of the frame, r2 = its length (pybpf exec --mem-file FRAME).
; Returns 0 when the header checksum is valid, the folded one's-complement sum of
; the header otherwise, and 0xffffffff when the frame is not a complete IPv4 frame.
        w0 = -1
        if r2 < 34 goto out             ; Ethernet (14) + minimal IPv4 header (20)
        r3 = *(u16 *)(r1 + 12)          ; EtherType, big endian on the wire
        r3 = be16 r3
        if r3 != 2048 goto out          ; 0x0800: IPv4
        r4 = *(u8 *)(r1 + 14)
        r4 &= 15
        r4 <<= 2                        ; IHL in bytes
        if r4 < 20 goto out
        r5 = r4
        r5 += 14
        if r5 > r2 goto out             ; header must fit in the frame
        r6 = r1
        r6 += 14                        ; header start
        r4 += r6                        ; header end
        r0 = 0
sum:
        r3 = *(u16 *)(r6 + 0)
        r3 = be16 r3
        r0 += r3
        r6 += 2
        if r6 < r4 goto sum
fold:
        r3 = r0
        r3 >>= 16
        r0 &= 65535
        r0 += r3
        r3 = r0
        r3 >>= 16
        if r3 != 0 goto fold
        r0 ^= 65535
out:
        exit
