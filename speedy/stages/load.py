"""The first stage: a PyTorch artifact (state dict + manifest) from a recipe and its checkpoint."""

from pathlib import Path
from typing import ClassVar

import torch

from speedy.artifact import Artifact, GraphEntry, file_digest
from speedy.console import notice
from speedy.families import resolve
from speedy.families.hf_directory import checkpoint_files
from speedy.families.network import build_network
from speedy.stages.base import Draft, Stage, StageContext
from speedy.stages.options import LoadOptions
from speedy.torch_utils import strip_weight_norm

MODEL_FILE = "model.pt"


class LoadStage(Stage):
    """Build the network, load the checkpoint, remove weight norm, save the state dict."""

    name: ClassVar[str] = "torch"
    options: LoadOptions

    def source_digest(self, parent: Artifact | None) -> str | None:
        checkpoint = self.options.checkpoint
        if checkpoint is None or not checkpoint.exists():
            return None
        return file_digest(checkpoint_files(checkpoint))

    def build(self, parent: Artifact | None, workdir: Path, ctx: StageContext) -> Draft:
        family = resolve(ctx.spec)
        module = build_network(ctx.spec)
        if removed := strip_weight_norm(module):
            notice(f"removed weight norm from {removed} layer(s)")
        if self.options.checkpoint is not None:
            family.load(module, self.options.checkpoint)
        else:
            notice("no checkpoint: using seeded random weights")
        torch.save(module.state_dict(), workdir / MODEL_FILE)
        parameters = sum(p.numel() for p in module.parameters())
        graphs = {
            g.name: GraphEntry(kind="torch", files=[MODEL_FILE], inputs=g.inputs, outputs=g.outputs)
            for g in family.graphs()
        }
        return Draft(graphs, reports={"parameters": parameters})
