"""The coding agents the agent tests run, pinned, installed once with npm into
a cache directory and reused while the pins do not change."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

# npm package -> the version the tests run (bump on purpose, one at a time).
PINS = {
    "@google/gemini-cli": "0.61.0",
    "@qwen-code/qwen-code": "0.24.4",
    "opencode-ai": "1.18.33",
    "@anthropic-ai/claude-code": "2.1.332",
    "@openai/codex": "0.171.0",
}
INSTALL_TIMEOUT = 900.0  # seconds: five packages from the registry, once


def cache_dir() -> Path:
    """Where the pinned set lives: one directory per set of pins."""
    specs = "\n".join(f"{name}@{version}" for name, version in sorted(PINS.items()))
    digest = hashlib.sha256(specs.encode()).hexdigest()[:12]
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "crabllm-sync" / f"agents-{digest}"


def install() -> Path:
    """The node_modules/.bin of the pinned agents, installed when missing.

    The set is installed in a scratch directory and renamed into place, so a
    run cut short never leaves a half-installed set that looks complete.
    """
    target = cache_dir()
    if (target / "complete").exists():
        return target / "node_modules" / ".bin"
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError("npm")
    scratch = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    specs = [f"{name}@{version}" for name, version in PINS.items()]
    subprocess.run(
        [
            npm,
            "install",
            "--prefix",
            str(scratch),
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            *specs,
        ],
        check=True,
        timeout=INSTALL_TIMEOUT,
        env={**os.environ, "npm_config_update_notifier": "false"},
    )
    (scratch / "complete").write_text("\n".join(specs) + "\n")
    try:
        scratch.rename(target)
    except OSError:  # another worker installed it first
        shutil.rmtree(scratch, ignore_errors=True)
    return target / "node_modules" / ".bin"


if __name__ == "__main__":
    print(install())
