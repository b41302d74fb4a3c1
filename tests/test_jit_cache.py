"""JIT code cache: hits skip LLVM, keys change with what shapes the code, bad entries recompile."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import pybpf.jit.program as program_module
from pybpf.isa import Instruction, assemble
from pybpf.jit import JitProgram
from pybpf.jit.cache import CodeCache, default_cache_dir
from pybpf.jit.compile import CompiledObject
from pybpf.memory import AddressSpace, Region
from test_jit import EXIT, I, needs_jit

pytestmark = needs_jit

def program() -> list[Instruction]:
    """Sums the first r2 bytes at r1 in a loop, adds helper 7 of the sum, then a map-like
    ``lddw`` value (resolved at load time: not part of the key)."""
    body = assemble(
        """
        r0 = 0
        r3 = 0
    loop:
        if r3 >= r2 goto done
        r4 = r1
        r4 += r3
        r5 = *(u8 *)(r4 + 0)
        r0 += r5
        r3 += 1
        goto loop
    done:
        r6 = r0
        r1 = r0
        call 7
        r0 += r6
        """
    )
    return body + [I.lddw(1, 7, src=1), I.add(0, "r1"), EXIT]


def resolver(value: int):
    return lambda insn, pc: value


def run(jit: JitProgram, data: bytes) -> int:
    with Region.from_bytes(data, kind="input") as region:
        return jit.run((region.address, region.size), memory=AddressSpace([region]))


def make(cache, value: int = 1000, **kw) -> JitProgram:
    return JitProgram(
        program(),
        entry_registers=(1, 2, 10),
        helpers={7: lambda ctx, r1, *rest: r1 * 2},
        lddw_resolver=resolver(value),
        cache=cache,
        **kw,
    )


def test_a_second_load_hits_and_skips_llvm(tmp_path, monkeypatch):
    cache = CodeCache(tmp_path)
    with make(cache) as cold:
        assert not cold.cache_hit and cache.stored == 1 and cache.misses == 1
        expected = run(cold, b"\x01\x02\x03")
    assert expected == 6 * 3 + 1000

    def no_llvm(*args, **kwargs):
        raise AssertionError("LLVM compiled on a cache hit")

    monkeypatch.setattr(program_module, "compile_object", no_llvm)
    monkeypatch.setattr(program_module, "lower_program", no_llvm)
    with make(CodeCache(tmp_path), value=5) as warm:  # another resolved value: same code
        assert warm.cache_hit
        assert run(warm, b"\x01\x02\x03") == 6 * 3 + 5
        assert "ret" in warm.assembly()
        assert warm.compile_seconds < 0.05


def test_keys_follow_what_shapes_the_code(tmp_path):
    cache = CodeCache(tmp_path)
    base = cache.key(program(), debug_checks=False, opt_level=2)
    assert base == CodeCache(tmp_path / "other").key(program(), debug_checks=False, opt_level=2)
    other_program = program()[:-1] + [I.mov(0, 1), EXIT]
    other_helper = [I.call(8) if i.is_call else i for i in program()]
    variants = {
        cache.key(program(), debug_checks=True, opt_level=2),
        cache.key(program(), debug_checks=False, opt_level=3),
        cache.key(other_program, debug_checks=False, opt_level=2),
        cache.key(other_helper, debug_checks=False, opt_level=2),
        cache.key(program(), debug_checks=False, opt_level=2, extra={"maps": [(1, 4, 8, 16)]}),
    }
    assert base not in variants and len(variants) == 5
    with make(cache) as a, make(cache, debug_checks=True) as b:
        assert not a.cache_hit and not b.cache_hit  # debug checks: another entry
    assert len(cache.entries()) == 2


def corruptions(data: bytes) -> dict[str, bytes]:
    middle = len(data) // 2
    return {
        "empty": b"",
        "truncated": data[: len(data) - 7],
        "flipped byte": data[:middle] + bytes([data[middle] ^ 0x40]) + data[middle + 1 :],
        "garbage": os.urandom(len(data)),
        "header only": data[:40],
    }


@pytest.mark.parametrize("kind", list(corruptions(b"x" * 100)))
def test_a_corrupted_entry_is_recompiled_never_loaded(tmp_path, kind):
    cache = CodeCache(tmp_path)
    with make(cache):
        pass
    (key,) = cache.entries()
    path = cache.path(key)
    path.write_bytes(corruptions(path.read_bytes())[kind])
    cache = CodeCache(tmp_path)
    with make(cache) as jit:
        assert not jit.cache_hit and cache.rejected == 1 and cache.stored == 1
        assert run(jit, b"\x05") == 15 + 1000
    with make(CodeCache(tmp_path)) as jit:  # rewritten: a hit again
        assert jit.cache_hit


def test_an_entry_under_another_key_is_refused(tmp_path):
    cache = CodeCache(tmp_path)
    with make(cache):
        pass
    (key,) = cache.entries()
    other = cache.key(program(), debug_checks=True, opt_level=2)
    cache.path(key).rename(cache.path(other))
    assert cache.load(other) is None and not cache.path(other).exists()


def test_entries_that_llvm_refuses_are_dropped(tmp_path, monkeypatch):
    from pybpf.errors import InternalError

    cache = CodeCache(tmp_path)
    with make(cache):
        pass

    def refuse(compiled):
        raise InternalError("cannot load")

    real = program_module.load_object
    calls = []

    def first_refuses(compiled):
        calls.append(compiled)
        return refuse(compiled) if len(calls) == 1 else real(compiled)

    monkeypatch.setattr(program_module, "load_object", first_refuses)
    with make(cache) as jit:
        assert not jit.cache_hit and cache.rejected == 1 and run(jit, b"") == 1000


def test_cache_directories_are_private_and_unusable_ones_just_miss(tmp_path, monkeypatch):
    monkeypatch.setenv("PYBPF_STATE", str(tmp_path / "state"))
    assert CodeCache().directory == default_cache_dir() == tmp_path / "state" / "jit-cache"
    with make(True) as jit:
        assert not jit.cache_hit and jit.cache.directory == default_cache_dir()
    if sys.platform != "win32":
        assert default_cache_dir().stat().st_mode & 0o077 == 0
        (tmp_path / "open").mkdir(mode=0o777)
        os.chmod(tmp_path / "open", 0o777)
        CodeCache(tmp_path / "open").store("0" * 64, CompiledObject(b"x", b"", 2))
        assert os.stat(tmp_path / "open").st_mode & 0o022 == 0  # made private first
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    cache = CodeCache(blocked)
    with make(cache) as jit:  # no cache possible: compiles, never raises
        assert not jit.cache_hit and cache.stored == 0 and run(jit, b"") == 1000


def test_a_fresh_process_hits_the_cache(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_jit_cache import make, run
        with make({str(tmp_path)!r}) as jit:
            print(jit.cache_hit, run(jit, b"\\x02"))
        """
    )
    out = [
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
        )
        for _ in range(2)
    ]
    assert [o.returncode for o in out] == [0, 0], [o.stderr for o in out]
    assert [o.stdout.split() for o in out] == [["False", "1006"], ["True", "1006"]]


