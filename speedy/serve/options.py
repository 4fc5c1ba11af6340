"""The options of `speedy serve`, declared once: the command derives its flags from the fields
with a description. Pure data (no web framework imported)."""

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, PositiveInt


class ServeOptions(BaseModel):
    """What to serve, where, and the limits a load balancer can rely on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    artifacts: list[str]  # directories, or NAME=PATH
    vocoders: list[str] = Field(
        default_factory=list,
        description="Vocoder the text models speak through (repeatable; default: the vocoders "
        "among the artifacts). Each pair is a voice.",
        json_schema_extra={"flag": "--vocoder"},
    )
    host: str = Field("127.0.0.1", description="Address to bind (loopback by default).")
    port: int = Field(8000, ge=0, le=65535, description="Port; 0 takes a free one.")
    workers: PositiveInt = Field(
        2, description="Requests run at once (threads sharing the sessions)."
    )
    queue: NonNegativeInt = Field(
        32, description="Requests that may wait for a worker; more get 503."
    )
    wait_s: NonNegativeFloat = Field(
        30.0,
        description="Seconds a request may wait before it gets 503.",
        json_schema_extra={"flag": "--wait"},
    )
    threads: PositiveInt = Field(1, description="CPU threads per model run.")
    chunk_seconds: float = Field(
        0.25, ge=0.01, description="Audio per chunk of a streamed response."
    )
    max_chars: PositiveInt = Field(500, description="Longest text a request may hold.")
    max_body_mb: float = Field(16.0, gt=0, description="Largest request body (MB).")
    max_connections: PositiveInt = Field(
        256, description="Open connections at once; past them requests get 503."
    )
    read_s: float = Field(
        10.0,
        ge=0.1,
        description="Seconds a client has to send a request's head, and the longest pause "
        "while it sends the body.",
        json_schema_extra={"flag": "--read-timeout"},
    )
    send_s: float = Field(
        30.0,
        ge=0.1,
        description="Seconds a client may read nothing of a response before its connection is "
        "closed.",
        json_schema_extra={"flag": "--send-timeout"},
    )
    grace_s: NonNegativeFloat = Field(
        30.0,
        description="Seconds running requests get to finish after SIGTERM; waiting ones get 503 "
        "at once.",
        json_schema_extra={"flag": "--grace"},
    )
    api_key: str | None = Field(
        None,
        description="Key every /v1/ and /metrics request must send as 'Authorization: Bearer KEY'.",
        json_schema_extra={"envvar": "SPEEDY_API_KEY"},
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Origin whose pages may call the API (repeatable; default: none).",
        json_schema_extra={"flag": "--cors-origin"},
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host name the server answers to besides loopback (repeatable; default on "
        "loopback: only loopback names).",
        json_schema_extra={"flag": "--allowed-host"},
    )
    device: str = Field("cpu", description="cpu or cuda.")
    verify: bool = True
