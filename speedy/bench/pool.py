"""The parent side of `speedy.bench.worker`: one process per artifact, driven by the messages
of `speedy.bench.protocol`.

Workers start in Python's isolated mode (`-I`): nothing from the current directory or
PYTHONPATH is imported in them."""

import json
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path

from speedy.audio.cache import default_cache_dir
from speedy.bench.protocol import Failure, R, Ready, Request
from speedy.errors import SpeedyError


class WorkerProcess:
    """A running worker for one artifact; `call` sends a request and returns its reply."""

    def __init__(
        self,
        name: str,
        artifact: Path,
        device: str,
        threads: int,
        inputs: Path,
        log: Path,
        vocoder: Path | None = None,
        chunk_seconds: float | None = None,
    ) -> None:
        self.name, self.log_path = name, log
        self.log = log.open("w")
        command = [sys.executable, "-I", "-m", "speedy.bench.worker", str(artifact)]
        command += ["--device", device, "--threads", str(threads), "--inputs", str(inputs)]
        command += ["--vocoder", str(vocoder)] if vocoder else []
        command += ["--chunk-seconds", str(chunk_seconds)] if chunk_seconds else []
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            bufsize=1,
        )

    def _crashed(self) -> SpeedyError:
        self.process.wait(timeout=30)
        self.log.flush()
        text = self.log_path.read_text()
        lines = [line for line in text.splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit code {self.process.returncode}"
        stem = re.sub(r"[^\w.-]", "_", self.name)
        kept = default_cache_dir() / "logs" / f"bench-worker-{stem}.log"
        kept.parent.mkdir(parents=True, exist_ok=True)
        kept.write_text(text)  # the worker's directory goes with the run
        return SpeedyError(f"the bench worker for {self.name} stopped: {last}", f"read {kept}")

    def receive(self, reply: type[R]) -> R:
        """The next reply, with a clear error when the worker failed or died."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise self._crashed()
        if not json.loads(line)["ok"]:
            failure = Failure.model_validate_json(line)
            raise SpeedyError(f"{self.name}: {failure.problem}", failure.fix)
        return reply.model_validate_json(line)

    def call(self, request: Request[R]) -> R:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(request.model_dump_json() + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            raise self._crashed() from None
        return self.receive(request.reply)

    def close(self) -> None:
        """End the worker's input; kill it if it does not exit within a few seconds."""
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.close()
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self.log.close()


@contextmanager
def workers(
    artifacts: Mapping[str, Path],
    device: str,
    threads: int,
    inputs: Path,
    logs: Path,
    vocoder: Path | None = None,
    chunk_seconds: float | None = None,
) -> Iterator[dict[str, WorkerProcess]]:
    """Start one worker per artifact (imports run in parallel), wait until all are ready; with
    `vocoder`, each chains it after its artifact; with `chunk_seconds`, each streams too."""
    with ExitStack() as stack:
        started = {}
        for index, (name, path) in enumerate(artifacts.items()):
            log = logs / f"{index}.log"
            worker = WorkerProcess(name, path, device, threads, inputs, log, vocoder, chunk_seconds)
            stack.callback(worker.close)
            started[name] = worker
        for worker in started.values():
            worker.receive(Ready)
        yield started
