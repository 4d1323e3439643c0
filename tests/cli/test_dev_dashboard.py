"""The newcomer's path: `backstate dev examples/` prints a dashboard URL that signs in
by itself; opened in Debian's Chromium it draws every example machine, and an
instance's page follows it live as another client sends it events."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest

from backstate.auth import sign_token

from .conftest import Cli, free_port

playwright_api = pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / ".cache" / "artifacts"


def test_the_printed_dashboard_url_signs_in_and_draws_every_example(tmp_path: Path) -> None:
    folder, home = tmp_path / "examples", tmp_path / "home"
    shutil.copytree(ROOT / "examples", folder, ignore=shutil.ignore_patterns("*.db*"))
    examples = sorted(p.stem.replace("_", "-") for p in folder.glob("*.py") if p.stem != "__init__")
    port = free_port()
    dev = Cli(home).start("dev", str(folder), "--port", str(port))
    try:
        line = dev.wait_for(r"^dashboard on ", timeout=120).string
        url = line.removeprefix("dashboard on ")
        assert url.startswith(f"http://127.0.0.1:{port}/dashboard/#signin?keyId=sbk_")
        dev.wait_for("watching")
        creds = json.loads((home / "credentials.json").read_text())
        token = sign_token(creds["keyId"], creds["secret"], {"sid": "newcomer"}, expires_in_s=600)
        me = {"authorization": f"Bearer {token}"}
        api = f"http://127.0.0.1:{port}"
        assert httpx.post(
            f"{api}/machines/toggler", json={"slug": "newcomer"}, headers=me
        ).is_success

        executable = shutil.which("chromium")
        assert executable is not None, "Debian's chromium is needed (scripts/test installs it)"
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                dialogs: list[str] = []
                page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
                page.goto(url)
                for slug in examples:
                    page.wait_for_selector(f"section.machine[data-machine='{slug}'] svg")
                assert "secret" not in page.url  # the fragment is wiped at once
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "dev-every-example.png"), full_page=True)

                page.click("section.machine[data-machine='toggler'] h2 a")
                page.wait_for_selector("#instances a:has-text('newcomer')")
                page.click("#instances a:has-text('newcomer')")
                page.wait_for_selector("#instance-diagram g[data-active='toggler.on']")
                sent = httpx.post(
                    f"{api}/machines/toggler/i/newcomer/events",
                    json={"event": "toggle"},
                    headers=me,
                )
                assert sent.is_success, sent.text
                page.wait_for_selector("#instance-diagram g[data-active='toggler.off']")
                page.screenshot(path=str(ARTIFACTS / "dev-toggler-live.png"), full_page=True)
                assert dialogs == []
            finally:
                browser.close()
    finally:
        dev.stop()
