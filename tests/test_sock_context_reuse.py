"""Socket-program test runs on kept regions (objects.sock_context.ReusedSockContext).

A sequence of ``test_run`` calls of a ``bpf_sock_addr``, ``bpf_sock`` or ``bind_md``
program on kept, reset regions must give what the same sequence gives when every call
prepares fresh regions (``prog._sock_reusable = False``: the reference path): retval,
``data_out``, ``ctx_out``, errors and the maps, in the interpreter and the JIT. The
sequences rerun inputs after the program wrote its context, change ``ctx_in``/``data_in``
between calls, pass bad arguments, and bind socket cookies as the hooks do.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import pybpf
from pybpf.errors import InputError
from pybpf.objects.sock_context import (
    BindContext,
    ReusedSockContext,
    SockAddrContext,
    SockContext,
    socket_cookie,
    uapi_pack,
    windows_sockaddr,
)
from pybpf.progtypes.contexts import LAYOUTS, SOCK_LAYOUT, FieldKind
from pybpf.runtime.packet import _STATES

C = Path(__file__).resolve().parents[1] / "examples" / "c"
ENGINES = ["interpreter", "jit"]
SOCK_ADDR = LAYOUTS["bpf_sock_addr"]
BIND_MD = LAYOUTS["bind_md"]
POLICY = ("from_port", "to_port", "deny_port", "post_deny_port", "deny_dgram", "priority")


def _addr(port: int, ip: int = 0x0A00000A, **more) -> bytes:
    port_be = int.from_bytes(port.to_bytes(2, "big"), "little")
    values = {"user_family": 2, "user_ip4": ip, "user_port": port_be, "family": 2,
              "type": 1, "protocol": 6} | more  # fmt: skip
    return uapi_pack(SOCK_ADDR, values)


def _sock(**values) -> bytes:
    return uapi_pack(SOCK_LAYOUT, {"family": 2, "type": 1, "protocol": 6} | values)


def _md(port: int, operation: int = 0, pid: int = 42) -> bytes:
    values = {"process_id": pid, "socket_address": int.from_bytes(
        windows_sockaddr(port, bytes([127, 0, 0, 1])), "little"),
        "socket_address_length": 16, "operation": operation, "protocol": 6}  # fmt: skip
    return uapi_pack(BIND_MD, values)


def _policy(obj) -> None:
    obj.maps["config"][0] = dict(zip(POLICY, (1000, 2000, 3000, 0, 1, 7), strict=True))


def _limit(obj, limit: int, name: str = "limits_map") -> None:
    obj.maps[name][0] = limit


def _win_policy(obj) -> None:
    for key, value in enumerate((1000, 2000, 3000)):
        obj.maps["config"][key] = value


# (object, setup, [(program, cookie or None, data_in, ctx_in)])
CASES = {
    "sock_addr_rewrites": ("bind_monitor_policy.o", _policy, [
        ("policy_connect4", None, b"", _addr(1000)),  # rewrites user_ip4 and user_port
        ("policy_connect4", None, b"", _addr(1000)),  # the same ctx_in after the rewrite
        ("policy_connect4", None, b"", _addr(3000)),  # denied
        ("policy_connect4", None, b"", _addr(1000, ip=0x0100007F)),
        ("policy_connect4", None, _sock(src_port=5, state=1), _addr(1000)),  # data_in: ctx->sk
        ("policy_connect4", None, _sock(src_port=5, state=1), _addr(1000)),
        ("policy_connect4", None, b"", _addr(1000) + b"\1"),  # E2BIG
        ("policy_connect4", None, b"", _addr(1000)),
        ("policy_connect4", None, bytes(SOCK_LAYOUT.size + 1) + b"\1", _addr(1000)),  # E2BIG
        ("policy_connect4", None, b"", None),  # no ctx_in: no ctx_out
        ("policy_connect4", None, b"", b""),
        ("policy_bind4", None, b"", _addr(1000)),
        ("policy_bind4", None, b"", _addr(4000)),
    ]),
    "sock_addr_cookies": ("bind_monitor_cgroup.o", lambda obj: _limit(obj, 3), [
        ("bind_monitor_bind4", 11, b"", _addr(80)),
        ("bind_monitor_bind4", 12, b"", _addr(81)),
        ("bind_monitor_bind4", 11, b"", _addr(80)),  # counted already (its cookie)
        ("bind_monitor_bind4", 13, b"", _addr(82)),
        ("bind_monitor_bind4", 14, b"", _addr(83)),  # over the limit
        ("bind_monitor_release", 12, b"", _sock(src_port=81)),
        ("bind_monitor_release", 12, b"", _sock(src_port=81)),  # forgotten already
        ("bind_monitor_release", 99, b"", _sock()),  # never counted
        ("bind_monitor_bind4", 14, b"", _addr(83)),  # room again
        ("bind_monitor_release", 11, b"", _sock(src_port=80)),
    ]),
    "sock_writes": ("bind_monitor_policy.o", _policy, [
        ("policy_sock_create", None, b"", _sock()),  # writes priority 7
        ("policy_sock_create", None, b"", _sock()),
        ("policy_sock_create", None, b"", _sock(type=2)),  # datagram: denied
        ("policy_sock_create", None, b"", _sock(priority=3, mark=9)),
        ("policy_sock_create", None, b"", _sock(bound_dev_if=1) + bytes(8)),
        ("policy_sock_create", None, b"", _sock() + b"\1"),  # E2BIG
        ("policy_sock_create", None, b"", None),
        ("policy_post_bind4", None, b"", _sock(src_port=1000)),
        ("policy_sock_release", 5, b"", _sock()),
    ]),
    "bind_md_app_id": ("bind_monitor.o", lambda obj: _limit(obj, 2), [
        ("bind_monitor", None, b"/usr/bin/python3", _md(80)),  # the entry keeps the app id
        ("bind_monitor", None, b"/usr/bin/pythonX", _md(81, pid=43)),  # same length, other
        ("bind_monitor", None, b"/bin/sh", _md(82, pid=44)),  # another length: new regions
        ("bind_monitor", None, b"", _md(83, pid=45)),  # no app id
        ("bind_monitor", None, b"/usr/bin/python3", _md(84)),
        ("bind_monitor", None, b"/usr/bin/python3", _md(85)),  # over the limit
        ("bind_monitor", None, b"/usr/bin/python3", _md(85, operation=2)),
        ("bind_monitor", None, b"/usr/bin/python3", _md(85, operation=7)),  # EINVAL
        ("bind_monitor", None, b"/usr/bin/python3", _md(86)),
    ]),
    "bind_md_redirect": ("bind_monitor_policy_win.o", _win_policy, [
        ("bind_policy", None, b"app", _md(1000)),  # writes socket_address: redirect
        ("bind_policy", None, b"app", _md(1000)),  # the same ctx_in after the write
        ("bind_policy", None, b"app", _md(3000)),  # denied
        ("bind_policy", None, b"app", _md(1000, operation=1)),
        ("bind_policy", None, b"app", None),
        ("bind_policy", None, b"app", _md(1000)),
    ]),
}


def _sequence(engine: str, file: str, setup, runs, *, reuse: bool):
    """Every result of ``runs`` on a newly loaded object, every map's contents, and how
    many kept contexts each program ended with."""
    out = []
    with pybpf.load(C / file, engine=engine, pin_maps_dir=None) as obj:
        setup(obj)
        for prog in obj.programs.values():
            prog._sock_reusable = reuse
        for name, cookie, data_in, ctx_in in runs:
            prog = obj.programs[name]
            assert prog.context == "runtime"
            try:
                if cookie is None:
                    res = prog.test_run(data_in, ctx_in=ctx_in)
                else:
                    with socket_cookie(cookie):
                        res = prog.test_run(data_in, ctx_in=ctx_in)
            except InputError as exc:
                out.append(("error", exc.errno, exc.field))
                continue
            out.append((res.retval, res.data_out, res.ctx_out))
        maps = {m: sorted((bytes(k), repr(v)) for k, v in obj.maps[m].items()) for m in obj.maps}
        kept = {n: len(p._kept_sock) for n, p in obj.programs.items() if p._kept_sock}
    return out, maps, kept


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", list(CASES))
def test_kept_regions_give_fresh_runs_results(engine, case):
    file, setup, runs = CASES[case]
    got, got_maps, kept = _sequence(engine, file, setup, runs, reuse=True)
    want, want_maps, fresh_kept = _sequence(engine, file, setup, runs, reuse=False)
    assert kept == {name: 1 for name, *_ in runs}  # every program ran on kept regions
    assert fresh_kept == {}
    assert got == want
    assert got_maps == want_maps
    assert any(r[0] == "error" for r in got) or case in ("sock_addr_cookies", "bind_md_redirect")


@pytest.mark.parametrize("engine", ENGINES)
def test_each_run_without_a_named_cookie_is_a_new_socket(engine):
    with pybpf.load(C / "bind_monitor_cgroup.o", engine=engine, pin_maps_dir=None) as obj:
        _limit(obj, 100)
        prog = obj.programs["bind_monitor_bind4"]
        for _ in range(3):
            assert prog.test_run(ctx_in=_addr(80)).retval == 1
        assert len(obj.maps["bound_sockets"].keys()) == 3  # three cookies
        with socket_cookie(1 << 60):
            for _ in range(3):
                prog.test_run(ctx_in=_addr(80))
        assert len(obj.maps["bound_sockets"].keys()) == 4
        assert len(prog._kept_sock) == 1


def test_kept_regions_stay_put_and_a_program_frees_them():
    with pybpf.load(C / "bind_monitor.o", pin_maps_dir=None) as obj:
        prog = obj.programs["bind_monitor"]
        prog.test_run(b"abc", ctx_in=_md(80))
        ctx = prog._kept_sock[0].reused.prepared.ctx
        prog.test_run(b"xyz", ctx_in=_md(81, pid=7))
        assert prog._kept_sock[0].reused.prepared.ctx is ctx  # same length: same regions
        with pytest.raises(InputError):
            prog.test_run(b"xyz", ctx_in=_md(81, operation=9))
        assert prog._kept_sock[0].reused.prepared.ctx is ctx  # a refused reset keeps them
        prog.test_run(b"abcd", ctx_in=_md(80))  # another app id length: new regions
        assert ctx.closed and len(prog._kept_sock) == 1
        last = prog._kept_sock[0].reused.prepared
        prog.close()
        assert prog._kept_sock == [] and last.ctx.closed and last.packet.closed


def _pointers(builder, prepared) -> list:
    """The context's pointer fields as (which region, offset in it)."""
    regions = prepared.regions
    out = []
    for f in builder.layout.fields:
        if f.kind == FieldKind.SCALAR:
            continue
        at = builder.runtime.offsets[f.name]
        value = int.from_bytes(prepared.ctx.view[at : at + 8], "little")
        where = [(i, value - r.address) for i, r in enumerate(regions)
                 if r.address <= value <= r.end]  # fmt: skip
        out.append(where[0] if where else value)
    return out


