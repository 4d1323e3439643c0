"""The jail alone (sandbox/_jail, without the worker's own Landlock rules): what machine
code could see of the server through the processes it can see."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from backstate.sandbox._jail import JAIL_ENV, Limits, command

PROBE = r"""
import os
seen = []
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                seen.append(f.read())
        except OSError:
            pass
print(len(seen), b"BACKSTATE_JAIL_MARKER" in b"".join(seen))
"""


def test_no_process_in_the_jail_holds_the_servers_environment(tmp_path: Path) -> None:
    # bubblewrap stays PID 1 of the jail, readable by the code it runs where no Landlock
    # domain stands between them: it is started with JAIL_ENV, not the server's.
    (tmp_path / "scratch").mkdir()
    args = command(tmp_path / "scratch", Limits(), program=("-c", PROBE))
    server_env = {**os.environ, "BACKSTATE_JAIL_MARKER": "the server's secret"}
    inherited = subprocess.run(args, capture_output=True, text=True, env=server_env, check=True)
    assert inherited.stdout.split() == ["2", "True"]  # what the test would catch
    jailed = subprocess.run(args, capture_output=True, text=True, env=JAIL_ENV, check=True)
    assert jailed.stdout.split() == ["2", "False"], jailed.stderr
