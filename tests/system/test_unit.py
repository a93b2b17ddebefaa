"""The systemd unit: hardened (exposure <= 2.0) and valid, checked where systemd-analyze exists."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

UNIT = ROOT / "systemd" / "monitor.service"
pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze is not installed here")


def test_unit_exposure_is_at_most_2(tmp_path: Path) -> None:
    unit = tmp_path / "monitor.service"
    unit.write_text(UNIT.read_text())
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)],
                            capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for monitor.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0


def test_unit_verifies_clean_where_the_binary_exists(tmp_path: Path) -> None:
    binary = Path(sys.executable).with_name("monitor")
    if not binary.exists():
        pytest.skip("the monitor command is not installed in this environment")
    unit = tmp_path / "monitor.service"
    unit.write_text(UNIT.read_text().replace("/opt/monitor/bin/monitor", str(binary)))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                            text=True, timeout=60)
    problems = [line for line in result.stderr.splitlines() if "monitor.service" in line]
    assert result.returncode == 0 and not problems, result.stderr


def test_unit_has_the_lifecycle_settings() -> None:
    text = UNIT.read_text()
    for line in ("Type=notify", "Restart=on-failure", "RestartPreventExitStatus=78",
                 "ExecReload=/bin/kill -HUP $MAINPID", "DynamicUser=yes", "StateDirectory=monitor",
                 "ProtectSystem=strict", "NoNewPrivileges=yes", "WatchdogSec="):
        assert line in text
