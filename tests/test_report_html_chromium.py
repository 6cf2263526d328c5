"""report.html in a real browser: headless Chromium opens it, and nothing goes wrong.

Chromium is driven over the DevTools protocol on ``--remote-debugging-pipe``
(JSON messages ending in NUL on file descriptors 3 and 4), so the test needs
no Python package and no downloaded browser: Debian's ``chromium`` package
(``apt-get install -y chromium``; ``make test`` installs it when missing).
The test fails, with that advice, when Chromium is not there.

It records console errors, uncaught exceptions, browser log errors (where
Chromium reports a refused or failed load) and every request; opens the page
at desktop and at phone width; and saves a full-page screenshot of each
under the test's tmp dir. The harness is itself checked against a page that
does break the rules, so a silent harness cannot pass the report.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import io
import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from gridmesh.scenarios import parse_scenario, run_scenario, write_outputs
from gridmesh.scenarios._html import PLOT_TITLES
from tests.test_report_html import SMALL

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
]
TIMEOUT_S = 60.0

# What the page reports about itself once loaded (DevTools evaluation is not subject to its CSP).
PAGE_FACTS = """JSON.stringify({
  text: document.body.innerText,
  title: document.title,
  images: [...document.images].map(i => ({alt: i.alt, loaded: i.complete && i.naturalWidth > 0,
                                          width: i.getBoundingClientRect().width})),
  scripts: document.scripts.length,
  scrollWidth: document.documentElement.scrollWidth,
  innerWidth: window.innerWidth,
})"""


def chromium_binary() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail(
            "Chromium is not installed, and this test opens report.html in it: install it with "
            "`apt-get install -y chromium` (Debian/Ubuntu; `make test` does this) so that "
            "`chromium` is on PATH",
            pytrace=False,
        )
    return found


@dataclass
class Visit:
    """What happened while one page was open."""

    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    screenshot: bytes = b""


class DevTools:
    """A Chromium process and one DevTools connection to it."""

    def __init__(self, binary: str, profile: Path) -> None:
        # Our ends stay here; the browser's ends become its fds 3 (commands) and 4 (replies).
        commands_r, self._commands_w = os.pipe()
        self._replies_r, replies_w = os.pipe()
        # High numbers, so that 3<& and 4>& cannot overwrite one of them (bash, not dash, takes
        # descriptors above 9 in redirections).
        theirs = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (commands_r, replies_w)]
        os.close(commands_r)
        os.close(replies_w)
        self.log_path = profile.with_suffix(".log")
        profile.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    "/bin/bash",
                    "-c",
                    f'exec "$0" "$@" 3<&{theirs[0]} 4>&{theirs[1]} {theirs[0]}<&- {theirs[1]}>&-',
                    binary,
                    *FLAGS,
                    f"--user-data-dir={profile}",
                    "about:blank",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=theirs,
            )
        for fd in theirs:
            os.close(fd)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def close(self) -> None:
        with contextlib.suppress(OSError, AssertionError):
            self.send("Browser.close")
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands_w)
        os.close(self._replies_r)

    def send(self, method: str, params: dict[str, Any] | None = None, **extra: Any) -> Any:
        """One command; returns its result, keeping the events that came meanwhile."""
        self._next_id += 1
        command = {"id": self._next_id, "method": method, "params": params or {}, **extra}
        os.write(self._commands_w, json.dumps(command).encode() + b"\0")
        reply = self._until(lambda message: message.get("id") == command["id"], method)
        assert "error" not in reply, f"{method}: {reply['error']}"
        return reply["result"]

    def wait_event(self, method: str) -> dict[str, Any]:
        for index, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(index)
        return self._until(lambda message: message.get("method") == method, method, keep=False)

    def _until(self, wanted: Any, what: str, *, keep: bool = True) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                message = json.loads(raw)
                if wanted(message):
                    return dict(message)
                if "method" in message:
                    self.events.append(message)
            left_s = deadline - time.monotonic()
            ready, _, _ = select.select([self._replies_r], [], [], max(0.0, left_s))
            if not ready:
                log = self.log_path.read_text(errors="replace")[-2000:]
                raise AssertionError(f"no {what} from Chromium in {TIMEOUT_S} s; its log:\n{log}")
            chunk = os.read(self._replies_r, 1 << 20)
            if not chunk:
                log = self.log_path.read_text(errors="replace")[-2000:]
                raise AssertionError(f"Chromium exited waiting for {what}; its log:\n{log}")
            self._buffer += chunk

    def visit(self, url: str, *, width: int, height: int, mobile: bool) -> Visit:
        """Open ``url`` in a new tab of the given size; screenshot the whole page."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        on = {"sessionId": session["sessionId"]}
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.send(f"{domain}.enable", **on)
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
            **on,
        )
        self.events.clear()
        self.send("Page.navigate", {"url": url}, **on)
        self.wait_event("Page.loadEventFired")
        visit = Visit()
        value = self.send(
            "Runtime.evaluate", {"expression": PAGE_FACTS, "returnByValue": True}, **on
        )
        visit.facts = json.loads(value["result"]["value"])
        size = self.send("Page.getLayoutMetrics", **on)["cssContentSize"]
        shot = self.send(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": size["height"], "scale": 1},
            },
            **on,
        )
        visit.screenshot = base64.b64decode(shot["data"])
        for event in self.events:
            _record(visit, event)
        self.send("Target.closeTarget", {"targetId": target})
        return visit


