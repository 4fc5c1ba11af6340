"""`speedy deploy triton`: a Triton Inference Server model repository of speedy artifacts.

* one model per graph, run by Triton's own backend for its file: `onnxruntime_onnx` (ONNX),
  `tensorrt_plan` (TensorRT engines), `torch_aoti` (AOTInductor packages), `openvino`; inputs and
  outputs as the manifest declares them (-1 for a dynamic dim); where every tensor's first dim
  is the batch, `max_batch_size` is the artifact's largest batch and `dynamic_batching` is on;
* an `ensemble` per voice whose chain is graphs alone (see `triton_ensemble`);
* `speedy`: a Python-backend model, decoupled, whose `model.py` runs speedy's own loops (the
  chain, the vocoder's stream, a codec's decode, the GPT's generation) over those models through
  BLS requests (`triton_bls`): one JSON `request` in, `audio` chunks (or `codes`) out.

The Python model needs speedy in the server's Python environment (`pip install openspeedy`); the
graph models need nothing but Triton.
"""

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from speedy.artifact import Artifact
from speedy.bench.results import BenchReport
from speedy.deploy import TRITON_PLAN
from speedy.deploy.output import deployment_dir
from speedy.deploy.remote import check_catalog, engine_name
from speedy.deploy.scaling import batching, measured
from speedy.deploy.triton_ensemble import cut_graph, ensemble_config, graphs_alone
from speedy.errors import SpeedyError
from speedy.onnx_io import load_onnx, save_onnx
from speedy.serve.catalog import Voice, named
from speedy.specs import DimRange, TensorSpec
from speedy.weight_pool import POOL

TRITON_RELEASE = "2.73.0"  # the server release of tritonclient 2.73.0's model_config.proto
LOOP_MODEL = "speedy"
CONFIG = "config.pbtxt"
BATCH = "batch"
INSTANCE_KINDS = {"cpu": pb.ModelInstanceGroup.KIND_CPU, "cuda": pb.ModelInstanceGroup.KIND_GPU}
# A graph file's kind -> (platform, backend, the file name Triton loads by default).
RUNNERS = {
    "onnx": ("onnxruntime_onnx", "", "model.onnx"),
    "trt": ("tensorrt_plan", "", "model.plan"),
    "aoti": ("torch_aoti", "", "model.pt2"),
    "openvino": ("", "openvino", "model.xml"),
}
TYPES = {
    "bool": pb.TYPE_BOOL, "uint8": pb.TYPE_UINT8, "int8": pb.TYPE_INT8, "int16": pb.TYPE_INT16,
    "int32": pb.TYPE_INT32, "int64": pb.TYPE_INT64, "float16": pb.TYPE_FP16,
    "bfloat16": pb.TYPE_BF16, "float32": pb.TYPE_FP32, "float64": pb.TYPE_FP64,
}  # fmt: skip


def _tensor(spec: TensorSpec, batched: bool, kind: type) -> object:
    if spec.dtype not in TYPES:
        raise SpeedyError(f"tensor '{spec.name}' is {spec.dtype}, which Triton does not take",
                          "deploy a graph with numeric or bool inputs and outputs")  # fmt: skip
    shape = spec.shape[1:] if batched else spec.shape
    dims = [d if isinstance(d, int) else -1 for d in shape]
    return kind(name=spec.name, data_type=TYPES[spec.dtype], dims=dims)


