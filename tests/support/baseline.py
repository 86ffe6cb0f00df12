"""``modelpin serve`` from another checkout of the code, for before/after measurements in one run.

``git worktree add --detach /tmp/modelpin-<rev> <rev>`` makes such a checkout; the server is
started with the test environment's Python and that checkout first on ``PYTHONPATH``, so it runs
that revision's ``webhook`` package with today's dependencies.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.modelpin_server import ModelpinServer


@contextlib.contextmanager
def _python_path(tree: Path) -> Iterator[None]:
    # Process() passes os.environ on to the child; nothing else reads PYTHONPATH meanwhile.
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(tree)
    try:
        yield
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


def revision_server(tree: Path, workdir: Path, config: dict[str, Any], ca_dir: Path) -> ModelpinServer:
    """``modelpin serve`` of the checkout at ``tree`` (which must hold a ``webhook`` package)."""
    if not (tree / "webhook" / "__init__.py").is_file():
        raise FileNotFoundError(f"{tree} holds no webhook package")
    with _python_path(tree.resolve()):
        return ModelpinServer(workdir, config, ca_dir)


def describe(tree: Path) -> str:
    """The checkout's commit, for reports: ``b46481f Memo: ...``."""
    out = subprocess.run(["git", "-C", str(tree), "log", "-1", "--format=%h %s"], capture_output=True, text=True)
    return out.stdout.strip()[:100] or str(tree)
