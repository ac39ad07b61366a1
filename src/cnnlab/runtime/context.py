"""The software context every result carries (DESIGN principle 6): versions, commit, platform."""

from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from cnnlab.runtime.version import __version__


def git_commit() -> dict[str, Any]:
    """The commit of the repository cnnlab runs from, if it runs from a git checkout."""
    return dict(_git_commit())


@functools.cache
def _git_commit() -> tuple[tuple[str, Any], ...]:
    package = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(package), *args],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    # An installed copy inside someone else's repository is not tracked by it: no commit then.
    if git("ls-files", "--error-unmatch", "__init__.py") is None:
        return (("commit", None), ("dirty", None))
    status = git("status", "--porcelain", "--untracked-files=no")
    return (
        ("commit", git("rev-parse", "HEAD")),
        ("dirty", bool(status) if status is not None else None),
    )


def software_context() -> dict[str, Any]:
    """The software behind a result: cnnlab, its commit, torch, CUDA, Python, the platform."""
    git = git_commit()
    return {
        "cnnlab_version": __version__,
        "git_commit": git["commit"],
        "git_dirty": git["dirty"],
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
    }
