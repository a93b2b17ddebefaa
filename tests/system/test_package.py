"""SPEC §1: the wheel carries everything; the command works outside the repository."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import ROOT


def test_wheel_has_every_module_and_runs_from_elsewhere(tmp_path: Path) -> None:
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True,
                           timeout=300)
    assert build.returncode == 0, build.stderr
    [wheel] = tmp_path.glob("monitor-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    for module in (ROOT / "monitor").glob("*.py"):
        assert f"monitor/{module.name}" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "monitor = monitor.cli:entry" in (tmp_path / "site" / entry_points).read_text()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = elsewhere / "config.toml"
    config.write_text('[feeds.w]\nurl = "https://example.org/rss"\n'
                      '[rules.r]\nquery = "ceasefire"\nchannels = ["console"]\n')
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    result = subprocess.run([sys.executable, "-P", "-m", "monitor", "--config", str(config), "check"],
                            capture_output=True, text=True, cwd=elsewhere, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "1 feeds" in result.stdout
