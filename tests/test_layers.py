"""Layer rules: imports point down docs/architecture.md's table; Linux-only imports stay put."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "pybpf"
DOC = ROOT / "docs" / "architecture.md"

# Modules that may use Linux-only facilities (design.md): the raw bpf() layer, the kernel
# backend and the live hooks.
LINUX_ONLY_ALLOWED = ("pybpf.syscall", "pybpf.kernel", "pybpf.hooks.live")
LINUX_ONLY_MODULES = ("fcntl", "termios", "pty", "tty", "grp", "pwd", "resource", "_posixshmem")


def _layers() -> dict[str, int]:
    text = DOC.read_text()
    block = re.search(r"```layers\n(.*?)```", text, re.S)
    assert block, "docs/architecture.md has no ```layers block"
    lines = [ln.split() for ln in block.group(1).strip().splitlines() if ln.strip()]
    ranks: dict[str, int] = {}
    for depth, names in enumerate(reversed(lines)):
        for name in names:
            ranks[name] = depth
    return ranks


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _component(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "pybpf" or len(parts) == 1:
        return None
    return parts[1]


def _imports(module: str, path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return found


def test_every_component_has_a_layer():
    ranks = _layers()
    missing = {_component(m) for m in _modules() if _component(m) not in (None, "__main__")} - set(
        ranks
    )
    assert not missing, f"components missing from the layers table: {sorted(missing)}"


def test_imports_point_down():
    ranks = _layers()
    bad = []
    for module, path in _modules().items():
        src = _component(module)
        if src in (None, "__main__"):
            continue  # the package root facade and __main__ are exempt
        for lineno, target in _imports(module, path):
            dst = _component(target)
            if dst is None or dst == src:
                continue
            if ranks[dst] >= ranks[src]:
                bad.append(f"{path.relative_to(ROOT)}:{lineno}: {src} imports {target} ({dst})")
    assert not bad, "imports that point up or sideways:\n" + "\n".join(bad)


def test_every_module_is_documented():
    text = DOC.read_text()
    listed = set(re.findall(r"^\| `(pybpf[\w.]*)` \|", text, re.M))
    missing = sorted(set(_modules()) - listed)
    assert not missing, f"modules missing from docs/architecture.md: {missing}"


def test_every_module_states_its_job():
    bad = []
    for module, path in _modules().items():
        doc = ast.get_docstring(ast.parse(path.read_text()))
        if not doc or not doc.strip().splitlines()[0].strip():
            bad.append(module)
    assert not bad, f"modules without a first docstring line: {bad}"


def test_no_linux_only_imports_outside_allowed_modules():
    modules = [
        m
        for m in _modules()
        if not any(m == a or m.startswith(a + ".") for a in LINUX_ONLY_ALLOWED)
        and not m.endswith("__main__")
    ]
    script = textwrap.dedent(
        f"""
        import importlib, sys
        for name in {LINUX_ONLY_MODULES!r}:
            sys.modules[name] = None  # importing it now raises ImportError
        failed = []
        for module in {modules!r} + ["pybpf.syscall"]:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                failed.append(f"{{module}}: {{exc}}")
        print("\\n".join(failed))
        sys.exit(1 if failed else 0)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
