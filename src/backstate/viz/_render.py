"""Mermaid text drawn as SVG or PNG by mermaid itself (the copy vendored in
``vendor/``) in a headless Chromium driven by Playwright: the one layout a reader sees
on GitHub and in the dashboard, with no Node at run time.

Chromium is Debian's (``chromium`` on the PATH, or ``BACKSTATE_CHROMIUM``); Playwright
is the optional ``viz`` extra. Without either, ``RenderError`` (renderer-unavailable).
"""

from __future__ import annotations

import os
import shutil
from importlib import resources
from typing import Any

FORMATS = ("svg", "png")
_PAGE = "<!doctype html><html><head><meta charset='utf-8'></head><body></body></html>"


class RenderError(Exception):
    """A diagram cannot be drawn. Codes: renderer-unavailable (no Playwright or no
    Chromium), invalid-diagram (mermaid refused the text)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message


def mermaid_js() -> str:
    return _asset("vendor/mermaid.min.js")


def _asset(name: str) -> str:
    return resources.files("backstate.viz").joinpath(name).read_text("utf-8")


def chromium_path() -> str:
    found = os.environ.get("BACKSTATE_CHROMIUM") or shutil.which("chromium")
    if not found:
        raise RenderError(
            "renderer-unavailable",
            "no Chromium: install Debian's chromium or set BACKSTATE_CHROMIUM",
        )
    return found


def render(text: str, fmt: str) -> bytes:
    """``text`` (mermaid) as ``fmt`` ("svg" or "png")."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}")
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        raise RenderError(
            "renderer-unavailable", "SVG and PNG need Playwright: pip install 'backstate[viz]'"
        ) from None
    executable = chromium_path()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(device_scale_factor=2)
            page.set_content(_PAGE)
            page.add_script_tag(content=mermaid_js())
            page.add_script_tag(content=_asset("labels.js"))
            try:
                svg: str = page.evaluate(_RENDER, text)
            except Error as exc:
                raise RenderError("invalid-diagram", _first_line(str(exc))) from None
            if fmt == "svg":
                return svg.encode("utf-8")
            page.set_content(_PAGE.replace("<body></body>", f"<body>{svg}</body>"))
            shot: Any = page.locator("svg").first.screenshot(omit_background=False)
            return bytes(shot)
        finally:
            browser.close()


_RENDER = """async (text) => {
  mermaid.initialize({startOnLoad: false, securityLevel: "strict", htmlLabels: false,
                      flowchart: {htmlLabels: false}, state: {htmlLabels: false}});
  const { svg } = await mermaid.render("diagram", text);
  const holder = document.createElement("div");
  holder.innerHTML = svg;
  backstateDecodeLabels(holder);
  return holder.innerHTML;
}"""


def _first_line(message: str) -> str:
    lines = [line for line in message.splitlines() if line.strip()]
    return lines[0] if lines else message
