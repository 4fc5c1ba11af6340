"""`speedy serve`: optimized artifacts behind an HTTP API and a web page, under a bounded queue.

Starlette on uvicorn: a small, maintained ASGI stack with streaming responses, no more
framework than the six routes need. Sessions load once and are shared by the worker threads.
"""

import signal
import socket
from dataclasses import dataclass

from speedy.console import out, shown
from speedy.errors import SpeedyError


@dataclass(frozen=True)
class ServeOptions:
    artifacts: list[str]  # directories, or NAME=PATH
    vocoders: list[str]
    host: str
    port: int
    workers: int
    queue: int
    wait_s: float
    threads: int
    chunk_seconds: float
    max_chars: int
    max_body_mb: float
    device: str
    verify: bool


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on `host:port` (0: any free port), with a clear error when taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SpeedyError(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            "pass another --port (0 takes any free one) or --host",
        ) from None
    sock.listen(128)
    return sock


def serve(options: ServeOptions) -> None:
    """Load the artifacts, then serve until SIGINT/SIGTERM, finishing the requests in flight."""
    import uvicorn

    from speedy.serve.admission import Admission
    from speedy.serve.app import Limits, Server
    from speedy.serve.catalog import Catalog

    catalog = Catalog.load(
        options.artifacts,
        options.vocoders,
        options.chunk_seconds,
        options.device,
        options.threads,
        options.verify,
    )
    catalog.warm_up()
    limits = Limits(max_body=int(options.max_body_mb * 1e6), max_chars=options.max_chars)
    admission = Admission(options.workers, options.queue, options.wait_s)
    server = uvicorn.Server(
        uvicorn.Config(
            Server(catalog, admission, limits).app(),
            log_level="warning",
            timeout_graceful_shutdown=max(30, int(options.wait_s)),
        )
    )
    sock = listen(options.host, options.port)
    host, port = sock.getsockname()[:2]
    names = ", ".join([*catalog.voices, *catalog.uploads])
    out.print(f"serving {shown(names)} on http://{host}:{port}/ (Ctrl-C stops)", soft_wrap=True)
    for sig in (signal.SIGINT, signal.SIGTERM):  # uvicorn drains on them, then raises them again
        signal.signal(sig, signal.SIG_IGN)
    server.run(sockets=[sock])
    admission.executor.shutdown()
    out.print("stopped: requests in flight were finished")
