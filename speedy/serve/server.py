"""The server: the catalog loaded and warmed up, the app behind its guard, uvicorn until a
signal, and a drain that tells the truth."""

import asyncio
import signal
import socket
from functools import partial
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn
from starlette.types import ASGIApp

from speedy.console import out, shown
from speedy.errors import SpeedyError
from speedy.serve.guard import LOOPBACK_NAMES, Guard, Policy, host_name
from speedy.serve.options import ServeOptions

if TYPE_CHECKING:
    from speedy.serve.admission import Admission
    from speedy.serve.app import Server
    from speedy.serve.catalog import Catalog


def served_hosts(options: ServeOptions) -> frozenset[str] | None:
    """The Host names served: those allowed, else a loopback server's own names (None: any, on
    another address)."""
    if options.allowed_hosts:
        return frozenset(map(host_name, options.allowed_hosts)) | LOOPBACK_NAMES
    loopback = options.host in ("localhost", "::1") or options.host.startswith("127.")
    return LOOPBACK_NAMES | {host_name(options.host)} if loopback else None


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


class Draining(uvicorn.Server):
    """uvicorn, turning away the waiting requests at once when a signal stops it (the running
    ones finish, within the grace period)."""

    def __init__(self, config: uvicorn.Config, admission: "Admission") -> None:
        super().__init__(config)
        self.admission = admission
        self.loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().startup(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.admission.drain)


def guarded_app(server: "Server", options: ServeOptions) -> ASGIApp:
    """`server`'s routes behind the options' host, key and send-time guard, and CORS."""
    from starlette.middleware.cors import CORSMiddleware

    app: ASGIApp = Guard(
        server.app(),
        Policy(served_hosts(options), options.api_key, options.send_s),
    )
    if options.cors_origins:
        app = CORSMiddleware(
            app,
            allow_origins=options.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["X-RTF", "X-Audio-Seconds", "X-Compute-Seconds", "X-Sample-Rate"],
        )
    return app


def catalog_server(catalog: "Catalog", options: ServeOptions) -> "Server":
    """The routes over `catalog` (warmed up here), with the options' limits and admission."""
    from speedy.serve.admission import Admission
    from speedy.serve.app import Server
    from speedy.serve.reading import Limits

    catalog.warm_up()
    limits = Limits(int(options.max_body_mb * 1e6), options.max_chars, options.read_s)
    return Server(catalog, Admission(options.workers, options.queue, options.wait_s), limits)


def serve(options: ServeOptions) -> None:
    """Load the artifacts, then serve until SIGINT/SIGTERM: the running requests finish, the
    waiting ones get 503; an error if the grace period ran out with requests running."""
    from speedy import runtime
    from speedy.serve.catalog import Catalog
    from speedy.serve.connections import timed_protocol

    catalog = Catalog.load(
        options.artifacts,
        options.vocoders,
        options.chunk_seconds,
        partial(
            runtime.load, device=options.device, threads=options.threads, verify=options.verify
        ),
    )
    server = catalog_server(catalog, options)
    admission = server.admission
    app = guarded_app(server, options)
    uvicorn_server = Draining(
        uvicorn.Config(
            app,
            http=timed_protocol(options.read_s),
            log_level="warning",
            limit_concurrency=options.max_connections,
            timeout_graceful_shutdown=options.grace_s,  # type: ignore[arg-type]  # a float works
        ),
        admission,
    )
    sock = listen(options.host, options.port)
    host, port = sock.getsockname()[:2]
    names = ", ".join([*catalog.voices, *catalog.uploads])
    out.print(f"serving {shown(names)} on http://{host}:{port}/ (Ctrl-C stops)", soft_wrap=True)
    for sig in (signal.SIGINT, signal.SIGTERM):  # uvicorn drains on them, then raises them again
        signal.signal(sig, signal.SIG_IGN)
    uvicorn_server.run(sockets=[sock])
    admission.executor.shutdown()
    turned = f"{admission.turned_away} waiting turned away with 503"
    if server.cut:
        raise SpeedyError(
            f"stopped with {server.cut} request(s) cut off after the {options.grace_s:g} s grace "
            f"period ({turned})",
            "give running requests longer to finish with --grace",
        )
    out.print(f"stopped: the running requests were finished, {turned}")
