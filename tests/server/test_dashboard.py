"""The dashboard end to end: a real `backstate serve` (sandboxed, on a free port) and
Debian's Chromium driven by Playwright. Screenshots go to ``.cache/artifacts/``.

Every page load also checks that nothing the server sent ran as code: the page records
any dialog (``alert``), and the console must hold no CSP violation or script error.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.cli.conftest import Cli

from .test_e2e import Server

playwright_api = pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / ".cache" / "artifacts"
COURIER = Path(__file__).with_name("machines") / "courier.py"
HOSTILE_MACHINE = Path(__file__).with_name("machines") / "hostile.py"
STREAMER = Path(__file__).with_name("machines") / "streamer.py"
HOSTILE = "<img src=x onerror=alert(1)><script>alert(2)</script><b>bold</b>"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("dashboard"))
    try:
        admin = srv.headers({"sub": "admin"})
        made = httpx.post(
            f"{srv.url}/machines", json={"slug": "courier", "indexes": ["got"]}, headers=admin
        )
        assert made.status_code == 201, made.text
        version = httpx.post(
            f"{srv.url}/machines/courier/v",
            json={"code": COURIER.read_text()},
            headers=admin,
            timeout=60,
        )
        assert version.status_code == 200, version.text
        made = httpx.post(f"{srv.url}/machines", json={"slug": "hostile"}, headers=admin)
        assert made.status_code == 201, made.text
        code = {"code": HOSTILE_MACHINE.read_text()}
        version = httpx.post(f"{srv.url}/machines/hostile/v", json=code, headers=admin, timeout=60)
        assert version.status_code == 200, version.text
        made = httpx.post(f"{srv.url}/machines", json={"slug": "streamer"}, headers=admin)
        assert made.status_code == 201, made.text
        code = {"code": STREAMER.read_text()}
        version = httpx.post(f"{srv.url}/machines/streamer/v", json=code, headers=admin, timeout=60)
        assert version.status_code == 200, version.text
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("Debian's chromium is needed (scripts/test installs it)")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


class Tab:
    """One browser tab on the dashboard, recording what must never happen."""

    def __init__(self, browser: Any, server: Server) -> None:
        self.server = server
        self.page = browser.new_page(viewport={"width": 1300, "height": 900})
        self.dialogs: list[str] = []
        self.problems: list[str] = []
        self.page.on("dialog", self._dialog)
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.problems.append(message.text)

    def sign_in(self, where: str = "#/") -> None:
        creds = self.server.creds
        self.page.goto(
            f"{self.server.url}/dashboard/#signin?keyId={creds['keyId']}&secret={creds['secret']}"
        )
        self.page.wait_for_selector("section.machine")
        if where != "#/":
            self.page.evaluate("where => { location.hash = where }", where)

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)

    def close(self) -> None:
        self.page.close()
        assert self.dialogs == [], "a dialog opened: something the server sent ran as code"
        assert self.problems == []


@pytest.fixture
def tab(chromium: Any, live: Server) -> Iterator[Tab]:
    opened = Tab(chromium, live)
    try:
        yield opened
    finally:
        opened.close()


def _name() -> str:
    return "d-" + uuid.uuid4().hex[:10]


def _eventually(check: Callable[[], bool], timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.25)


def test_assets_carry_a_strict_policy_and_no_inline_script(live: Server) -> None:
    page = httpx.get(f"{live.url}/dashboard/")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-eval" not in policy and "connect-src 'self'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, re.S)
    assert scripts and all('src="' in attrs and not body.strip() for attrs, body in scripts)
    mermaid = httpx.get(f"{live.url}/dashboard/vendor/mermaid.min.js")
    assert mermaid.status_code == 200 and mermaid.headers["content-type"].startswith(
        "text/javascript"
    )
    for bad in ("../_app.py", "%2e%2e/_app.py", "nope.js", "vendor/../../../pyproject.toml"):
        missing = httpx.get(f"{live.url}/dashboard/{bad}")
        assert missing.status_code == 404 and missing.json()["code"] == "not-found"
    root = httpx.get(f"{live.url}/", follow_redirects=False)
    assert (root.status_code, root.headers["location"]) == (307, "/dashboard/")


def test_a_versions_diagram_route(live: Server) -> None:
    admin = live.headers({"sub": "admin"})
    machine = httpx.get(f"{live.url}/machines/toggler", headers=admin).json()["machine"]
    version = machine["currentVersion"]["id"]
    got = httpx.get(f"{live.url}/machines/toggler/v/{version}/diagram", headers=admin)
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["complete"] is True and body["machineVersionId"] == version
    assert body["mermaid"] == (ROOT / "tests" / "viz" / "golden" / "toggler.mmd").read_text()
    assert body["stateNames"] == {"toggler": "s0", "toggler.on": "s1", "toggler.off": "s2"}
    assert [s["key"] for s in body["outline"]["states"]] == ["on", "off"]
    missing = httpx.get(f"{live.url}/machines/toggler/v/ver_nope/diagram", headers=admin)
    assert (missing.status_code, missing.json()["code"]) == (404, "machine-version-not-found")
    anonymous = httpx.get(f"{live.url}/machines/toggler/v/{version}/diagram")
    assert anonymous.status_code == 401


def test_sign_in_with_a_key_draws_every_machine(tab: Tab, live: Server) -> None:
    page = tab.page
    page.goto(f"{live.url}/dashboard/")
    page.fill("#sign-in-key input[name=keyId]", live.creds["keyId"])
    page.fill("#sign-in-key input[name=secret]", "not the secret")
    page.click("#sign-in-key button")
    page.wait_for_selector("[role=alert]")
    assert page.inner_text("[role=alert]").count("(bad-signature)") == 1
    tab.problems.clear()  # the refused request is logged as a failed load
    page.fill("#sign-in-key input[name=secret]", live.creds["secret"])
    page.click("#sign-in-key button")
    page.wait_for_selector("section.machine[data-machine=courier] svg")
    page.wait_for_selector("section.machine[data-machine=toggler] svg")
    words = page.inner_text("section.machine[data-machine=toggler]")
    assert "toggle / count" in words and "on" in words and "off" in words
    tab.shot("machines")


def test_the_highlight_follows_events_live_and_travels_back_in_time(tab: Tab, live: Server) -> None:
    name = _name()
    me = live.headers({"sid": name})
    created = httpx.post(f"{live.url}/machines/toggler", json={"slug": name}, headers=me)
    assert created.status_code == 200, created.text
    page = tab.page
    tab.sign_in(f"#/m/toggler/i/{name}")
    page.wait_for_selector("#instance-diagram g[data-active='toggler.on']")
    # No end user yet: the toggler's allow_read refuses, and the page says what to change.
    page.wait_for_selector("#live-status.warn:has-text('allow_read refused this auth context')")
    page.fill("input[name=act]", json.dumps({"sid": name}))
    page.click("text=Apply")
    page.wait_for_selector("#live-status:has-text('live')")
    tab.shot("instance-on")

    # Another client sends the event; the page is not reloaded.
    marker = page.evaluate("() => { window.__same = true; return true }")
    for _ in range(2):
        sent = httpx.post(
            f"{live.url}/machines/toggler/i/{name}/events", json={"event": "toggle"}, headers=me
        )
        assert sent.status_code == 200, sent.text
    page.wait_for_selector("#timeline li:nth-child(3)")
    page.wait_for_selector("#instance-diagram g[data-active='toggler.on']")
    sent = httpx.post(
        f"{live.url}/machines/toggler/i/{name}/events", json={"event": "toggle"}, headers=me
    )
    page.wait_for_selector("#instance-diagram g[data-active='toggler.off']")
    assert not page.is_visible("#instance-diagram g[data-active='toggler.on']")
    assert marker and page.evaluate("() => window.__same === true")
    assert page.inner_text("#live-status") == "live over /rt"
    assert json.loads(page.inner_text("#public-context")) == {"toggleCount": 2}
    tab.shot("instance-live-off")

    # Time travel: the first transition (the initial state) and the first toggle.
    slider = page.locator("#time-travel")
    assert slider.get_attribute("max") == "3"
    slider.evaluate("el => { el.value = '0'; el.dispatchEvent(new Event('input')) }")
    page.wait_for_selector("#instance-diagram g[data-active='toggler.on']")
    assert json.loads(page.inner_text("#step-event"))["type"] == "xstate.init"
    assert json.loads(page.inner_text("#step-context")) == {"public": {"toggleCount": 0}}
    tab.shot("instance-time-travel-start")
    slider.evaluate("el => { el.value = '1'; el.dispatchEvent(new Event('input')) }")
    page.wait_for_selector("#instance-diagram g[data-active='toggler.off']")
    assert json.loads(page.inner_text("#step-event")) == {"type": "toggle"}
    assert json.loads(page.inner_text("#step-context")) == {"public": {"toggleCount": 1}}
    # The present is still what it was: the slider moved only the highlight.
    assert json.loads(page.inner_text("#public-context")) == {"toggleCount": 2}


def test_a_running_services_progress_streams_onto_the_instance_page(tab: Tab, live: Server) -> None:
    name = _name()
    me = live.headers({"sub": "someone"})
    base = f"{live.url}/machines/streamer/i/{name}"
    assert httpx.post(f"{live.url}/machines/streamer", json={"slug": name}, headers=me).is_success
    page = tab.page
    tab.sign_in(f"#/m/streamer/i/{name}")
    page.wait_for_selector("#live-status:has-text('live over /rt')")
    assert page.inner_text("#progress") == "None."
    words = ["durable", "streamed", "tokens", "arrive", "one", "by", "one"]
    answer: dict[str, httpx.Response] = {}
    event = {"type": "ask", "input": {"words": words, "pause": 0.4}}
    sender = threading.Thread(
        target=lambda: answer.setdefault(
            "r", httpx.post(f"{base}/events", json={"event": event}, headers=me, timeout=60)
        )
    )
    sender.start()
    try:
        # While the service runs: its tokens, joined as they arrive, under its invoke id.
        page.wait_for_selector("#progress pre[data-invoke='writer']:has-text('durablestreamed')")
        assert sender.is_alive(), "the service ended before its progress was seen"
        # Its state is drawn highlighted (a state with services has its box one level down).
        stroke = page.evaluate(
            "() => getComputedStyle(document.querySelector("
            "\"#instance-diagram g[data-active='(machine).writing'] rect.outer\")).stroke"
        )
        assert stroke == "rgb(183, 121, 31)", stroke
        tab.shot("instance-progress")
    finally:
        sender.join(60)
    assert answer["r"].status_code == 200, answer["r"].text
    # Its result is state now; the progress is gone (it was never history).
    page.wait_for_selector("#progress:has-text('None.')")
    page.wait_for_selector("#public-context:has-text('durable streamed tokens')")
    history = httpx.get(f"{base}/events", headers=live.headers({"sub": "admin"}))
    assert history.status_code == 200, history.text
    events = [t["event"]["type"] for t in history.json()["transitions"]]
    assert events == ["xstate.init", "ask", "xstate.done.actor.writer"], events


def test_send_event_form_offers_what_the_state_accepts(tab: Tab, live: Server) -> None:
    name = _name()
    me = live.headers({"sid": name})
    httpx.post(f"{live.url}/machines/toggler", json={"slug": name}, headers=me)
    page = tab.page
    tab.sign_in(f"#/m/toggler/i/{name}")
    page.wait_for_selector("#send-event")
    # The options come with the machine's description, fetched after the form is drawn.
    page.wait_for_selector("#accepted-events option", state="attached")
    assert page.eval_on_selector_all(
        "#accepted-events option", "options => options.map(o => o.value)"
    ) == ["toggle"]
    page.fill("input[name=act]", json.dumps({"sid": name}))
    page.click("text=Apply")
    page.fill("#send-event input[name=event]", "toggle")
    page.click("#send-event button")
    page.wait_for_selector("#instance-diagram g[data-active='toggler.off']")
    page.click("#pause")
    page.wait_for_selector("#status:has-text('paused')")
    refused = httpx.post(
        f"{live.url}/machines/toggler/i/{name}/events", json={"event": "toggle"}, headers=me
    )
    assert refused.status_code >= 400
    page.click("#pause")
    page.wait_for_selector("#status:has-text('running')")
    tab.shot("instance-sent")


def test_funnel_counts_and_index_queries(tab: Tab, live: Server) -> None:
    admin = live.headers({"sub": "admin"})
    prefix = _name()
    for index, got in enumerate([0, 0, 3, 7]):
        context = {"public": {"got": got, "open": True}}
        made = httpx.post(
            f"{live.url}/machines/courier",
            json={"slug": f"{prefix}-{index}", "context": context},
            headers=admin,
        )
        assert made.status_code == 200, made.text
    moved = httpx.post(
        f"{live.url}/machines/courier/i/{prefix}-3/events",
        json={"event": "msg"},
        headers=admin,
    )
    assert moved.status_code == 200, moved.text
    page = tab.page
    tab.sign_in("#/m/courier")
    timers = httpx.get(f"{live.url}/machines/courier/i/{prefix}-3/timers", headers=admin)
    assert [t["event"]["type"] for t in timers.json()["timers"]] == [
        "xstate.after.3600000.courier.received"
    ]
    page.wait_for_selector("text.bs-count[data-state='courier.received']")
    counts = page.eval_on_selector_all(
        "text.bs-count", "ts => Object.fromEntries(ts.map(t => [t.dataset.state, t.textContent]))"
    )
    expected = _counts(live)
    assert counts == {k: str(v) for k, v in expected.items()}
    assert expected["courier.received"] >= 1
    page.select_option("select[name=state]", "courier.received")
    rows = page.locator("#instances tr")
    assert rows.count() == expected["courier.received"] + 1
    page.fill("input[name=minutes]", "60")
    assert rows.count() == 1  # none has been there for an hour
    page.fill("input[name=minutes]", "")
    tab.shot("machine-funnel")

    page.select_option("#query select[name=index]", "got")
    every_op = [("eq", "0", {0}), ("ne", "0", {3, 8}), ("gt", "3", {8}), ("gte", "3", {3, 8})]
    every_op += [("lt", "3", {0}), ("lte", "3", {0, 3})]
    for op, value, hits in every_op:
        page.select_option("#query select[name=op]", op)
        page.fill("#query input[name=value]", value)
        page.select_option("#query select[name=type]", "number")
        page.click("#query button")
        want = {f"{prefix}-{i}" for i in _which(hits)}
        _eventually(lambda want=want: _hits(page, prefix) == want)  # type: ignore[misc]
    tab.shot("machine-query")
    page.evaluate("where => { location.hash = where }", f"#/m/courier/i/{prefix}-3")
    page.wait_for_selector("#timers td:has-text('xstate.after.3600000.courier.received')")
    empty = httpx.get(f"{live.url}/machines/courier/i/{prefix}-0/timers", headers=admin)
    assert empty.json() == {"timers": []}
    tab.shot("instance-timers")


def _which(values: set[int]) -> set[int]:
    # Instance i was created with got [0, 0, 3, 7][i]; instance 3 then received one.
    gots = [0, 0, 3, 8]
    return {i for i, got in enumerate(gots) if got in values}


def _hits(page: Any, prefix: str) -> set[str]:
    names = page.eval_on_selector_all("#query-results a", "links => links.map(a => a.textContent)")
    return {n for n in names if n.startswith(prefix)}


def _counts(live: Server) -> dict[str, int]:
    admin = live.headers({"sub": "admin"})
    listed = httpx.get(f"{live.url}/machines/courier/i", headers=admin).json()["instances"]
    counts: dict[str, int] = {}
    for instance in listed:
        state = httpx.get(
            f"{live.url}/machines/courier/i/{instance['slug']}/admin", headers=admin
        ).json()["state"]
        counts[f"courier.{state}"] = counts.get(f"courier.{state}", 0) + 1
    return counts


def test_dead_letters_are_listed_and_redelivered_from_the_page_and_the_cli(
    tab: Tab, live: Server
) -> None:
    admin = live.headers({"sub": "admin"})
    receiver, senders = _name(), [_name(), _name()]
    for name in (receiver, *senders):
        made = httpx.post(f"{live.url}/machines/courier", json={"slug": name}, headers=admin)
        assert made.status_code == 200, made.text
    go = {"event": {"type": "go", "to": receiver}}
    for sender in senders:
        sent = httpx.post(f"{live.url}/machines/courier/i/{sender}/events", json=go, headers=admin)
        assert sent.status_code == 200, sent.text

    def letters() -> list[dict[str, Any]]:
        found = httpx.get(f"{live.url}/dead-letters", headers=admin).json()["deadLetters"]
        return [d for d in found if d["to"]["machineInstanceName"] == receiver]

    _eventually(lambda: len(letters()) == 2)  # 5 attempts each: about 15 s of back-off
    first, second = sorted(letters(), key=lambda d: d["from"]["machineInstanceName"])
    assert {first["from"]["machineInstanceName"], second["from"]["machineInstanceName"]} == set(
        senders
    )
    assert first["from"]["machineName"] == "courier" and first["event"]["type"] == "msg"
    assert first["attempts"] == 5 and live.creds["orgId"] not in first["error"]
    opened = httpx.post(
        f"{live.url}/machines/courier/i/{receiver}/events", json={"event": "open"}, headers=admin
    )
    assert opened.status_code == 200, opened.text

    cli = Cli(live.creds_path.parent)
    listed = cli("dead-letters", "list", "--json").json()["deadLetters"]
    assert {d["id"] for d in listed} >= {first["id"], second["id"]}
    table = cli("dead-letters", "list").stdout
    assert f"courier/{receiver}" in table and "not open yet" in table

    page = tab.page
    tab.sign_in("#/dead-letters")
    row = page.locator(f"#dead-letters tr[data-id='{first['id']}']")
    row.wait_for()
    assert "not open yet" in row.inner_text()
    tab.shot("dead-letters")
    row.locator("button.redeliver").click()
    row.wait_for(state="detached")
    done = cli("dead-letters", "redeliver", "--id", str(second["id"]))
    assert done.stdout.strip() == f"dead letter {second['id']} is back in its instance's inbox"

    def received() -> bool:
        state = httpx.get(f"{live.url}/machines/courier/i/{receiver}/admin", headers=admin)
        return bool(state.json()["context"]["public"]["got"] == 2)

    _eventually(received)
    assert letters() == []
    again = httpx.post(f"{live.url}/dead-letters/{first['id']}/redeliver", headers=admin)
    assert (again.status_code, again.json()["code"]) == (404, "dead-letter-not-found")
    missing = cli("dead-letters", "redeliver", "--id", str(second["id"]), ok=False)
    assert (missing.status, missing.error) == (
        1,
        f"error: no dead letter {second['id']} (dead-letter-not-found)",
    )


def test_untrusted_names_and_context_render_as_text(tab: Tab, live: Server) -> None:
    admin = live.headers({"sub": "admin"})
    name = _name()
    context = {"public": {"got": 0, "open": False, "note": HOSTILE}, HOSTILE: [HOSTILE]}
    made = httpx.post(
        f"{live.url}/machines/courier", json={"slug": name, "context": context}, headers=admin
    )
    assert made.status_code == 200, made.text
    opened = httpx.post(
        f"{live.url}/machines/courier/i/{name}/events", json={"event": "open"}, headers=admin
    )
    assert opened.status_code == 200, opened.text
    context["public"]["open"] = True
    page = tab.page
    tab.sign_in(f"#/m/courier/i/{name}")
    page.wait_for_selector("#full-context")
    page.wait_for_selector("#logs:has-text('opened')", timeout=15_000)
    assert f"opened <b>{HOSTILE}</b>" in page.inner_text("#logs")
    assert json.loads(page.inner_text("#full-context")) == context
    assert json.loads(page.inner_text("#public-context"))["note"] == HOSTILE
    assert page.locator("main img, main b, main script").count() == 0
    tab.shot("hostile-context")

    # A name the API refuses still reaches the page, through the address bar.
    script = "<script>alert(1)</script>"
    page.evaluate("where => { location.hash = where }", f"#/m/toggler/i/{quote(script, safe='')}")
    page.wait_for_selector("#page-title")
    assert page.inner_text("#page-title") == f"m / toggler / i / {script}"
    assert re.fullmatch(r".+ \((not-found|invalid-parameter)\)", page.inner_text("[role=alert]"))
    assert page.locator("main script").count() == 0
    # The refused request is logged as a failed load, and only that.
    tab.problems = [p for p in tab.problems if "Failed to load resource" not in p]
    tab.shot("hostile-name")


def test_hostile_state_and_event_names_are_drawn_as_text(tab: Tab, live: Server) -> None:
    admin = live.headers({"sub": "admin"})
    name = _name()
    made = httpx.post(f"{live.url}/machines/hostile", json={"slug": name}, headers=admin)
    assert made.status_code == 200, made.text
    page = tab.page
    tab.sign_in()
    drawn = page.locator("section.machine[data-machine=hostile] svg")
    drawn.wait_for()
    # Wrapped labels are several <tspan>s: compare without white space.
    words = "".join(drawn.text_content().split())
    assert "<script>alert(1)</script>" in words
    assert "<imgsrc=xonerror=alert(2)>" in words
    assert 'a:b;c"d{e}#f;%%g' in words
    assert drawn.locator("script, img, foreignObject").count() == 0
    page.evaluate("where => { location.hash = where }", f"#/m/hostile/i/{name}")
    page.wait_for_selector("#instance-diagram g[data-active='x --> y.<script>alert(1)</script>']")
    tab.shot("hostile-diagram")


def test_upgrade_dry_run_is_shown_as_a_diff(tab: Tab, live: Server) -> None:
    admin = live.headers({"sub": "admin"})
    base = f"{live.url}/machines/toggler"
    # A version that counts the ons instead of the offs: replaying diverges at once.
    source = (ROOT / "examples" / "toggler.py").read_text()
    counts_ons = source.replace(
        '"on": {"on": {"toggle": {"target": "off", "actions": "count"}}},\n'
        '            "off": {"on": {"toggle": "on"}},',
        '"on": {"on": {"toggle": "off"}},\n'
        '            "off": {"on": {"toggle": {"target": "on", "actions": "count"}}},',
    )
    assert counts_ons != source
    made = httpx.post(
        f"{base}/v", json={"code": counts_ons, "makeCurrent": False}, headers=admin, timeout=60
    )
    assert made.status_code == 200, made.text
    v2 = made.json()["machineVersionId"]
    v1 = httpx.get(base, headers=admin).json()["machine"]["currentVersion"]["id"]
    identity = (ROOT / "examples" / "migrations" / "tic_tac_toe_y_to_o.py").read_text()
    body = {"fromMachineVersionId": v1, "toMachineVersionId": v2, "code": identity}
    signed = httpx.post(f"{base}/migrations", json=body, headers=admin).json()
    done = httpx.put(
        f"{base}/migrations/{signed['machineVersionMigrationId']}", headers=admin, timeout=60
    )
    assert done.is_success, done.text
    name = _name()
    me = live.headers({"sid": name})
    assert httpx.post(base, json={"slug": name}, headers=me).is_success
    assert httpx.post(f"{base}/i/{name}/events", json={"event": "toggle"}, headers=me).is_success

    page = tab.page
    tab.sign_in(f"#/m/toggler/i/{name}")
    page.wait_for_selector("select[name=target]")
    page.select_option("select[name=target]", v2)
    page.click("text=Dry run")
    page.wait_for_selector("#dry-run .diff")
    assert "diverges" in page.inner_text("#dry-run-summary")
    removed = page.locator("#dry-run .diff-del").all_inner_texts()
    added = page.locator("#dry-run .diff-add").all_inner_texts()
    assert any('"toggleCount": 1' in line for line in removed)
    assert any('"toggleCount": 0' in line for line in added)
    tab.shot("upgrade-dry-run")