def _record(visit: Visit, event: dict[str, Any]) -> None:
    method, params = event["method"], event.get("params", {})
    if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
        visit.errors.append(f"console.{params['type']}: {params.get('args')}")
    elif method == "Runtime.exceptionThrown":
        visit.errors.append(f"uncaught: {params['exceptionDetails'].get('text')}")
    elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
        visit.errors.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
    elif method == "Network.requestWillBeSent":
        visit.requests.append(params["request"]["url"])
    elif method == "Network.loadingFailed":
        visit.failed.append(f"{params.get('errorText')} ({params.get('blockedReason', '')})")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevTools]:
    devtools = DevTools(chromium_binary(), tmp_path_factory.mktemp("chromium") / "profile")
    try:
        yield devtools
    finally:
        devtools.close()


def blank_share(png: bytes) -> tuple[int, float]:
    """Distinct colours, and the share of pixels that are not the page's white."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.thumbnail((400, 4000))
    colours = image.getcolors(maxcolors=image.width * image.height)
    assert colours is not None
    white = sum(count for count, colour in colours if colour == (255, 255, 255))
    return len(colours), 1.0 - white / (image.width * image.height)


def test_the_report_opens_in_chromium_without_errors_or_requests(
    browser: DevTools, tmp_path: Path
) -> None:
    report: dict[str, Any] = run_scenario(parse_scenario(SMALL))
    report["dr_reduction"] = {  # as a demand-response scenario will report it
        "time_s": [0.0, 60.0, 120.0, 180.0, 240.0],
        "requested_kw": [0.0, 500.0, 500.0, 500.0, 0.0],
        "achieved_kw": [0.0, 380.0, 470.0, 455.0, 10.0],
    }
    report["imbalance"] = {
        "time_s": [0.0, 1.0, 2.0, 3.0, 4.0],
        "imbalance_kw": [120.0, 60.0, -15.0, 8.0, 2.0],
        "centralized_optimum_kw": [0.0, 0.0, 0.0, 0.0, 0.0],
    }
    report["load_shifted"] = {  # as [devices] reports it
        "time_s": [0.0, 1.0, 2.0, 3.0, 4.0],
        "shifted_kw": [0.0, 0.0, 35.5, 47.5, 47.5],
    }
    write_outputs(report, tmp_path, scenario=parse_scenario(SMALL), source=SMALL)
    url = (tmp_path / "report.html").as_uri()

    desktop = browser.visit(url, width=1200, height=900, mobile=False)
    (tmp_path / "report-desktop.png").write_bytes(desktop.screenshot)
    assert desktop.errors == []
    assert desktop.failed == []
    assert [request for request in desktop.requests if not request.startswith("data:")] == [url]
    facts = desktop.facts
    assert facts["scripts"] == 0
    assert "report-small" in facts["title"] and "report-small" in facts["text"]
    for title in PLOT_TITLES.values():
        assert title in facts["text"], title
    assert len(facts["images"]) == len(PLOT_TITLES)
    assert all(image["loaded"] and image["alt"] for image in facts["images"]), facts["images"]
    assert len(desktop.screenshot) > 10_000
    colours, inked = blank_share(desktop.screenshot)
    assert colours > 50 and inked > 0.03, f"a blank page? {colours} colours, {inked:.1%} inked"

    # A phone: one column, nothing wider than the screen, plots scaled to fit.
    phone = browser.visit(url, width=390, height=844, mobile=True)
    (tmp_path / "report-phone.png").write_bytes(phone.screenshot)
    assert phone.errors == [] and phone.failed == []
    assert phone.facts["scrollWidth"] <= phone.facts["innerWidth"] == 390
    assert all(0 < image["width"] <= 390 for image in phone.facts["images"])


def test_the_harness_sees_console_errors_and_external_requests(
    browser: DevTools, tmp_path: Path
) -> None:
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><head><title>broken</title></head><body><p>broken</p>"
        '<img src="http://192.0.2.1/missing.png" alt="">'
        "<script>console.error('from the page'); undefined_function();</script></body></html>",
        encoding="utf-8",
    )
    visit = browser.visit(page.as_uri(), width=800, height=600, mobile=False)
    assert any("from the page" in error for error in visit.errors), visit.errors
    assert any(error.startswith("uncaught:") for error in visit.errors), visit.errors
    assert "http://192.0.2.1/missing.png" in visit.requests
    # What the report's Content-Security-Policy refuses is reported as an error too.
    page.write_text(
        '<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; img-src data:\"><title>refused</title></head>"
        '<body><img src="http://192.0.2.1/missing.png" alt="x"></body></html>',
        encoding="utf-8",
    )
    visit = browser.visit(page.as_uri(), width=800, height=600, mobile=False)
    assert any("192.0.2.1" in error for error in visit.errors), visit.errors
