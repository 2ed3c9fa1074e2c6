"""Load an HTML file in headless Chromium and report console errors, network requests and a screenshot.

Talks to the browser over the DevTools protocol on a pipe (``--remote-debugging-pipe``: fd 3 in, fd 4 out,
one JSON message per NUL-terminated chunk), so it needs only the standard library. Used by
``tests/reports/test_reports_browser.py`` and runnable by hand or from a nox session::

    python tests/reports/report_browser.py runs/demo/report.html --screenshot /tmp/pareto.png
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BrowserError", "PageCheck", "check_page", "find_chromium"]

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-debugging-pipe",
)
_LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")


class BrowserError(RuntimeError):
    """The browser could not be started or did not answer in time."""


@dataclass
class PageCheck:
    """What loading the page showed: errors, requests to anything but local files, the element's picture."""

    errors: list[str] = field(default_factory=list)
    remote_requests: list[str] = field(default_factory=list)
    box: dict[str, float] = field(default_factory=dict)
    screenshot: bytes = b""
    values: dict[str, Any] = field(default_factory=dict)


def find_chromium() -> str | None:
    """The Chromium binary: ``$CHROMIUM`` if set, else chromium / chromium-browser / chrome on PATH."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    names = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
    return next((p for p in map(shutil.which, names) if p), None)


class _Pipe:
    """A DevTools client over the two pipes; keeps every event it reads for later inspection."""

    def __init__(self, write_fd: int, read_fd: int, deadline: float) -> None:
        self.write_fd, self.read_fd, self.deadline = write_fd, read_fd, deadline
        self.buffer = b""
        self.events: list[dict[str, Any]] = []
        self.next_id = 0

    def call(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.write_fd, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise BrowserError(f"{method} failed: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> dict[str, Any]:
        while True:
            for event in self.events:
                if event.get("method") == method:
                    return event
            self.events.append(self._read())

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            left = self.deadline - time.monotonic()
            if left <= 0 or not select.select([self.read_fd], [], [], left)[0]:
                raise BrowserError("the browser did not answer in time")
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk:
                raise BrowserError("the browser closed its DevTools pipe (did it crash? see its stderr)")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)


def _high(fd: int) -> int:
    """Move ``fd`` above 9 (close-on-exec), so the shell's ``3<&N 4>&M`` redirections cannot clash."""
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return new


