"""Fuzz programs: random eBPF programs shaped like real ones, for the verifier soundness fuzzer.

:func:`generate` turns a seed into a :class:`FuzzProgram`: an XDP or tc program in
llvm-objdump assembly that parses a packet (Ethernet, then an IP-like header whose length
comes from the packet), with bounds checks that are sometimes wrong (off by a few bytes,
against the wrong register, the branch the wrong way round), map lookups with and without
null checks and value accesses in and past the value, stack writes and reads (sometimes of
bytes never written), bounded and unbounded loops, static functions called with pointers to
the stack, ``bpf_loop`` callbacks handed a buffer of the caller's stack (read and written
in and past the buffer), pointer arithmetic with packet-derived numbers, context field
reads and writes, helpers that move the packet, and header pointers that may be NULL kept
across joins and helper calls. :meth:`FuzzProgram.object_spec` makes it an
:class:`~pybpf.spec.ObjectSpec` with its maps (``arr``: array, ``hash``: hash), ready for
``Object(spec).load()``. :func:`packets` gives the packets a program runs on: random bytes
and well-formed and broken Ethernet/IPv4/TCP frames of many lengths.

Everything is a pure function of the seed (``random.Random``), so a failure is replayed by
its seed, and the committed regression programs in ``tests/fixtures/verifier_fuzz`` are
just their text.
"""

from __future__ import annotations

import random
import re
import struct
from dataclasses import dataclass

from pybpf.isa import Instruction, assemble
from pybpf.maptypes import MapType
from pybpf.progtypes import ProgType
from pybpf.spec import MapSpec, ObjectSpec, ProgramSpec
from pybpf.spec.program import Reference, RefKind

__all__ = ["FuzzProgram", "generate", "packets", "MAPS", "from_text"]

# name -> (type, key size, value size, max entries); the magic lddw immediates name them.
MAPS: dict[str, tuple[MapType, int, int, int]] = {
    "arr": (MapType.ARRAY, 4, 16, 4),
    "hash": (MapType.HASH, 4, 8, 8),
}
_MAGIC = {name: 0x5EED0000 + i for i, name in enumerate(MAPS)}
_BY_MAGIC = {v: k for k, v in _MAGIC.items()}
_FUNC_MAGIC = 0x5EEF0000  # + n: the address of callback ``cb<n>``

# Context field offsets (Linux UAPI) of the two program types generated.
_CTX = {
    ProgType.XDP: {"data": 0, "data_end": 4, "scalars": [12, 16, 20], "writable": [], "size": 24},
    ProgType.SCHED_CLS: {
        "data": 76,
        "data_end": 80,
        "scalars": [0, 4, 8, 16, 36, 40, 48, 52, 68],
        "writable": [8, 12, 32, 44, 48, 52, 56, 60, 64],
        "size": 192,
    },
}


@dataclass(frozen=True)
class FuzzProgram:
    """One generated program: its type and its assembly text (maps named by magic ``lddw``)."""

    seed: int
    prog_type: ProgType
    text: str

    def parts(self) -> list[tuple[str, str]]:
        """``(name, text)`` of the program (``prog``) and of each callback, which follow it
        after a ``; callback NAME`` line."""
        out = [("prog", [])]
        for line in self.text.splitlines():
            if line.startswith("; callback "):
                out.append((line.split()[2], []))
            else:
                out[-1][1].append(line)
        return [(name, "\n".join(lines)) for name, lines in out]

    @staticmethod
    def instructions(text: str) -> tuple[list[Instruction], list[Reference]]:
        """Assembled ``text``, and a map or callback reference for each magic ``lddw``."""
        insns = assemble(text)
        refs: list[Reference] = []
        out: list[Instruction] = []
        pc = 0
        for insn in insns:
            if insn.is_lddw and insn.src == 0 and insn.imm64 in _BY_MAGIC:
                refs.append(Reference(pc, RefKind.MAP, _BY_MAGIC[insn.imm64]))
                insn = Instruction(code=insn.code, dst=insn.dst, src=0, imm=0, imm_hi=0)
            elif insn.is_lddw and insn.src == 0 and insn.imm64 >> 16 == _FUNC_MAGIC >> 16:
                refs.append(Reference(pc, RefKind.FUNC_ADDR, f"cb{insn.imm64 & 0xFFFF}"))
                insn = Instruction(code=insn.code, dst=insn.dst, src=0, imm=0, imm_hi=0)
            out.append(insn)
            pc += insn.slots
        return out, refs

    def object_spec(self) -> ObjectSpec:
        """An object with this program (``prog``), its callbacks and both maps."""
        section = "xdp" if self.prog_type == ProgType.XDP else "tc"
        programs = {}
        for name, text in self.parts():
            insns, refs = self.instructions(text)
            if name == "prog":
                programs[name] = ProgramSpec(
                    name, section, tuple(insns), references=tuple(refs), type=self.prog_type
                )
            else:
                programs[name] = ProgramSpec(
                    name,
                    ".text",
                    tuple(insns),
                    references=tuple(refs),
                    subprogram=True,
                    global_function=False,
                )
        maps = {name: MapSpec(name, t, k, v, n) for name, (t, k, v, n) in MAPS.items()}
        return ObjectSpec(name=f"fuzz{self.seed}", programs=programs, maps=maps, license="GPL")


