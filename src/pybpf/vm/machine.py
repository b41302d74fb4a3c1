"""Machine: the interpreter's per-run state (registers, call frames, stack regions, caches).

One :class:`Machine` belongs to one compiled copy of a program (its closures capture the
machine's register list and caches). It is not re-entrant: the interpreter keeps a pool
and builds another machine when a run is already using this one (another thread, or a
helper that runs the program again).

Stack model (design.md): each call frame is its own 512-byte native region of kind
``"stack"``; r10 points to its end. A frame's region is in the run's address space only
while the frame is live, so underflowing a frame (``r10 - 520``) or touching a returned
callee's frame is a :class:`~pybpf.errors.MemoryAccessError`. Frames are zeroed on entry,
so runs are deterministic.
"""

from __future__ import annotations

from pybpf.errors import CallDepthError
from pybpf.isa.opcodes import MAX_CALL_DEPTH, MAY_GOTO_LOOPS, STACK_SIZE
from pybpf.memory import AddressSpace, Region
from pybpf.memory.space import EMPTY_CACHE
from pybpf.runtime import ExecutionContext

__all__ = ["Machine"]

_ZERO_FRAME = bytes(STACK_SIZE)


class Machine:
    """Registers, frames and caches of one run (see the module docstring)."""

    def __init__(self) -> None:
        self.R: list[int] = [0] * 11
        self.frames: list[tuple[int, int, int, int, int, int]] = []
        self.stacks: list[Region] = []
        self.rcache: list = list(EMPTY_CACHE)
        self.wcache: list = list(EMPTY_CACHE)
        self.space: AddressSpace = AddressSpace()
        self.ctx: ExecutionContext = ExecutionContext(self.space)
        self.may_goto = MAY_GOTO_LOOPS
        self.tail_calls = 0  # bpf_tail_call count of this run's chain (Linux's tail_call_cnt)

    # ---- frames ---------------------------------------------------------------------------
    def stack(self, depth: int) -> Region:
        """The (zeroed) stack region of frame ``depth`` (0 = the entry function)."""
        while len(self.stacks) <= depth:
            self.stacks.append(Region(STACK_SIZE, kind="stack", name=f"stack[{len(self.stacks)}]"))
        region = self.stacks[depth]
        region.view[:] = _ZERO_FRAME
        return region

    def push_frame(self, return_pc: int, pc: int) -> int:
        """Enter a local call made at ``pc``; returns the callee's r10."""
        depth = len(self.frames) + 1
        if depth >= MAX_CALL_DEPTH:
            raise CallDepthError(
                f"call depth exceeds {MAX_CALL_DEPTH} frames", depth=depth + 1, pc=pc
            )
        R = self.R
        self.frames.append((return_pc, R[6], R[7], R[8], R[9], R[10]))
        return self.space.add(self.stack(depth)).end

    def pop_frame(self) -> int:
        """Leave the current local call; restores r6-r10 and returns the return pc."""
        depth = len(self.frames)
        self.space.remove(self.stacks[depth])
        R = self.R
        ret, R[6], R[7], R[8], R[9], R[10] = self.frames.pop()
        return ret

    # ---- run setup / teardown ------------------------------------------------------------
    def begin(self, space: AddressSpace, args: tuple[int, ...]) -> None:
        """Prepare registers, frame 0 and caches for a run in ``space``."""
        self.space = space
        self.ctx.memory = space
        self.frames.clear()
        self.may_goto = MAY_GOTO_LOOPS
        self.tail_calls = 0
        R = self.R
        for i in range(11):
            R[i] = 0
        for i, value in enumerate(args, start=1):
            R[i] = value & 0xFFFFFFFFFFFFFFFF
        space.bind_cache(self.rcache, self.wcache)
        R[10] = space.add(self.stack(0)).end

    def end(self) -> None:
        """Remove this run's frames and caches from its address space."""
        space = self.space
        for region in self.stacks:
            space.remove(region)
        space.unbind_cache(self.rcache, self.wcache)
        self.frames.clear()

    def close(self) -> None:
        """Free the stack regions."""
        for region in self.stacks:
            region.close()
        self.stacks.clear()

    # ---- slow memory paths (the inline caches missed) -------------------------------------
    def read(self, address: int, size: int, pc: int, unpack) -> int:
        """Checked load of ``size`` bytes (fills the read cache)."""
        region, offset = self.space.resolve(address, size, "read", pc)
        return unpack(region.view, offset)[0]

    def write(self, address: int, size: int, pc: int, pack, value: int) -> None:
        """Checked store of ``size`` bytes (fills the write cache)."""
        region, offset = self.space.resolve(address, size, "write", pc)
        pack(region.view, offset, value)