# ---- size bound, the loader's default cache ---------------------------------------------------
def test_entries_beyond_the_size_bound_go_least_recently_used_first(tmp_path):
    first = CodeCache(tmp_path / "first")
    with make(first, 1) as jit:
        (key,) = first.entries()
        size = first.path(key).stat().st_size
        compiled = jit._code.compiled
    a, b, c = "a" * 64, "b" * 64, "c" * 64
    cache = CodeCache(tmp_path / "c", max_bytes=2 * size + size // 2)  # room for two
    cache.store(a, compiled)
    os.utime(cache.path(a), (100, 100))
    cache.store(b, compiled)
    os.utime(cache.path(b), (200, 200))
    assert cache.evicted == 0
    assert cache.load(a) is not None  # a hit: a is now the most recently used
    cache.store(c, compiled)
    assert cache.evicted == 1 and cache.entries() == [a, c]  # b went
    assert cache.size() <= cache.max_bytes
    tiny = CodeCache(tmp_path / "c", max_bytes=1)  # the entry just written always stays
    tiny.store(b, compiled)
    assert tiny.entries() == [b] and tiny.evicted == 2


def test_a_hit_makes_an_entry_recently_used(tmp_path):
    cache = CodeCache(tmp_path / "c")
    make(cache, 1).close()
    (key,) = cache.entries()
    os.utime(cache.path(key), (1000, 1000))
    with make(cache, 1) as jit:
        assert jit.cache_hit
    assert cache.path(key).stat().st_mtime > 1000


def _xdp_object():
    from pybpf.objects import Object
    from pybpf.progtypes import ProgType
    from pybpf.spec import ObjectSpec, ProgramSpec

    text = "r2 = *(u32 *)(r1 + 4)\nr1 = *(u32 *)(r1 + 0)\nr0 = r2\nr0 -= r1\nexit"
    prog = ProgramSpec("p", "xdp", tuple(assemble(text)), type=ProgType.XDP, license="GPL")
    return Object(ObjectSpec(name="t", programs={"p": prog}, license="GPL"))


def test_the_loader_caches_jit_code_in_the_state_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("PYBPF_STATE", str(tmp_path / "state"))
    monkeypatch.delenv("PYBPF_JIT_CACHE", raising=False)
    hits = []
    for _ in range(2):
        with _xdp_object().load(engine="jit") as obj:
            runner = obj.programs["p"]._runner
            hits.append(runner.cache_hit)
            assert obj.programs["p"].test_run(bytes(20)).retval == 20
    assert hits == [False, True]
    assert runner.cache.directory == tmp_path / "state" / "jit-cache"
    assert len(runner.cache.entries()) == 1


@pytest.mark.parametrize("value", ["0", "off", "no"])
def test_pybpf_jit_cache_0_turns_the_loaders_cache_off(tmp_path, monkeypatch, value):
    monkeypatch.setenv("PYBPF_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("PYBPF_JIT_CACHE", value)
    for _ in range(2):
        with _xdp_object().load(engine="jit") as obj:
            runner = obj.programs["p"]._runner
            assert runner.cache is None and not runner.cache_hit
    assert not (tmp_path / "state" / "jit-cache").exists()


def test_the_size_bound_comes_from_the_settings(tmp_path, monkeypatch):
    from pybpf.jit.cache import default_cache

    monkeypatch.setenv("PYBPF_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("PYBPF_JIT_CACHE_SIZE", "12345")
    cache = default_cache()
    assert cache is not None and cache.max_bytes == 12345
    assert default_cache() is cache