def graph_config(
    name: str,
    kind: str,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    dims: dict[str, DimRange],
    device: str = "cpu",
    batching: tuple[list[int], int] = ([], 0),
) -> pb.ModelConfig:
    """The model configuration of one graph; `batching`: its dynamic batching's preferred batch
    sizes and longest queue delay (microseconds), where it batches."""
    if kind not in RUNNERS:
        raise SpeedyError(
            f"a {kind} graph has no Triton backend",
            f"deploy an artifact of {', '.join(RUNNERS)} graphs (speedy export makes ONNX)",
        )
    platform, backend, _ = RUNNERS[kind]
    batched = BATCH in dims and all(s.shape and s.shape[0] == BATCH for s in [*inputs, *outputs])
    config = pb.ModelConfig(
        name=name,
        platform=platform,
        backend=backend,
        max_batch_size=dims[BATCH].max if batched else 0,
        input=[_tensor(s, batched, pb.ModelInput) for s in inputs],
        output=[_tensor(s, batched, pb.ModelOutput) for s in outputs],
        instance_group=[pb.ModelInstanceGroup(kind=INSTANCE_KINDS[device], count=1)],
    )
    if batched:
        preferred, delay = batching
        config.dynamic_batching.SetInParent()
        config.dynamic_batching.preferred_batch_size.extend(preferred)
        config.dynamic_batching.max_queue_delay_microseconds = delay
    return config


def loop_config(instances: int) -> pb.ModelConfig:
    """The Python model: a JSON request in; audio (in chunks when streamed) or codes out."""
    tensor = pb.ModelInput
    return pb.ModelConfig(
        name=LOOP_MODEL,
        backend="python",
        input=[tensor(name="request", data_type=pb.TYPE_STRING, dims=[1]),
               tensor(name="upload", data_type=pb.TYPE_UINT8, dims=[-1], optional=True)],
        output=[pb.ModelOutput(name="audio", data_type=pb.TYPE_FP32, dims=[-1]),
                pb.ModelOutput(name="sample_rate", data_type=pb.TYPE_INT32, dims=[1]),
                pb.ModelOutput(name="codes", data_type=pb.TYPE_INT64, dims=[-1, -1])],
        model_transaction_policy=pb.ModelTransactionPolicy(decoupled=True),
        instance_group=[pb.ModelInstanceGroup(kind=pb.ModelInstanceGroup.KIND_CPU,
                                              count=instances)],
    )  # fmt: skip


def write_config(directory: Path, config: pb.ModelConfig) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG).write_text(text_format.MessageToString(config))


MODEL_PY = """\\
# The "{loop}" model of a Triton repository written by `speedy deploy triton` (speedy {speedy}):
# speedy's own loops over this repository's graph models, through BLS requests. The server's
# Python environment needs speedy: pip install "openspeedy=={speedy}".
from speedy.deploy.triton_bls import TritonPythonModel  # noqa: F401
"""


@dataclass
class Repository:
    """What `write_repository` wrote: each artifact's graph models (graph -> model), and the
    ensembles."""

    graphs: dict[str, dict[str, str]] = field(default_factory=dict)
    ensembles: list[str] = field(default_factory=list)