def from_text(text: str, prog_type: ProgType = ProgType.XDP, seed: int = -1) -> FuzzProgram:
    """A fuzz program from its text (the regression fixtures)."""
    return FuzzProgram(seed, prog_type, text)


class _Gen:
    """Builds one program's lines; labels are unique per program."""

    def __init__(self, rng: random.Random, prog_type: ProgType) -> None:
        self.rng = rng
        self.t = prog_type
        self.ctx = _CTX[prog_type]
        self.lines: list[str] = []
        self.functions: list[list[str]] = []
        self.callbacks: list[list[str]] = []
        self.n = 0

    def label(self) -> str:
        self.n += 1
        return f"L{self.n}"

    def maybe(self, p: float) -> bool:
        return self.rng.random() < p

    def off_by(self) -> int:
        """Usually 0, sometimes a small error (the bugs real programs have)."""
        return 0 if self.maybe(0.8) else self.rng.choice([-2, -1, 1, 2, 4, 8])

    def emit(self, *lines: str) -> None:
        self.lines.extend(lines)

    # ---- pieces ------------------------------------------------------------------------
    def reload_packet(self) -> None:
        d, e = self.ctx["data"], self.ctx["data_end"]
        self.emit(f"r7 = *(u32 *)(r6 + {d})", f"r8 = *(u32 *)(r6 + {e})")

    def guard(self, base: str, k: int, fail: str) -> None:
        """``if base + k > data_end goto fail`` (sometimes subtly wrong)."""
        rng = self.rng
        bad = self.maybe(0.15)
        self.emit("r2 = " + base, f"r2 += {k + (self.off_by() if bad else 0)}")
        if bad and self.maybe(0.3):
            self.emit(f"if r2 < r8 goto {fail}")  # the wrong way round
        elif bad and self.maybe(0.3):
            self.emit(f"if r2 > r7 goto {fail}")  # against the start, not the end
        else:
            self.emit(f"if r2 {rng.choice(['>', '>', 's>'])} r8 goto {fail}")

    def packet_read(self, fail: str) -> None:
        rng = self.rng
        k = rng.choice([1, 2, 4, 8, 14, 20, 34, 54])
        width = rng.choice([1, 2, 4, 8])
        off = rng.randrange(0, max(1, k - width + 1)) + self.off_by()
        self.guard("r7", k, fail)
        dst = rng.choice(["r3", "r4", "r5", "r0"])
        self.emit(f"{dst} = *(u{8 * width} *)(r7 + {off})")
        if self.maybe(0.2):
            self.emit(f"*(u{8 * width} *)(r7 + {off}) = {rng.choice(['r3', '1', '0'])}")

    def header_length(self, fail: str) -> None:
        """An IPv4-style variable header length from the packet, then a read past it."""
        rng = self.rng
        self.guard("r7", 15, fail)
        self.emit("r3 = *(u8 *)(r7 + 14)")
        if not self.maybe(0.1):
            self.emit(f"r3 &= {rng.choice([15, 15, 63, 255])}")
        self.emit("r3 <<= 2")
        if self.maybe(0.5):
            self.emit(f"if r3 < {rng.choice([20, 20, 8])} goto {fail}")
        self.emit("r4 = r7", "r4 += 14", "r4 += r3")
        k = rng.choice([1, 2, 4, 8])
        self.emit("r5 = r4", f"r5 += {k + self.off_by()}")
        if not self.maybe(0.08):
            self.emit(f"if r5 > r8 goto {fail}")
        width = rng.choice([w for w in (1, 2, 4, 8) if w <= k] or [1])
        self.emit(f"r0 = *(u{8 * width} *)(r4 + {max(0, k - width + self.off_by())})")

    def map_lookup(self, fail: str) -> None:
        rng = self.rng
        name = rng.choice(list(MAPS))
        _, key_size, value_size, entries = MAPS[name]
        key = rng.choice([0, 1, entries - 1, entries, 7])
        slot = rng.choice([4, 8, 16])
        if self.maybe(0.9):
            self.emit(f"*(u32 *)(r10 - {slot}) = {key}")
        self.emit("r2 = r10", f"r2 += -{slot}")
        self.emit(f"r1 = {_MAGIC[name]:#x} ll", "call 1")
        if not self.maybe(0.12):
            self.emit(f"if r0 {rng.choice(['==', '==', '<='])} 0 goto {fail}")
        width = rng.choice([1, 2, 4, 8])
        off = rng.choice([0, value_size - width]) + self.off_by()
        if self.maybe(0.3):  # a variable index into the value
            self.emit(f"r3 = *(u32 *)(r10 - {slot})" if self.maybe(0.5) else "r3 = 3")
            self.emit(f"r3 &= {rng.choice([3, 7, 15])}", "r0 += r3")
        op = rng.randrange(4)
        if op == 0:
            self.emit(f"r3 = *(u{8 * width} *)(r0 + {off})")
        elif op == 1:
            self.emit(f"*(u{8 * width} *)(r0 + {off}) = {rng.choice(['1', 'r7', 'r3'])}")
        elif op == 2 and width in (4, 8):
            self.emit("r3 = 1", f"lock *(u{8 * width} *)(r0 + {off}) += r3")
        else:
            self.emit(
                f"r3 = *(u{8 * width} *)(r0 + {off})",
                "r3 += 1",
                f"*(u{8 * width} *)(r0 + {off}) = r3",
            )

    def map_update(self) -> None:
        rng = self.rng
        name = rng.choice(list(MAPS))
        _, _, value_size, entries = MAPS[name]
        self.emit(f"*(u32 *)(r10 - 4) = {rng.choice([0, 1, entries])}")
        for off in range(8, 8 + value_size, 8):
            if not self.maybe(0.05):
                self.emit(f"*(u64 *)(r10 - {off + 8}) = {rng.randrange(100)}")
        self.emit("r2 = r10", "r2 += -4", "r3 = r10", f"r3 += -{8 + value_size}")
        self.emit(f"r1 = {_MAGIC[name]:#x} ll", "r4 = 0", "call 2")

    def stack(self) -> None:
        rng = self.rng
        width = rng.choice([1, 2, 4, 8])
        off = rng.choice([8, 16, 24, 32, 40, 64, 256, 512]) + self.off_by()
        if self.maybe(0.85):
            self.emit(f"*(u{8 * width} *)(r10 - {off}) = {rng.choice(['r7', 'r3', '42', 'r0'])}")
        rw = rng.choice([w for w in (1, 2, 4, 8) if w <= width] + [8])
        roff = off - rng.choice([0, 0, 0, 1, 4])
        self.emit(f"r3 = *(u{8 * rw} *)(r10 - {roff})")
        if self.maybe(0.3):  # through a derived stack pointer and a variable index
            self.emit("r4 = r10", f"r4 += -{off}", "r5 = r3", f"r5 &= {rng.choice([3, 7, 255])}")
            self.emit("r4 += r5", "r3 = *(u8 *)(r4 + 0)")

    def loop(self, fail: str) -> None:
        rng = self.rng
        head, done = self.label(), self.label()
        n = rng.choice([4, 16, 64])
        if self.maybe(0.5):  # walk the packet byte by byte
            self.emit("r9 = 0", f"{head}:", "r2 = r7", "r2 += r9", "r3 = r2", "r3 += 1")
            self.emit(f"if r3 > r8 goto {done}" if not self.maybe(0.08) else "r3 = 0")
            self.emit("r0 = *(u8 *)(r2 + 0)")
            self.emit(f"r9 += {rng.choice([1, 1, 2])}" if not self.maybe(0.06) else "r9 += 0")
            self.emit(f"if r9 {rng.choice(['<', '<', '!=', '<='])} {n} goto {head}", f"{done}:")
        else:  # sum stack words
            self.emit("*(u64 *)(r10 - 8) = 0", "r9 = 0", "r0 = 0", f"{head}:")
            self.emit("r2 = r10", "r2 += -8", "r3 = *(u64 *)(r2 + 0)", "r0 += r3")
            self.emit(f"r9 += {1 if not self.maybe(0.06) else 0}")
            self.emit(f"if r9 < {n} goto {head}")

    def call_function(self) -> None:
        rng = self.rng
        name = f"fn{len(self.functions)}"
        size = rng.choice([8, 16, 32])
        for off in range(0, size, 8):
            if not self.maybe(0.1):
                self.emit(f"*(u64 *)(r10 - {size - off}) = {off}")
        self.emit("r1 = r10", f"r1 += -{size}", f"r2 = {size}", f"call {name}")
        body = [f"{name}:"]
        width = rng.choice([1, 4, 8])
        off = rng.choice([0, size - width]) + self.off_by()
        body.append(f"r0 = *(u{8 * width} *)(r1 + {off})")
        if self.maybe(0.4):
            body += [
                "r3 = r0",
                f"r3 &= {rng.choice([7, 15, 31])}",
                "r1 += r3",
                "r0 = *(u8 *)(r1 + 0)",
            ]
        if self.maybe(0.15):  # the caller's pointer moved down, maybe out of its frame
            body += [f"r1 += -{rng.choice([8, 480, 504, 600])}", "*(u64 *)(r1 + 0) = r0"]
        if self.maybe(0.3):
            body.append(f"*(u64 *)(r10 - {rng.choice([8, 16])}) = r0")  # callee's own frame
            body.append(f"r0 = *(u64 *)(r10 - {rng.choice([8, 16])})")
        body.append("exit")
        self.functions.append(body)

    def pointer_arith(self, fail: str) -> None:
        rng = self.rng
        self.guard("r7", 16, fail)
        self.emit("r3 = *(u16 *)(r7 + 12)")
        if self.maybe(0.7):
            self.emit(f"r3 &= {rng.choice([15, 31, 1023])}")
        self.emit("r4 = r7", rng.choice(["r4 += r3", "r4 += r3", "r4 -= r3"]))
        self.emit("r5 = r4", f"r5 += {rng.choice([2, 4])}")
        if not self.maybe(0.1):
            self.emit(f"if r5 > r8 goto {fail}")
        self.emit("r0 = *(u16 *)(r4 + 0)")

    def packet_or_null(self, fail: str) -> None:
        """A header pointer or NULL (``p = ok ? data + h : NULL``) kept across a join and
        sometimes a helper call (one that keeps packet pointers, or one that moves the
        packet), then read after a null test that is sometimes missing."""
        rng = self.rng
        skip, done = self.label(), self.label()
        h, k = rng.choice([0, 14, 20]), rng.choice([14, 20, 34, 54])
        self.emit("r9 = 0")
        self.guard("r7", k, skip)
        self.emit("r9 = r7", f"r9 += {h}", f"{skip}:")
        helper = rng.random()
        if helper < 0.3:
            self.emit("call 5", "r0 = 0", "r3 = 0", "r4 = 0", "r5 = 0")  # bpf_ktime_get_ns
        elif helper < 0.4:
            self.move_packet()
        if not self.maybe(0.1):
            self.emit(f"if r9 == 0 goto {done}")
        width = rng.choice([1, 2, 4])
        off = rng.randrange(0, max(1, k - h - width + 1)) + self.off_by()
        self.emit(f"r0 = *(u{8 * width} *)(r9 + {off})", f"{done}:")

    def ctx_access(self) -> None:
        rng = self.rng
        if self.maybe(0.7):
            off = rng.choice(self.ctx["scalars"])
            width = 4 if self.maybe(0.8) else rng.choice([1, 2, 8])
            self.emit(
                f"r3 = *(u{8 * width} *)(r6 + {off + (self.off_by() if self.maybe(0.2) else 0)})"
            )
        else:
            offs = self.ctx["writable"] or [0]
            self.emit(f"*(u32 *)(r6 + {rng.choice(offs)}) = r3")

    def move_packet(self) -> None:
        if self.t == ProgType.XDP:
            self.emit("r1 = r6", f"r2 = {self.rng.choice([0, 4, -4])}", "call 44")
        else:
            self.emit("*(u64 *)(r10 - 8) = 0", "r1 = r6", f"r2 = {self.rng.choice([0, 12, 60])}")
            self.emit("r3 = r10", "r3 += -8", "r4 = 2", "r5 = 0", "call 9")
        if not self.maybe(0.15):
            self.reload_packet()

    def arith(self) -> None:
        rng = self.rng
        r = rng.choice(["r0", "r3", "r4", "r5"])
        self.emit(
            rng.choice(
                [
                    f"{r} = {rng.randrange(-5, 300)}",
                    f"{r} += r3",
                    f"{r} *= 3",
                    f"w{r[1:]} = w3",
                    f"{r} >>= 1",
                    f"{r} ^= 0x55",
                ]
            )
        )

    def length_check(self, fail: str) -> None:
        """``len = data_end - data`` compared (64 or 32 bits), then a read near the end."""
        rng = self.rng
        k = rng.choice([1, 2, 4, 14, 34])
        w = rng.choice(["r", "w"])
        self.emit("r2 = r8", "r2 -= r7")
        self.emit(f"if {w}2 {rng.choice(['<', '<', 's<', '<='])} {k + self.off_by()} goto {fail}")
        if self.maybe(0.5):
            width = rng.choice([w2 for w2 in (1, 2, 4) if w2 <= k] or [1])
            self.emit(f"r0 = *(u{8 * width} *)(r7 + {k - width + self.off_by()})")
        else:  # the last byte, through the length
            self.emit("r4 = r7", "r4 += r2", f"r0 = *(u8 *)(r4 - {1 + self.off_by()})")

    def signed_offset(self, fail: str) -> None:
        """A sign-extended packet byte used as an offset (negative unless checked)."""
        rng = self.rng
        self.guard("r7", 2, fail)
        self.emit(f"r3 = *({rng.choice(['s8', 'u8', 's8'])} *)(r7 + 1)")
        if self.maybe(0.5):
            self.emit(f"if r3 s< {rng.choice([0, 0, -1])} goto {fail}")
        if self.maybe(0.5):
            self.emit(f"if r3 {rng.choice(['>', 's>'])} {rng.choice([20, 100])} goto {fail}")
        self.emit("r4 = r7", "r4 += r3", "r5 = r4", "r5 += 2")
        self.emit(f"if r5 > r8 goto {fail}", "r0 = *(u16 *)(r4 + 0)")

    def spill(self, fail: str) -> None:
        """A packet pointer spilled to the stack, maybe clobbered, reloaded and used."""
        rng = self.rng
        off = rng.choice([16, 24, 48])
        self.guard("r7", 8, fail)
        self.emit(f"*(u64 *)(r10 - {off}) = r7")
        if self.maybe(0.25):
            self.emit(f"*(u{rng.choice([8, 32])} *)(r10 - {off - rng.choice([0, 4])}) = 0")
        if self.maybe(0.2):
            self.emit(f"*(u64 *)(r10 - {off}) = r8")
        self.emit(f"r2 = *(u64 *)(r10 - {off})", "r0 = *(u32 *)(r2 + 4)")

    def truncate(self, fail: str) -> None:
        """A 32-bit operation on a number that then offsets a pointer."""
        rng = self.rng
        self.guard("r7", 8, fail)
        self.emit("r3 = *(u32 *)(r7 + 0)", rng.choice(["w3 += 7", "w3 = w3", "w3 *= 3", "w3 -= 1"]))
        self.emit(rng.choice(["r3 &= 7", "w3 &= 7", "r3 %= 7", "r3 >>= 29", "w3 /= 0x2000000"]))
        self.emit("r4 = r7", "r4 += r3", f"r0 = *(u8 *)(r4 + {rng.choice([0, 0, 1])})")

    def countdown(self) -> None:
        """A loop whose trip count is a packet-controlled number."""
        rng = self.rng
        head = self.label()
        self.emit(f"r9 = *(u32 *)(r6 + {rng.choice(self.ctx['scalars'])})")
        self.emit(f"r9 &= {rng.choice([7, 63, 255])}" if not self.maybe(0.1) else "r9 |= 1")
        done = self.label()
        self.emit("r0 = 0", f"if r9 == 0 goto {done}" if not self.maybe(0.1) else "r0 = 0")
        self.emit(f"{head}:", "r0 += 3")
        self.emit(f"{rng.choice(['r9 -= 1', 'r9 -= 1', 'r9 >>= 1'])}", f"if r9 != 0 goto {head}")
        self.emit(f"{done}:")

    def skb_load(self) -> None:
        """``skb_load_bytes`` into the stack with a packet-derived length (tc only)."""
        rng = self.rng
        if self.t != ProgType.SCHED_CLS:
            return self.stack()
        size = rng.choice([8, 16])
        self.emit(
            "r4 = *(u32 *)(r6 + 0)", f"r4 &= {rng.choice([size - 1, size - 1, 2 * size - 1])}"
        )
        if self.maybe(0.6):
            self.emit("r4 += 1")
        self.emit("r1 = r6", f"r2 = {rng.choice([0, 14])}", "r3 = r10", f"r3 += -{size}")
        self.emit("call 26", f"r0 = *(u8 *)(r10 - {size})")
        return None

    def meta(self, fail: str) -> None:
        """XDP metadata: grow it, then read it against ``data`` (checked or not)."""
        if self.t != ProgType.XDP:
            return self.packet_read(fail)
        self.emit("r1 = r6", f"r2 = {self.rng.choice([-4, -8])}", "call 54")
        self.emit(f"if r0 != 0 goto {fail}")
        self.emit("r9 = *(u32 *)(r6 + 8)", "r7 = *(u32 *)(r6 + 0)", "r8 = *(u32 *)(r6 + 4)")
        self.emit("r2 = r9", f"r2 += {4 + self.off_by()}")
        if not self.maybe(0.1):
            self.emit(f"if r2 > r7 goto {fail}")
        self.emit("r0 = *(u32 *)(r9 + 0)")
        return None

    def loop_callback(self) -> None:
        """``bpf_loop`` with a callback reading and writing a caller's stack buffer (its
        ``callback_ctx``, sometimes past the buffer), or with no ctx, returning 0/1 (or not)."""
        rng = self.rng
        k = len(self.callbacks)
        size = rng.choice([8, 16, 32])
        with_ctx = self.maybe(0.7)
        if with_ctx:
            for off in range(0, size, 8):
                if not self.maybe(0.1):
                    self.emit(f"*(u64 *)(r10 - {size - off}) = {off}")
        self.emit(f"r1 = {rng.choice([1, 3, 16])}", f"r2 = {_FUNC_MAGIC + k:#x} ll")
        self.emit("r3 = r10", f"r3 += -{size}") if with_ctx else self.emit("r3 = 0")
        self.emit("r4 = 0", "call 181")
        if with_ctx:
            self.emit(f"r3 = *(u64 *)(r10 - {size})", "r0 += r3")
        body = [f"; callback cb{k}"]
        if with_ctx and self.maybe(0.8):
            off = rng.choice([0, size - 8, size - 8, size, 4])
            body += [f"r3 = *(u64 *)(r2 + {off})", "r3 += r1", f"*(u64 *)(r2 + {off}) = r3"]
        elif self.maybe(0.3):
            body += ["r3 = *(u64 *)(r2 + 0)"]  # NULL ctx
        if self.maybe(0.3):
            body += [f"*(u64 *)(r10 - {rng.choice([8, 16])}) = r1", "r4 = *(u64 *)(r10 - 8)"]
        body += [rng.choice(["r0 = 0", "r0 = 1", "r0 = r1\nr0 &= 1", "r0 = 2"]), "exit"]
        self.callbacks.append(body)

    def build(self) -> str:
        rng = self.rng
        out = "Lout"
        self.emit("r6 = r1", "r3 = 0", "r4 = 0", "r5 = 0", "r0 = 0")
        self.reload_packet()
        pieces = [
            (self.packet_read, 5),
            (self.header_length, 2),
            (self.map_lookup, 4),
            (self.map_update, 1),
            (self.stack, 3),
            (self.loop, 2),
            (self.call_function, 2),
            (self.pointer_arith, 2),
            (self.ctx_access, 2),
            (self.move_packet, 1),
            (self.arith, 2),
            (self.length_check, 2),
            (self.signed_offset, 2),
            (self.spill, 2),
            (self.truncate, 2),
            (self.countdown, 1),
            (self.skb_load, 1),
            (self.meta, 1),
            (self.loop_callback, 2),
            (self.packet_or_null, 2),
        ]
        funcs = [f for f, w in pieces for _ in range(w)]
        for _ in range(rng.randrange(2, 7)):
            piece = rng.choice(funcs)
            if piece in (
                self.stack,
                self.map_update,
                self.call_function,
                self.ctx_access,
                self.move_packet,
                self.arith,
                self.countdown,
                self.skb_load,
                self.loop_callback,
            ):
                piece()
            else:
                piece(out)
        self.emit(f"r0 = {rng.choice([1, 2, 2, 3])}", "exit", f"{out}:", "r0 = 1", "exit")
        for body in self.functions:
            self.lines.extend(body)
        for body in self.callbacks:
            self.lines.extend(body)
        return _normalise("\n".join(self.lines))


