"""A headless Chromium driven over the Chrome DevTools Protocol, for the tests of the page `gtalign serve` serves.

Only what those tests need: launch Chromium (Debian's package; installed here when missing and we are root), attach
to its page over a websocket (`websockets`' sync client), navigate, evaluate JavaScript, type into a focused field
(`Input.insertText`) and click at an element's centre (`Input.dispatchMouseEvent`), so the page is used the way a
person uses it rather than by calling its functions.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

INSTALL = "apt-get install -y --no-install-recommends chromium"


def chromium_binary() -> str:
    """Debian's `chromium`, installed with apt when missing and we are root; otherwise an error naming the command."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0:
        raise RuntimeError(f"chromium is not installed; run as root: apt-get update && {INSTALL}")
    subprocess.run(["apt-get", "update"], check=True, capture_output=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(INSTALL.split(), check=True, capture_output=True, env=env)
    found = shutil.which("chromium")
    if not found:
        raise RuntimeError(f"`{INSTALL}` ran but no chromium is on PATH")
    return found


class Page:
    """One page target of a running Chromium, over its DevTools websocket."""

    def __init__(self, ws_url: str) -> None:
        from websockets.sync.client import connect

        self._ws = connect(ws_url, max_size=None, open_timeout=20)
        self._next = 0

    def close(self) -> None:
        self._ws.close()

    def send(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        """Call `method` and return its result (events that arrive meanwhile are dropped)."""
        self._next += 1
        self._ws.send(json.dumps({"id": self._next, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self._ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg.get("id") == self._next:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (awaited if it is a promise), JSON-serialisable."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60.0, what: str = "") -> Any:
        """Poll `expression` until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what or expression} not true after {timeout} s")
            time.sleep(0.1)

    def navigate(self, url: str) -> None:
        self.send("Page.navigate", url=url)
        self.wait_for(
            f"location.href === {json.dumps(url)} && document.readyState === 'complete'", 30, f"loading {url}"
        )

    def type_into(self, selector: str, text: str) -> None:
        """Focus `selector`, clear it and type `text` (an `input` event per insertion, as from a keyboard)."""
        found = f"document.querySelector({json.dumps(selector)})"
        self.evaluate(f"(() => {{ const e = {found}; e.focus(); e.select(); }})()")
        self.send("Input.insertText", text=text)

    def click(self, selector: str) -> None:
        box = self.evaluate(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)


@contextlib.contextmanager
def headless_chromium(timeout: float = 30.0) -> Iterator[Page]:
    """A fresh headless Chromium (its own profile in a temp dir) and its first page; both closed on exit.

    Chromium runs in its own process group, and the whole group is stopped before the profile is removed: its
    helper processes (renderer, utility, crashpad) outlive the browser process for a moment and keep writing into
    the profile, which once made the removal fail with `Directory not empty`."""
    binary = chromium_binary()
    profile = tempfile.mkdtemp(prefix="gtalign-chromium-")
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(
            [
                binary,
                "--headless=new",
                "--no-sandbox",  # root in a container has no user namespace for the sandbox
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",  # Chromium picks a free port and writes it to DevToolsActivePort
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,  # a file, not a pipe: a chatty Chromium must never block on a full pipe
            start_new_session=True,  # its own process group: stopped as a whole on exit
        )
        page: Page | None = None
        try:
            port = _devtools_port(Path(profile) / "DevToolsActivePort", proc, log, timeout)
            targets: Callable[[], list[dict[str, Any]]] = lambda: json.loads(  # noqa: E731
                urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5).read()
            )
            (target,) = [t for t in targets() if t["type"] == "page"]
            page = Page(target["webSocketDebuggerUrl"])
            yield page
        finally:
            if page is not None:
                page.close()
            _stop_group(proc)
            _remove_profile(Path(profile))


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to Chromium's process group, SIGKILL to what is left after 15 s; returns once the browser exited."""
    with contextlib.suppress(ProcessLookupError):  # the group is already gone: nothing to stop
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    with contextlib.suppress(ProcessLookupError):  # helpers that ignored SIGTERM
        os.killpg(proc.pid, signal.SIGKILL)


def _remove_profile(profile: Path, attempts: int = 5) -> None:
    """Remove the profile; a helper that was still exiting may add a file during the first tries (then raise)."""
    for attempt in range(attempts):
        try:
            shutil.rmtree(profile)
            return
        except OSError as e:
            if e.errno != errno.ENOTEMPTY or attempt == attempts - 1:
                raise
            time.sleep(0.5)


def _devtools_port(path: Path, proc: subprocess.Popen[bytes], log: IO[str], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"chromium exited with {proc.returncode}: {log.read()[-3000:]}")
        if path.exists():
            first = path.read_text().split("\n", 1)[0].strip()
            if first.isdigit():
                return int(first)
        if time.monotonic() > deadline:
            raise RuntimeError(f"chromium wrote no {path.name} in {timeout} s")
        time.sleep(0.05)