def _image(builder, prepared) -> tuple:
    ctx = bytearray(prepared.ctx.view)
    for f in builder.layout.fields:
        if f.kind != FieldKind.SCALAR:
            at = builder.runtime.offsets[f.name]
            ctx[at : at + 8] = bytes(8)
    others = [bytes(r.view) for r in prepared.regions[1:]]
    state = _STATES.get(prepared.ctx.address)
    return (bytes(ctx), others, _pointers(builder, prepared), prepared.ctx_out,
            prepared.data_out(), None if state is None else state.cookie)  # fmt: skip


BUILDERS = {
    "sock_addr": (SockAddrContext(SOCK_ADDR), [
        (b"", _addr(1000)), (_sock(src_port=9), _addr(2000)), (b"", None), (b"", _addr(7))]),
    "sock": (SockContext(), [(b"", _sock()), (b"", _sock(type=2, mark=3)), (b"", None)]),
    "bind": (BindContext(BIND_MD), [
        (b"app1", _md(80)), (b"app2", _md(81, operation=1)), (b"app2", None)]),
}


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_a_reset_scribbled_context_is_byte_for_byte_a_fresh_prepare(kind):
    builder, inputs = BUILDERS[kind]
    first = builder.prepare(*inputs[0])
    reused = ReusedSockContext(builder, first, *inputs[0])
    try:
        for data_in, ctx_in in inputs + inputs[:1] + inputs[:1]:
            for region in first.regions:  # whatever a run (or a bug) left there
                region.view[:] = b"\xaa" * region.size
            with socket_cookie(77):
                reused.reset(data_in, ctx_in)
                fresh = builder.prepare(data_in, ctx_in)
            try:
                assert _image(builder, first) == _image(builder, fresh)
            finally:
                fresh.close()
    finally:
        reused.close()
    assert first.ctx.closed and first.ctx.address not in _STATES


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_the_byte_copies_pack_and_read_back_as_the_field_tables_do(kind):
    import random

    from pybpf.memory import Region
    from pybpf.objects.sock_context import uapi_unpack

    builder = BUILDERS[kind][0]
    layout, runtime = builder.layout, builder.runtime
    rng = random.Random(kind)
    finish = builder._finish()
    for _ in range(20):
        values = {f.name: rng.getrandbits(8 * f.size) for f in layout.fields
                  if f.kind == FieldKind.SCALAR}  # fmt: skip
        raw = bytearray(uapi_pack(layout, values))
        pointers = {f.name: rng.getrandbits(63) for f in layout.fields
                    if f.kind != FieldKind.SCALAR}  # fmt: skip
        got = builder._pack(bytes(raw), pointers)
        assert got == runtime.pack(uapi_unpack(layout, bytes(raw)) | pointers)
        with Region.from_bytes(got) as region:
            assert finish(region) == uapi_pack(layout, values)  # the pointers read as 0