def _normalise(text: str) -> str:
    """``(r0 + -1)`` -> ``(r0 - 1)``, ``(r10 - -2)`` -> ``(r10 + 2)`` (the assembler's forms)."""
    text = re.sub(r"\+ -(\d+)\)", r"- \1)", text)
    return re.sub(r"- -(\d+)\)", r"+ \1)", text)


def generate(seed: int) -> FuzzProgram:
    """The program of ``seed``."""
    rng = random.Random(seed)
    prog_type = ProgType.XDP if rng.random() < 0.7 else ProgType.SCHED_CLS
    return FuzzProgram(seed, prog_type, _Gen(rng, prog_type).build())


def _frame(rng: random.Random, length: int) -> bytes:
    ihl = rng.choice([5, 5, 6, 15, 0, 3])
    eth = bytes(12) + b"\x08\x00"
    ip = (
        bytes([0x40 | ihl, 0])
        + struct.pack(">H", length)
        + bytes(rng.randrange(256) for _ in range(16))
    )
    tcp = bytes(rng.randrange(256) for _ in range(40))
    return (eth + ip + tcp + bytes(rng.randrange(256) for _ in range(length)))[:length]


def packets(seed: int, count: int) -> list[bytes]:
    """``count`` packets (at least 14 bytes, the Ethernet header Linux's test run needs)."""
    rng = random.Random(seed ^ 0xA5A5)
    lengths = [14, 15, 16, 20, 33, 34, 35, 54, 60, 64, 100, 128, 1500]
    out = []
    for i in range(count):
        length = lengths[i % len(lengths)] if i < len(lengths) else rng.choice(lengths)
        if rng.random() < 0.5:
            out.append(_frame(rng, length))
        else:
            out.append(bytes(rng.randrange(256) for _ in range(length)))
    return out
