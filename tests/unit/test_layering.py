"""The layering rules, checked on the source: the core (landscape/) never imports the
analysis package, only the toy world imports the toy world, and importing any module leaves
the process as it was (matplotlib's backend, torch's thread count, the root logger)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from helpers import REPO

ROOT = REPO
CORE = ROOT / "landscape"
TOY = CORE / "toy"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(module: str | None, level: int, path: Path) -> str:
    """The absolute name of `from <level dots><module> import ...` written in `path`."""
    if not level:
        return module or ""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - (level - 1)]
    return ".".join([*base, module] if module else base)


def imported_names(source: str, path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import anywhere in the source, functions included: `import
    a.b`, `from a import b` (as both `a` and `a.b`, since b may be a module), relative imports
    made absolute, and importlib.import_module / __import__ of a constant name."""
    out = []
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node.module, node.level, path)
            out.append((node.lineno, base))
            out += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            arg = node.args[0]
            if name in ("import_module", "__import__") and isinstance(arg, ast.Constant):
                if isinstance(arg.value, str):
                    out.append((node.lineno, arg.value))
    return out


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def violations(path: Path, source: str | None = None) -> list[str]:
    """The layering faults of one file under landscape/."""
    source = path.read_text(encoding="utf-8") if source is None else source
    in_toy = path.is_relative_to(TOY)
    out = []
    for line, name in imported_names(source, path):
        if _within(name, "analysis"):
            out.append(f"{path.relative_to(ROOT)}:{line} imports {name} (core -> analysis)")
        elif _within(name, "landscape.toy") and not in_toy:
            out.append(f"{path.relative_to(ROOT)}:{line} imports {name} (core -> toy world)")
    return sorted(set(out))


def test_the_checker_sees_every_kind_of_import():
    fake = CORE / "grid" / "point.py"
    source = (
        "import os\n"
        "def f():\n"
        "    from analysis.figures import draw\n"
        "    import landscape.toy.data\n"
        "class C:\n"
        "    def g(self):\n"
        "        from ..toy import build\n"
        "        from landscape import toy\n"
        "        importlib.import_module('landscape.toy.judge')\n"
        "        from . import config\n"
    )

    def lines(found):
        return sorted({int(v.split(":")[1].split()[0]) for v in found})

    assert lines(violations(fake, source)) == [3, 4, 7, 8, 9]
    # inside the toy world only the analysis import is a fault
    assert lines(violations(TOY / "judge.py", source)) == [3]


def test_core_imports_neither_analysis_nor_the_toy_world():
    files = sorted(CORE.rglob("*.py"))
    assert len(files) > 20  # the walk found the package
    found = [v for f in files for v in violations(f)]
    assert found == [], "\n".join(found)


# Run in a fresh interpreter: the state each import leaves, checked after every module, so
# that a change is pinned on the module that made it. MPLBACKEND and the thread count are
# set to values no module would choose, so that any switch (matplotlib.use("Agg"),
# torch.set_num_threads) shows.
_PROBE = r"""
import importlib, json, logging, sys
import matplotlib, torch
torch.set_num_threads(3)

def state():
    return {
        "backend": matplotlib.get_backend().lower(),
        "threads": torch.get_num_threads(),
        "root_handlers": len(logging.getLogger().handlers),
    }

start = before = state()
changed, failed = [], {}
for name in json.loads(sys.argv[1]):
    try:
        importlib.import_module(name)
    except Exception as e:
        failed[name] = f"{type(e).__name__}: {e}".splitlines()[0]
    now = state()
    if now != before:
        changed.append([name, {k: [before[k], v] for k, v in now.items() if before[k] != v}])
        before = now
print(json.dumps({"start": start, "changed": changed, "failed": failed}))
"""


def _all_modules() -> list[str]:
    names = []
    for package in ("landscape", "analysis"):
        for path in sorted((ROOT / package).rglob("*.py")):
            # a package's __main__ runs its command when imported; what it imports is
            # imported here through the modules it names
            if path.name != "__main__.py":
                names.append(module_name(path))
    return names


def test_importing_any_module_has_no_global_side_effects():
    names = _all_modules()
    assert "landscape.grid" in names or "landscape.grid.run" in names
    env = {**os.environ, "MPLBACKEND": "svg", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(names)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["start"] == {"backend": "svg", "threads": 3, "root_handlers": 0}
    assert out["failed"] == {}, out["failed"]
    assert out["changed"] == [], out["changed"]
