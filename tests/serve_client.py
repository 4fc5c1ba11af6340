"""Test support: `speedy serve` in a child process, a plain HTTP client of it (standard library
only), and the page's Play buttons driven in headless Chromium."""

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speedy.errors import SpeedyError

JSON = {"Content-Type": "application/json"}
ADDRESS = re.compile(r"on http://([\d.]+):(\d+)/")


@dataclass
class Reply:
    """One response, read whole."""

    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Client:
    """Requests to one server; each opens its own connection unless `keep` holds one."""

    host: str
    port: int
    timeout: float = 60.0
    keep: http.client.HTTPConnection | None = field(default=None, repr=False)

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def call(
        self,
        method: str,
        path: str,
        body: bytes | str | dict | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """One request; a dict or str body goes as JSON (`headers` may say otherwise)."""
        connection = self.keep or self.connect()
        data = json.dumps(body) if isinstance(body, dict) else body
        typed = JSON if isinstance(body, dict | str) else {}
        connection.request(method, path, data, {**typed, **(headers or {})})
        response = connection.getresponse()
        headers = {k.lower(): v for k, v in response.getheaders()}
        return Reply(response.status, headers, response.read())

    def health_when(
        self, ready: Callable[[dict], bool], since: float, limit_s: float = 30.0
    ) -> float | None:
        """Seconds from `since` (a `time.perf_counter()`) until GET /health answers 200 with a
        status `ready` accepts, polled every 20 ms; None if not within `limit_s`."""
        while time.perf_counter() - since < limit_s:
            reply = self.call("GET", "/health")
            now = time.perf_counter()
            if reply.status == 200 and ready(reply.json()):
                return now - since
            time.sleep(0.02)
        return None


def idle(health: dict) -> bool:
    """Whether a /health status shows no request running or waiting."""
    return health["running"] == health["waiting"] == 0


@dataclass
class ServerProcess(Client):
    """A `speedy serve` child process, with what it printed so far."""

    process: subprocess.Popen | None = None
    log: list[str] = field(default_factory=list)

    def rss_mib(self) -> float:
        """The server's resident memory now (Linux /proc)."""
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(kib) / 1024


@contextmanager
def spawn(
    args: list[str],
    start_s: float = 120.0,
    env: dict[str, str] | None = None,
    verb: tuple[str, ...] = ("serve",),
    port: int = 0,
) -> Iterator[ServerProcess]:
    """`speedy serve ARGS --port 0` (or another `verb` and `port`) in a child process (`env`:
    added to this one's), once it prints its address; SIGTERM to it afterwards."""
    command = [sys.executable, "-m", "speedy", *verb, *args, "--port", str(port)]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        env={**os.environ, **(env or {})},
    )
    log: list[str] = []
    ready = threading.Event()
    address: list[tuple[str, int]] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            log.append(line)
            if found := ADDRESS.search(line):
                address.append((found[1], int(found[2])))
                ready.set()
        ready.set()  # it exited

    threading.Thread(target=read, daemon=True).start()
    ready.wait(start_s)
    if not address:
        process.kill()
        raise SpeedyError(f"the server did not start: {''.join(log)}", "see its log above")
    try:
        yield ServerProcess(*address[0], process=process, log=log)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(60)


# Debian's Chromium, headless, as root, on a machine with no network or GPU; audio muted.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required", "--mute-audio",
]  # fmt: skip


def play(page: Any, side: str) -> str:
    """Click Play A or B on the page; the timing it then shows (an error shown instead raises)."""
    page.click(f"#play-{side}")
    state = f"document.getElementById('timing-{side}').dataset.state"
    page.wait_for_function(f"['done', 'error'].includes({state})")
    shown = page.inner_text(f"#timing-{side}")
    if page.evaluate(state) == "error":
        raise SpeedyError(f"the page shows an error for {side.upper()}: {shown}", "see above")
    return shown