def write_repository(
    items: Sequence[str],
    vocoders: Sequence[str],
    out: Path,
    chunk_seconds: float = 0.25,
    device: str = "cpu",
    instances: int = 2,
    force: bool = False,
    bench: BenchReport | None = None,
) -> Repository:
    """Write the repository of the artifacts `items` (NAME=PATH or paths; `vocoders` as
    `speedy serve` takes them) to `out`; the one-graph artifacts that `bench` measured batch as
    its figures say (a multi-graph artifact's figures are of its whole loop, not of a graph)."""
    listed = [named(item) for item in [*items, *vocoders]]
    opened = {path: Artifact.open(path) for _, path in listed}  # each verified once
    catalog = check_catalog(items, vocoders, chunk_seconds, opened.__getitem__)
    artifacts = {name: opened[path] for name, path in listed}
    about = {"target": f"Triton Inference Server {TRITON_RELEASE}", "artifacts": list(artifacts)}
    digests = {n: a.manifest.digest for n, a in artifacts.items() if len(a.manifest.graphs) == 1}
    found = measured(bench, digests, device, None) if bench else {}
    written, configs = Repository(), {}
    with deployment_dir(out, force, about) as repo:
        loop = repo / LOOP_MODEL / "1"
        plan = {"chunk_seconds": chunk_seconds, "served": [named(i)[0] for i in items],
                "vocoders": [named(v)[0] for v in vocoders], "artifacts": []}  # fmt: skip
        for index, (name, artifact) in enumerate(artifacts.items()):
            graphs = {}
            dims = artifact.manifest.model.dims
            benched = name in found and BATCH in dims
            figures = batching(found[name], dims[BATCH].max) if benched else ([], 0)
            for graph, entry in artifact.manifest.graphs.items():
                model = f"{engine_name(name)}__{graph}"
                graphs[graph] = model
                configs[model] = graph_config(model, entry.kind, entry.inputs, entry.outputs,
                                              dims, device, figures)  # fmt: skip
                write_config(repo / model, configs[model])
                _copy_graph(artifact, graph, repo / model / "1")
            manifest_dir = loop / "artifacts" / str(index)
            manifest_dir.mkdir(parents=True)
            shutil.copy2(artifact.path / "speedy.json", manifest_dir / "speedy.json")
            plan["artifacts"].append({"name": name, "manifest": f"artifacts/{index}",
                                      "graphs": graphs})  # fmt: skip
            written.graphs[name] = graphs
        for voice in catalog.voices.values():
            if ensemble := _write_ensemble(repo, voice, written.graphs, configs, device):
                written.ensembles.append(ensemble)
        write_config(repo / LOOP_MODEL, loop_config(instances))
        (loop / TRITON_PLAN).write_text(json.dumps(plan, indent=2) + "\n")
        (loop / "model.py").write_text(
            MODEL_PY.format(loop=LOOP_MODEL, speedy=version("openspeedy"))
        )
    return written


def _write_ensemble(
    repo: Path,
    voice: Voice,
    graph_models: Mapping[str, Mapping[str, str]],
    configs: Mapping[str, pb.ModelConfig],
    device: str,
) -> str | None:
    """The ensemble of `voice` and its cut model, where its chain is graphs alone that batch
    (its name; None where it is not)."""
    graphs = graphs_alone(voice)
    if graphs is None:
        return None
    assert voice.vocoder is not None
    acoustic = configs[graph_models[voice.acoustic.name][graphs[0]]]
    vocoder = configs[graph_models[voice.vocoder.name][graphs[1]]]
    largest = min(acoustic.max_batch_size, vocoder.max_batch_size)
    if not largest:  # an ensemble batches as all its steps do, or not at all
        return None
    name = engine_name(voice.name)
    cut, inputs, outputs = cut_graph(voice.vocoder.model.manifest.graphs[graphs[1]].inputs[0])
    dims = {BATCH: DimRange(min=1, opt=1, max=largest)}
    cut_config = graph_config(f"{name}__cut", "onnx", inputs, outputs, dims, device)
    write_config(repo / cut_config.name, cut_config)
    (repo / cut_config.name / "1").mkdir()
    save_onnx(cut, repo / cut_config.name / "1" / RUNNERS["onnx"][2])
    write_config(repo / name, ensemble_config(name, acoustic, cut_config, vocoder))
    (repo / name / "1").mkdir()  # Triton looks for a version directory, empty for an ensemble
    return name


def _copy_graph(artifact: Artifact, graph: str, version_dir: Path) -> None:
    """The graph's model file under the name its backend loads, and its other files beside it:
    external data under its own name (the model file refers to it), weights named after the
    model file where they were (OpenVINO's .bin). An ONNX graph reading the artifact's shared
    weights is written with its own weights only (Triton models share no files)."""
    entry = artifact.manifest.graphs[graph]
    version_dir.mkdir(parents=True)
    main, *rest = map(Path, entry.files)
    loaded = Path(RUNNERS[entry.kind][2])
    if POOL in entry.files:
        save_onnx(load_onnx(artifact.path / main), version_dir / loaded)
        return
    shutil.copy2(artifact.path / main, version_dir / loaded)
    for path in rest:  # OpenVINO's weights follow the model file's name: model.bin
        kept = loaded.stem if path.stem == main.stem else path.stem
        shutil.copy2(artifact.path / path, version_dir / f"{kept}{path.suffix}")
