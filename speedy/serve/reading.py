"""Reading a request within limits that cost nothing to check: its body's size and pace, its
JSON's depth and numbers, and its fields' types, before any work is queued."""

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from speedy.errors import first_invalid
from speedy.plain_data import too_deep
from speedy.serve.gone import ClientGone

JSON_BYTES = 1 << 20  # a JSON request is a sentence and a few controls: far less than this
JSON_DEPTH = 8
BODY_READS = 3  # a body may take this many read timeouts in all
DIGITS = 32  # the longest integer a JSON request may hold


@dataclass(frozen=True)
class Limits:
    """What one request may carry, and how long its body may take to arrive."""

    max_body: int  # bytes
    max_chars: int  # of text
    read_s: float  # the longest pause while a body arrives


class Problem(Exception):
    """A request the server refuses: HTTP status, what is wrong and how to fix it."""

    def __init__(self, status: int, problem: str, fix: str = "", close: bool = False) -> None:
        super().__init__(problem)
        self.status, self.problem, self.fix, self.close = status, problem, fix, close


async def read_body(request: Request, most: int, read_s: float) -> bytes:
    """The request's body, refused (413) as soon as it passes `most` bytes, and (408) when the
    client pauses for `read_s` seconds while sending it, or takes BODY_READS times that in all
    (a byte at a time would hold the connection for ever)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > most:
        raise Problem(413, f"body of {declared} bytes is over {most}", "send less")
    body, loop = bytearray(), asyncio.get_running_loop()
    deadline = loop.time() + BODY_READS * read_s
    while True:
        wait = max(0.0, min(read_s, deadline - loop.time()))
        try:
            message = await asyncio.wait_for(request.receive(), wait)
        except TimeoutError:
            raise Problem(
                408,
                f"the body did not arrive in time (a pause of {read_s:g} s, or "
                f"{BODY_READS * read_s:g} s in all)",
                "send it at once",
                close=True,
            ) from None
        if message["type"] == "http.disconnect":
            raise ClientGone
        body += message.get("body", b"")
        if len(body) > most:
            raise Problem(413, f"body is over {most} bytes", "send less")
        if not message.get("more_body", False):
            return bytes(body)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON requests may hold")


def _bounded_int(digits: str) -> int:
    if len(digits) > DIGITS:
        raise ValueError(f"an integer of {len(digits)} digits")
    return int(digits)


def parse_json(body: bytes) -> dict[str, Any]:
    """A JSON object of at most JSON_DEPTH levels, finite numbers and short integers; 400 else."""
    fix = 'send a JSON object such as {"text": "..."}'
    try:
        fields = json.loads(body, parse_constant=_refuse_constant, parse_int=_bounded_int)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise Problem(400, f"malformed JSON: {str(exc) or type(exc).__name__}", fix) from None
    if not isinstance(fields, dict):
        raise Problem(400, "the JSON body is not an object", fix)
    if too_deep(fields, JSON_DEPTH):
        raise Problem(400, f"the JSON nests deeper than {JSON_DEPTH} levels", fix)
    return fields


def validated(schema: type[BaseModel], fields: dict[str, Any]) -> Any:
    """`fields` as `schema` (422 naming the first wrong field)."""
    try:
        return schema.model_validate(fields)
    except ValidationError as exc:
        raise Problem(
            422, first_invalid(exc, "body"), f"fields are {', '.join(schema.model_fields)}"
        ) from None


def name_of(value: Any, what: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise Problem(422, f"{what}: must be a name (a string)", "GET /v1/models lists them")
    return value
