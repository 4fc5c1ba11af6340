"""The first stage of a model made elsewhere: its ONNX file (and external data) as an artifact."""

from pathlib import Path
from typing import ClassVar

from speedy import runtime
from speedy.artifact import Artifact, GraphEntry, file_digest
from speedy.importer import GRAPH, file_io, name_free_dims
from speedy.onnx_io import load_onnx, save_onnx
from speedy.stages.base import Draft, Stage, StageContext
from speedy.stages.options import ImportOptions


class ImportStage(Stage):
    """Copy the ONNX file into the artifact, its I/O read from the graph; check that it runs."""

    name: ClassVar[str] = "import"
    options: ImportOptions

    def source_digest(self, parent: Artifact | None) -> str | None:
        return file_digest([self.options.model])

    def build(self, parent: Artifact | None, workdir: Path, ctx: StageContext) -> Draft:
        model = load_onnx(self.options.model)  # external data only from beside the model
        inputs, outputs = file_io(self.options.model)
        name_free_dims(model, inputs + outputs)
        files = save_onnx(model, workdir / f"{GRAPH}.onnx")
        entry = GraphEntry(
            kind="onnx", files=[f.name for f in files], inputs=inputs, outputs=outputs
        )
        return Draft({GRAPH: entry})

    def validate(self, parent: Artifact | None, artifact: Artifact, ctx: StageContext) -> dict:
        """Run the model on the first example: it loads, takes the task's inputs and makes
        outputs of the declared rank."""
        model = runtime.load(artifact.path, threads=ctx.threads, verify=False)
        outputs = ctx.task.run(model, ctx.task.inputs(ctx.examples[0]))
        shapes = {name: list(value.shape) for name, value in outputs.items()}
        report = {"source": str(self.options.model), "first_example_outputs": shapes}
        if ctx.task.runs_note:
            report["runs"] = ctx.task.runs_note
        return {"import": report}
