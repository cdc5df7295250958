"""Production code never imports the dev stack (an import-linter rule, as a test).

`sharehub.devstack` starts embedded Postgres, NATS, Redis and a local Ray for `make run` and the
test suite. The packages that run in production - `sharehub` (but the dev stack itself and the
few modules that launch it), `gateway`, `actors`, `storage`, `search`, `ml` - must not depend on
it: what they share with it (the Ray namespace, joining a cluster) lives in `sharehub.config` and
`sharehub.cluster`. Two checks: every import statement in those packages, wherever it stands (a
function-level import counts too), and what the processes' entry modules actually load."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_PACKAGES = ("sharehub", "gateway", "actors", "storage", "search", "ml")
DEV_STACK = "sharehub.devstack"
# The modules whose job is the dev stack itself, and why each may import it.
LAUNCHERS = {
    "sharehub/supervisor.py": "`sharehub run`: starts the embedded stack unless URLs are given",
    "sharehub/cli.py": "commands fall back to the embedded Postgres / a local Ray (function-level imports)",
    "sharehub/runstate.py": "records where a running `sharehub run` stack listens",
}
# What production processes import first: a gateway, the Ray actors, migrations, training, Serve.
ENTRY_MODULES = ("gateway.server", "gateway.app", "actors.shard_actor", "actors.kinds", "search.replica_actor",
                 "search.client", "search.reindex", "ml.serving", "ml.train_job", "storage.migrate",
                 "sharehub.platform", "sharehub.cluster")


def production_files() -> list[Path]:
    files = [path for package in PRODUCTION_PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]
    return [path for path in files if not path.relative_to(ROOT).as_posix().startswith("sharehub/devstack/")]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, *, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in `source`, the code of `module`; `from x
    import y` counts as `x` and as `x.y` (y may be a module)."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            found += [(node.lineno, base)] + [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def devstack_imports(path: Path) -> list[str]:
    found = imported_modules(path.read_text(), module_name(path), is_package=path.name == "__init__.py")
    return sorted({f"{path.relative_to(ROOT)}:{line} imports {name}" for line, name in found
                   if name == DEV_STACK or name.startswith(DEV_STACK + ".")})


def test_the_scan_sees_every_kind_of_import() -> None:
    """The scan itself: absolute, from-, relative and function-level imports of the dev stack."""
    source = ("import sharehub.devstack.processes\n"
              "from sharehub import devstack\n"
              "from .devstack.ray_local import start_local_ray\n"
              "def f():\n    from sharehub.devstack import DevStack\n"
              "from . import devstack as ds\n"
              "from sharehub.config import RAY_NAMESPACE\n"
              "from search import devstack_free\n")
    found = imported_modules(source, "sharehub.probe")
    assert {line for line, name in found if name == DEV_STACK or name.startswith(DEV_STACK + ".")} == {1, 2, 3, 5, 6}
    # Two levels up from a module two packages deep lands on the top package.
    assert (1, "sharehub.devstack.stack") in imported_modules("from ..devstack import stack", "sharehub.x.y")


@pytest.mark.parametrize("path", production_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_production_code_does_not_import_the_dev_stack(path: Path) -> None:
    if path.relative_to(ROOT).as_posix() in LAUNCHERS:
        return
    assert devstack_imports(path) == [], "shared constants belong in sharehub.config, joining Ray in sharehub.cluster"


def test_the_launcher_list_is_no_longer_than_needed() -> None:
    for launcher in LAUNCHERS:
        assert devstack_imports(ROOT / launcher), f"{launcher} no longer imports the dev stack: drop it from LAUNCHERS"
    cli = ROOT / "sharehub" / "cli.py"
    top_level = [node for node in ast.parse(cli.read_text()).body if isinstance(node, ast.Import | ast.ImportFrom)]
    assert not [ast.unparse(node) for node in top_level if "devstack" in ast.unparse(node)], \
        "the CLI imports the dev stack only in the commands that fall back to it"


def test_production_entry_modules_load_no_dev_stack_module() -> None:
    """What a gateway, a Ray worker or a job really loads, imports of imports included."""
    script = ("import importlib, json, sys\n"
              f"for name in {list(ENTRY_MODULES)!r}: importlib.import_module(name)\n"
              f"print(json.dumps(sorted(m for m in sys.modules if m == {DEV_STACK!r} "
              f"or m.startswith({DEV_STACK + '.'!r}))))\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
