"""`backstate dev FOLDER`: a server on a SQLite file in the folder that deploys the
folder's machine files, redeploys a file that changes as a new version, reports a broken
file with its line, and on a restart skips files already deployed."""

from __future__ import annotations

import json
import re
import shutil
import socket
from pathlib import Path
from typing import Any

from .conftest import FILES, Cli, free_port


def test_dev_deploys_and_redeploys(tmp_path: Path) -> None:
    folder, home = tmp_path / "machines", tmp_path / "home"
    folder.mkdir()
    shutil.copy(FILES / "greeter.py", folder / "hello_world.py")
    (folder / "helpers.py").write_text("GREETING = 'hi'\n")
    (folder / "__init__.py").write_text("")
    (folder / "migrations").mkdir()
    shutil.copy(FILES / "rename_listening.py", folder / "migrations" / "rename.py")
    port = free_port()
    cli = Cli(home)

    dev = cli.start("dev", str(folder), "--port", str(port))
    try:
        deployed = dev.wait_for(r"deployed|error")
        assert re.fullmatch(
            rf"deployed {folder}/hello_world.py as hello-world \(version ver_\S+\)",
            deployed.string,
        )
        assert (
            dev.wait_for("skipped").string
            == f"skipped {folder}/helpers.py: it defines no `machine`"
        )
        assert dev.wait_for("API").string == f"backstate API on http://127.0.0.1:{port}"
        assert dev.wait_for("credentials").string == f"credentials in {home}/credentials.json"
        dev.wait_for("watching")
        assert not any("rename" in line or "__init__" in line for line in dev.seen)
        credentials = json.loads((home / "credentials.json").read_text())
        assert credentials["apiHost"] == f"http://127.0.0.1:{port}"
        assert (folder / "backstate-dev.db").exists()
        assert (
            len(cli("--json", "machine-versions", "list", "-m", "hello-world").json()["versions"])
            == 1
        )

        source = (folder / "hello_world.py").read_text()
        (folder / "hello_world.py").write_text(source.replace('"said": 0', '"said": 10'))
        redeployed = dev.wait_for("redeployed|error")
        assert redeployed.string.startswith(f"redeployed {folder}/hello_world.py as hello-world")
        versions = cli("--json", "machine-versions", "list", "-m", "hello-world").json()["versions"]
        assert [v["current"] for v in versions] == [False, True]
        created = cli("--json", "instances", "create", "-m", "hello-world", "-i", "x").json()
        assert created["publicContext"] == {"said": 10}

        # Reverted: the first version is current again, not a second copy of it.
        (folder / "hello_world.py").write_text(source)
        dev.wait_for("redeployed|error")
        versions = cli("--json", "machine-versions", "list", "-m", "hello-world").json()["versions"]
        assert [v["current"] for v in versions] == [True, False]
        first = versions[0]["clientInfo"]
        cli("instances", "create", "-m", "hello-world", "-i", "on-first", "-v", first)
        (folder / "hello_world.py").write_text(source.replace('"said": 0', '"said": 10'))
        dev.wait_for("redeployed|error")
        versions = cli("--json", "machine-versions", "list", "-m", "hello-world").json()["versions"]
        assert [v["current"] for v in versions] == [False, True]

        (folder / "hello_world.py").write_text(source + "\nraise RuntimeError('oops')\n")
        broken = dev.wait_for("error")
        line = source.count("\n") + 2
        assert broken.string == (
            f"error: {folder}/hello_world.py:{line}: RuntimeError: oops (import-error)"
        )
        assert (
            len(cli("--json", "machine-versions", "list", "-m", "hello-world").json()["versions"])
            == 2
        )
    finally:
        assert dev.stop() in (0, 130, -2)

    # A restart deploys nothing new: the current version is already the file as it is.
    (folder / "hello_world.py").write_text(source.replace('"said": 0', '"said": 10'))
    again = cli.start("dev", str(folder), "--port", str(port))
    try:
        assert re.fullmatch(
            rf"{folder}/hello_world.py is deployed as hello-world \(version ver_\S+\)",
            again.wait_for("hello_world").string,
        )
        again.wait_for("watching")
        assert (
            len(cli("--json", "machine-versions", "list", "-m", "hello-world").json()["versions"])
            == 2
        )
    finally:
        again.stop()


def test_dev_refuses_a_busy_port_and_a_missing_folder(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    missing = cli("dev", str(tmp_path / "nope"), ok=False)
    assert missing.error == f"error: {tmp_path / 'nope'} is not a folder (not-a-folder)"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        refused = cli("dev", str(tmp_path), "--port", str(port), ok=False)
    assert refused.status == 1 and refused.error.startswith(
        f"error: cannot listen on 127.0.0.1:{port}"
    )
    assert refused.error.endswith("(port-in-use)")


def test_dev_sets_secrets_from_the_environment(tmp_path: Path, monkeypatch: Any) -> None:
    folder = tmp_path / "machines"
    folder.mkdir()
    cli = Cli(tmp_path / "home")
    monkeypatch.delenv("BACKSTATE_TEST_UNSET", raising=False)
    unset = cli(
        "dev", str(folder), "--port", str(free_port()), "--secret", "BACKSTATE_TEST_UNSET", ok=False
    )
    assert unset.error.endswith("(no-value)"), unset.error
    monkeypatch.setenv("MODEL_KEY", "sk-from-the-environment")
    dev = cli.start("dev", str(folder), "--port", str(free_port()), "--secret", "MODEL_KEY")
    try:
        dev.wait_for("watching")
        listed = cli("secrets", "list")
        assert "MODEL_KEY" in listed.stdout and "sk-from" not in listed.stdout
    finally:
        dev.stop()
    assert not any("sk-from" in line for line in dev.seen)
