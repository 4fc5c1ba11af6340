"""What every request passes before a route sees it: the Host it names (a server on loopback
answers no other name, so a site cannot reach it through DNS rebinding), the API key where one
is set (compared in constant time), and a bound on how long the server waits for a client to
take what it sends (a client that stops reading loses its connection, not a worker)."""

import asyncio
import hmac
import logging
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
KEYED = ("/v1/", "/metrics")  # the paths an API key guards; the page and /health stay open
log = logging.getLogger("speedy.serve")


class Stalled(Exception):
    """The client took none of a response's bytes for the send timeout."""


@dataclass(frozen=True)
class Policy:
    """Who may call: the Host names served (None: any) and the API key (None: none)."""

    hosts: frozenset[str] | None
    api_key: str | None
    send_s: float


def host_name(host: str) -> str:
    """The name part of a Host header, without its port."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.partition(":")[0]


class Guard:
    """ASGI middleware applying a `Policy` to every HTTP request."""

    def __init__(self, app: ASGIApp, policy: Policy) -> None:
        self.app, self.policy = app, policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if refusal := self.refusal(scope):
            await refusal(scope, receive, send)
            return

        async def timed(message: Message) -> None:
            try:
                await asyncio.wait_for(send(message), self.policy.send_s)
            except TimeoutError:
                raise Stalled from None

        try:
            await self.app(scope, receive, timed)
        except Stalled:
            log.warning(
                "closed %s: its client read nothing for %g s", scope["path"], self.policy.send_s
            )

    def refusal(self, scope: Scope) -> JSONResponse | None:
        """The error for a request the policy refuses, if it does."""
        headers = Headers(scope=scope)
        hosts = self.policy.hosts
        if hosts is not None and host_name(headers.get("host", "")) not in hosts:
            return JSONResponse(
                {
                    "error": f"this server does not answer to the host '{headers.get('host', '')}'",
                    "fix": f"call it as {' or '.join(sorted(hosts))}, or start it with "
                    "--allowed-host NAME",
                },
                400,
            )
        key = self.policy.api_key
        if key is None or not scope["path"].startswith(KEYED):
            return None
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), key.encode()):
            return None
        return JSONResponse(
            {
                "error": "a valid API key is needed",
                "fix": "send the header Authorization: Bearer KEY",
            },
            401,
            {"WWW-Authenticate": "Bearer"},
        )