def _launch(binary: str, profile: str, size: tuple[int, int], log: Any) -> tuple[subprocess.Popen, int, int]:
    cmd_r, cmd_w = (_high(fd) for fd in os.pipe())
    res_r, res_w = (_high(fd) for fd in os.pipe())
    script = f'exec "$0" "$@" 3<&{cmd_r} 4>&{res_w} {cmd_r}<&- {res_w}>&-'
    args = [*FLAGS, f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}", "about:blank"]
    proc = subprocess.Popen(
        [shutil.which("bash") or "/bin/bash", "-c", script, binary, *args],
        pass_fds=(cmd_r, res_w),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    os.close(cmd_r)
    os.close(res_w)
    return proc, cmd_w, res_r


def _errors(events: list[dict[str, Any]]) -> list[str]:
    out = []
    for ev in events:
        method, params = ev.get("method"), ev.get("params", {})
        if method == "Runtime.exceptionThrown":
            det = params.get("exceptionDetails", {})
            out.append(f"uncaught: {det.get('exception', {}).get('description') or det.get('text')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            out.append(
                "console."
                + params["type"]
                + ": "
                + " ".join(str(a.get("value", a.get("description"))) for a in params.get("args", []))
            )
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            out.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".strip())
    return out


def _evaluate(pipe: _Pipe, session: str, expression: str) -> Any:
    result = pipe.call(
        "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}, session
    )
    if "exceptionDetails" in result:
        raise BrowserError(f"evaluating {expression!r} threw: {result['exceptionDetails'].get('text')}")
    return result.get("result", {}).get("value")


_READY = """new Promise(function (done) {
  var start = Date.now();
  (function poll() {
    var el = document.getElementById(%s);
    var drawn = el && el.querySelector('.main-svg');
    if (drawn || Date.now() - start > %d) { setTimeout(function () { done(!!el); }, 300); }
    else { setTimeout(poll, 50); }
  })();
})"""


def check_page(
    path: str | Path,
    *,
    element_id: str = "pareto-plot",
    expressions: dict[str, str] | None = None,
    chromium: str | None = None,
    size: tuple[int, int] = (1280, 1600),
    timeout: float = 90.0,
    render_wait: float = 15.0,
) -> PageCheck:
    """Open ``path`` in headless Chromium, wait (up to ``render_wait`` s) for a plotly plot to render in the
    element, screenshot it, then evaluate ``expressions`` (name -> JavaScript, after the screenshot) and
    return what was seen. ``timeout`` bounds the whole conversation with the browser."""
    binary = chromium or find_chromium()
    if binary is None:
        raise BrowserError("no chromium on PATH (apt-get install -y chromium, or set $CHROMIUM)")
    url = Path(path).resolve().as_uri()
    with (
        tempfile.TemporaryDirectory(prefix="report-browser-") as tmp,
        open(Path(tmp) / "stderr.log", "wb") as log,
    ):
        proc, write_fd, read_fd = _launch(binary, str(Path(tmp) / "profile"), size, log)
        pipe = _Pipe(write_fd, read_fd, time.monotonic() + timeout)
        try:
            return _drive(pipe, url, element_id, expressions or {}, size, render_wait)
        except BrowserError as exc:
            log.flush()
            tail = (Path(tmp) / "stderr.log").read_text(errors="replace")[-2000:]
            raise BrowserError(f"{exc}; chromium stderr ends with:\n{tail}") from exc
        finally:
            _close(pipe, proc, write_fd, read_fd)


def _drive(
    pipe: _Pipe,
    url: str,
    element_id: str,
    expressions: dict[str, str],
    size: tuple[int, int],
    render_wait: float,
) -> PageCheck:
    targets = pipe.call("Target.getTargets")["targetInfos"]
    page = next(t for t in targets if t["type"] == "page")
    session = pipe.call("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True})["sessionId"]
    for domain in ("Runtime", "Log", "Page", "Network"):
        pipe.call(f"{domain}.enable", {}, session)
    pipe.call(
        "Emulation.setDeviceMetricsOverride",
        {"width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": False},
        session,
    )
    pipe.call("Page.navigate", {"url": url}, session)
    pipe.wait_for("Page.loadEventFired")
    check = PageCheck()
    if not _evaluate(pipe, session, _READY % (json.dumps(element_id), int(render_wait * 1000))):
        check.errors.append(f"no element with id {element_id!r} on the page")
    else:
        check.box = _evaluate(
            pipe,
            session,
            f"""(function () {{
            var r = document.getElementById({json.dumps(element_id)}).getBoundingClientRect();
            var x = r.left + window.scrollX, y = r.top + window.scrollY;
            return {{x: x, y: y, width: r.width, height: r.height}};
        }})()""",
        )
        shot = pipe.call(
            "Page.captureScreenshot",
            {"format": "png", "clip": {**check.box, "scale": 1}, "captureBeyondViewport": True},
            session,
        )
        check.screenshot = base64.b64decode(shot["data"])
    for name, expression in expressions.items():
        check.values[name] = _evaluate(pipe, session, expression)
    session_events = [e for e in pipe.events if e.get("sessionId") == session]
    check.errors += _errors(session_events)
    check.remote_requests = [
        e["params"]["request"]["url"]
        for e in session_events
        if e.get("method") == "Network.requestWillBeSent"
        and not e["params"]["request"]["url"].startswith(_LOCAL_SCHEMES)
    ]
    return check


def _close(pipe: _Pipe, proc: subprocess.Popen, write_fd: int, read_fd: int) -> None:
    try:
        pipe.deadline = time.monotonic() + 5
        pipe.call("Browser.close")
    except (BrowserError, OSError):
        pass
    for fd in (write_fd, read_fd):
        os.close(fd)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    """Check a page by hand: print errors and remote requests, save the screenshot; exit 1 on any error."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path)
    parser.add_argument("--element", default="pareto-plot")
    parser.add_argument("--screenshot", type=Path)
    args = parser.parse_args(argv)
    check = check_page(args.html, element_id=args.element)
    if args.screenshot:
        args.screenshot.write_bytes(check.screenshot)
    print(
        json.dumps(
            {"errors": check.errors, "remote_requests": check.remote_requests, "box": check.box}, indent=2
        )
    )
    return 1 if check.errors or check.remote_requests else 0


if __name__ == "__main__":
    sys.exit(main())
