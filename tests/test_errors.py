"""The error hierarchy: locations as attributes, one-line messages, OSError compatibility."""

from __future__ import annotations

import errno

from pybpf.errors import DecodeError, InputError, MemoryAccessError, PybpfError, SyscallError


def test_location_prefixes_the_message():
    err = DecodeError("unknown opcode 0xff", field="opcode", value=0xFF, pc=3, offset=24)
    assert str(err) == "pc 3: offset 0x18: unknown opcode 0xff"
    assert isinstance(err, InputError) and isinstance(err, PybpfError)
    assert (err.pc, err.offset, err.field, err.value) == (3, 24, "opcode", 0xFF)


def test_memory_access_error_carries_the_access():
    err = MemoryAccessError("out of bounds", address=0x1000, size=4, access="read", pc=7)
    assert (err.address, err.size, err.access, err.pc) == (0x1000, 4, "read", 7)


def test_syscall_error_is_an_oserror_with_the_verifier_reason():
    log = (
        "0: R1=ctx() R10=fp0\n0: (85) call bpf_tail_call#12\n"
        "expected prog array map for tail callprocessed 3 insns (limit 1000000)\n"
    )
    err = SyscallError("BPF_PROG_LOAD", errno.EINVAL, log=log)
    assert isinstance(err, OSError) and err.errno == errno.EINVAL
    assert str(err).endswith(": expected prog array map for tail call")
    assert err.log == log and err.command == "BPF_PROG_LOAD"
    plain = SyscallError("BPF_MAP_LOOKUP_ELEM", errno.ENOENT)
    assert str(plain) == "BPF_MAP_LOOKUP_ELEM failed: ENOENT: No such file or directory"
