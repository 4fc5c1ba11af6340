"""`speedy deploy ray ... --run`: a real local Ray cluster serving the tiny Sambert chained with
a mixed-INT8 HiFi-GAN (2 replicas) through Ray's HTTP proxy: speedy's routes and errors, audio
identical to speedy's own chain under concurrent requests, and a vocoder replica killed mid-load
losing no request."""

import concurrent.futures
import os
import signal
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from speedy import runtime
from speedy.artifact import Artifact
from speedy.chain import Chain
from speedy.serve.wav import encoded
from tests.serve_client import ServerProcess, spawn
from tests.test_cli_errors import assert_clean_error

pytest.importorskip("ray.serve", reason="the [deploy] extra (ray[serve]) is missing")
pytest.importorskip("pypinyin", reason="Chinese text needs the [text] extra (pypinyin)")
pytestmark = pytest.mark.slow  # a Ray cluster starts in about 30 s

TEXTS = ["你好，世界！Hello, Ray.", "Two replicas speak the same.", "快速的模型。", "One more."]
VOCODER = "vocoder"


@pytest.fixture(scope="module")
def mixed(tiny_build: dict, tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    """The tiny HiFi-GAN in mixed INT8 (the groups that break a mel budget kept in float)."""
    from speedy.pipeline import make_stage
    from speedy.stages.base import execute

    stage = make_stage("quantize", {"precision": "int8", "method": "minmax", "calib_size": 4,
                                    "budget": "mel<=0.15"})  # fmt: skip
    out = tmp_path_factory.mktemp("mixed") / "mixed"
    return execute(stage, tiny_build["simplify"], out, tiny_build["ctx"])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(sambert_build, mixed, tmp_path_factory) -> ServerProcess:
    out = tmp_path_factory.mktemp("ray") / "app"
    args = [str(sambert_build["simplify"].path), f"{VOCODER}={mixed.path}", "-o", str(out),
            "--replicas", f"{VOCODER}=2", "--replica-cpus", "0.5", "--threads", "1",
            "--workers", "8", "--run"]  # fmt: skip
    with spawn(args, start_s=300, verb=("deploy", "ray"), port=free_port()) as served:
        config = yaml.safe_load((out / "serve.yaml").read_text())
        (application,) = config["applications"]
        assert application["import_path"] == "speedy.deploy.ray_app:build"
        assert application["args"]["ray"]["replicas"] == [f"{VOCODER}=2"]
        yield served
    assert served.process.returncode == 0, "".join(served.log)
    assert "stopped\n" in served.log  # SIGTERM: Ray shut down, the command ended cleanly


def replica_pids(deployment: str) -> list[int]:
    """The processes of a deployment's replicas (Ray names them ServeReplica:APP:DEPLOYMENT)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if f"ServeReplica:speedy:{deployment}" in line:
            found.append(int(entry.name))
    return found


def test_routes_and_errors_are_speedy_serves(cluster: ServerProcess) -> None:
    models = cluster.call("GET", "/v1/models").json()
    assert {m["name"] for m in models["models"]} >= {VOCODER}
    reply = cluster.call("POST", "/v1/tts", {"voice": "nobody", "text": "hi"})
    assert reply.status == 404 and "unknown voice 'nobody'" in reply.json()["error"]
    reply = cluster.call("POST", "/v1/tts", {"text": "hi", "speed": 99})
    assert reply.status == 422 and reply.json()["fix"]


def test_concurrent_speech_is_the_chains_and_survives_a_killed_replica(
    cluster: ServerProcess, sambert_build, mixed
) -> None:
    chain = Chain(runtime.load(sambert_build["simplify"].path, threads=1),
                  runtime.load(mixed.path, threads=1))  # fmt: skip
    expected = {}
    for text in TEXTS:
        synthesis = chain(text=text)
        expected[text] = encoded(synthesis.audio, synthesis.sample_rate, "wav")
    before = replica_pids(VOCODER)
    assert len(before) == 2

    def speak(index: int, until: float = 0.0) -> list[tuple[str, int, bytes, float]]:
        """Requests back to back until `until` (at least one)."""
        done = []
        while not done or time.perf_counter() < until:
            text = TEXTS[(index + len(done)) % len(TEXTS)]
            begin = time.perf_counter()
            reply = cluster.call("POST", "/v1/tts", {"text": text})
            done.append((text, reply.status, reply.body, time.perf_counter() - begin))
        return done

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        replies = [r for rs in pool.map(speak, range(16)) for r in rs]
        assert all(status == 200 and body == expected[text] for text, status, body, _ in replies)
        until = time.perf_counter() + 8.0
        pending = [pool.submit(speak, i, until) for i in range(8)]
        time.sleep(3.0)
        os.kill(before[0], signal.SIGKILL)  # one vocoder replica dies mid-load
        under_kill = [r for future in pending for r in future.result()]
    statuses = [status for _, status, _, _ in under_kill]
    assert statuses == [200] * len(statuses), statuses
    assert all(body == expected[text] for text, _, body, _ in under_kill)
    deadline = time.perf_counter() + 120
    while len(after := replica_pids(VOCODER)) < 2 and time.perf_counter() < deadline:
        time.sleep(1)
    assert len(after) == 2 and before[0] not in after  # Ray replaced the dead replica
    slowest = max(seconds for *_, seconds in under_kill)
    resent = "".join(cluster.log).count("sending it again")
    print(f"killed replica {before[0]}: {len(statuses)}/{len(statuses)} answered 200 and "
          f"identical, slowest {slowest:.2f} s, {resent} graph call(s) sent again")  # fmt: skip


def test_a_graph_call_whose_replica_died_is_sent_again() -> None:
    """What the ingress does when a replica dies under a call Ray does not retry itself: the
    call (side-effect free: every state is an input) goes again, up to ATTEMPTS times."""
    from ray.exceptions import ActorDiedError

    from speedy.deploy.ray_app import ATTEMPTS, graph_call

    class Replicas:  # a DeploymentHandle whose first `dead` calls hit dying replicas
        def __init__(self, dead: int) -> None:
            self.dead, self.calls = dead, 0
            self.run = self

        def remote(self, graph: str, feeds: dict) -> "Replicas":
            self.calls += 1
            return self

        def result(self) -> dict:
            if self.calls <= self.dead:
                raise ActorDiedError()
            return {"audio": np.ones(3, np.float32)}

    survived = Replicas(ATTEMPTS - 1)
    assert graph_call(survived, "vocoder")("model", {})["audio"].sum() == 3
    assert survived.calls == ATTEMPTS
    with pytest.raises(ActorDiedError):
        graph_call(Replicas(ATTEMPTS), "vocoder")("model", {})


@pytest.mark.parametrize(
    ("flags", "problem"),
    [
        (["--replicas", "nobody=2"], "no served artifact is named 'nobody'"),
        (["--replicas", "vocoder=two"], "not NAME=N"),
        (["--replicas", "vocoder=2", "--max-replicas", "3"], "exclude each other"),
    ],
)
def test_bad_scaling_is_refused_before_anything_is_written(
    speedy_cli, tiny_build, tmp_path, flags: list[str], problem: str
) -> None:
    out = tmp_path / "app"
    code, _, err = speedy_cli("deploy", "ray", f"{VOCODER}={tiny_build['simplify'].path}",
                              "-o", str(out), *flags)  # fmt: skip
    assert_clean_error(code, err, problem)
    assert not out.exists()
