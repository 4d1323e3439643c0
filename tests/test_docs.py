"""Every ```python block of docs/*.md and the README runs, so the docs cannot drift:
the blocks of one file run in order in one namespace (a later block uses what an
earlier one defined), in a fresh folder, with top-level ``await`` allowed. Blocks that
talk to a server get a real one (``backstate serve`` on a free port, its credentials
found as users find them); a PostgreSQL URL is a throwaway database's."""

from __future__ import annotations

import ast
import asyncio
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server.test_e2e import Server
from tests.store import postgres

ROOT = Path(__file__).resolve().parents[1]
FILES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
DOCS_PG = "postgresql://postgres@127.0.0.1/backstate"
# Blocks that show the shape of a call against a hosted API or a browser's session, and
# cannot run here, named by their file and first line (so an edit above them does not
# move them). Each is listed, with why.
NOT_RUNNABLE = {
    ("client.md", "from backstate.client import AsyncClient, AnonymousAuth"): (
        "an AsyncClient for https://api.example.com and an anonymous org"
    ),
}


def blocks(path: Path) -> list[tuple[int, str]]:
    text = path.read_text()
    return [
        (text[: m.start()].count("\n") + 2, m.group(1))
        for m in re.finditer(r"```python\n(.*?)```", text, re.S)
    ]


def _key(path: Path, code: str) -> tuple[str, str]:
    return path.name, code.split("\n", 1)[0].strip()


def cases() -> Iterator[Any]:
    for path in FILES:
        for line, code in blocks(path):
            reason = NOT_RUNNABLE.get(_key(path, code))
            marks = [pytest.mark.xfail(reason=reason, run=False)] if reason else []
            yield pytest.param(path, line, id=f"{path.name}:{line}", marks=marks)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("docs"))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.mark.parametrize(("path", "line"), list(cases()))
def test_code_block_runs(
    path: Path, line: int, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "examples").symlink_to(ROOT / "examples")  # as from the project's folder
    if path.name == "client.md":
        server: Server = request.getfixturevalue("server")
        monkeypatch.setenv("BACKSTATE_HOME", str(server.creds_path.parent))
    with _postgres(path) as url:
        namespace: dict[str, Any] = {"__name__": "docs"}
        for at, code in blocks(path):
            if _key(path, code) in NOT_RUNNABLE and at != line:
                continue
            _run(code.replace(DOCS_PG, url), f"{path.name}:{at}", namespace)
            if at == line:
                return


def _postgres(path: Path) -> Any:
    if DOCS_PG in path.read_text():
        return postgres.throwaway_database()
    return _nothing()


class _nothing:
    def __enter__(self) -> str:
        return DOCS_PG

    def __exit__(self, *exc: object) -> None:
        pass


def _run(code: str, where: str, namespace: dict[str, Any]) -> None:
    compiled = compile(code, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(compiled, namespace)  # a coroutine when the block awaits at top level
    if asyncio.iscoroutine(result):
        asyncio.run(result)


def test_every_block_not_run_is_still_in_the_docs() -> None:
    present = {_key(path, code) for path in FILES for _, code in blocks(path)}
    assert set(NOT_RUNNABLE) <= present


def test_every_file_with_code_is_covered() -> None:
    covered = {path.name for path in FILES if blocks(path)}
    assert {"chart.md", "runtime.md", "client.md", "README.md"} - covered <= {"README.md"}
    assert os.path.isdir(ROOT / "docs")
