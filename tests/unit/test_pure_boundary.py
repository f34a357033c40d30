"""The pure boundary (ARCHITECTURE.md, Layout): a [pure] module imports no trio, lmdb, socket or structlog, not
even through a package `__init__`.

ruff's banned-api (pyproject.toml) sees the import lines of the pure files. It cannot see that
`import gateway.upstream.frames` runs `gateway/upstream/__init__.py` first, nor what a pure module's imports
import in turn. This test imports each pure module alone in a fresh interpreter and looks at `sys.modules`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from fnmatch import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Every module of these packages is pure, found by globbing, so a module added to one is checked without being
# listed here. policy/ is [pure] in ARCHITECTURE.md and is checked from the day it exists.
PURE_PACKAGES = ("gateway/smpp", "gateway/segmenting", "gateway/routing", "gateway/policy")
# Pure modules inside packages that also hold shells (ARCHITECTURE.md, and the carriers/ and upstream/ package
# docstrings), and the ground floor of the error tree.
PURE_FILES = (
    "gateway/errors.py",
    "gateway/lifecycle.py",
    "gateway/carriers/core.py",
    "gateway/carriers/bucket.py",
    "gateway/carriers/config.py",
    "gateway/carriers/jobs.py",
    "gateway/engine/plan.py",
    "gateway/engine/sequencer.py",
    "gateway/upstream/frames.py",
    "gateway/upstream/schema.py",
    "gateway/upstream/errors.py",
    "gateway/upstream/session.py",
    "gateway/upstream/auth.py",
    "gateway/upstream/smpp_core.py",
    "gateway/cluster/core.py",
)
# An event loop, the disk, the network, child processes, logging. threading is allowed: regex (segmenting) and
# phonenumbers (routing) import it for their caches' locks.
BANNED = ("trio", "asyncio", "lmdb", "socket", "ssl", "selectors", "select", "subprocess", "structlog")
# A refactor that moves one of these out of the lists above must not shrink this test without anyone noticing.
KNOWN_PURE = {
    "gateway.errors",
    "gateway.lifecycle",
    "gateway.smpp",
    "gateway.smpp.constants",
    "gateway.smpp.errors",
    "gateway.smpp.codec",
    "gateway.smpp.session",
    "gateway.smpp.receipt",
    "gateway.segmenting",
    "gateway.segmenting.split",
    "gateway.segmenting.gsm",
    "gateway.routing",
    "gateway.routing.numbers",
    "gateway.policy",
    "gateway.policy.keywords",
    "gateway.policy.content",
    "gateway.policy.windows",
    "gateway.policy.policy",
    "gateway.carriers.core",
    "gateway.carriers.bucket",
    "gateway.carriers.jobs",
    "gateway.engine.plan",
    "gateway.engine.sequencer",
    "gateway.upstream.frames",
    "gateway.upstream.schema",
    "gateway.upstream.errors",
    "gateway.cluster.core",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _pure_paths() -> list[Path]:
    paths = [path for package in PURE_PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]
    return paths + [ROOT / file for file in PURE_FILES if (ROOT / file).exists()]


PURE_MODULES = [_module_name(path) for path in _pure_paths()]

Imported = dict[str, subprocess.CompletedProcess[str]]


def _import_alone(module: str) -> subprocess.CompletedProcess[str]:
    """Import `module` alone in a fresh interpreter, which then prints the names in `sys.modules`."""
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture(scope="module")
def imported() -> Imported:
    """One fresh interpreter per pure module, as many at a time as there are CPUs."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return dict(zip(PURE_MODULES, pool.map(_import_alone, PURE_MODULES), strict=True))


def _loaded(module: str, imported: Imported) -> set[str]:
    done = imported[module]
    assert done.returncode == 0, f"importing {module} failed:\n{done.stderr}"
    return set(done.stdout.split())


def _banned_in(loaded: set[str]) -> list[str]:
    return sorted({name.partition(".")[0] for name in loaded if name.partition(".")[0] in BANNED})


def _chains(module: str, banned: list[str]) -> list[str]:
    """Who imported each banned module, read from `-X importtime` (a post-order tree, two spaces a level)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    rows = [
        (len(m[1]) // 2, m[2])
        for m in re.finditer(r"^import time:\s+\d+ \|\s+\d+ \|( *)(\S+)$", done.stderr, re.MULTILINE)
    ]
    chains = []
    for i, (depth, name) in enumerate(rows):
        if name in banned:
            chain, level = [name], depth
            for outer, importer in rows[i + 1 :]:
                if outer < level:
                    chain.append(importer)
                    level = outer
            chains.append(" <- ".join(chain))
    return chains


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_module_imports_nothing_banned(module: str, imported: Imported) -> None:
    banned = _banned_in(_loaded(module, imported))
    assert not banned, f"{module} pulled in {', '.join(banned)}:\n  " + "\n  ".join(_chains(module, banned))


def test_the_pure_list_holds_the_known_pure_modules() -> None:
    assert PURE_MODULES
    assert len(PURE_MODULES) == len(set(PURE_MODULES))
    missing = KNOWN_PURE - set(PURE_MODULES)
    assert not missing, f"pure modules no longer checked: {sorted(missing)}"


def test_the_error_tree_root_imports_nothing_of_the_gateway(imported: Imported) -> None:
    # ARCHITECTURE.md: errors.py is the ground floor; the SMPP status errors live in gateway/smpp/errors.py.
    loaded = _loaded("gateway.errors", imported)
    ours = sorted(name for name in loaded if name.partition(".")[0] == "gateway")
    assert ours == ["gateway", "gateway.errors"]


def test_ruff_bans_the_same_modules_in_the_same_files() -> None:
    lint = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["ruff"]["lint"]
    assert set(lint["flake8-tidy-imports"]["banned-api"]) == set(BANNED)
    [scope] = [key for key, rules in lint["per-file-ignores"].items() if key.startswith("!{") and "TID251" in rules]
    patterns = scope.removeprefix("!{").removesuffix("}").split(",")
    linted = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "gateway").rglob("*.py")
        if any(fnmatch(path.relative_to(ROOT).as_posix(), pattern) for pattern in patterns)
    }
    tested = {path.relative_to(ROOT).as_posix() for path in _pure_paths()}
    assert linted == tested
