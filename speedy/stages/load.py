"""The first stage: a PyTorch artifact (state dict + manifest) from a recipe and its checkpoint."""

from pathlib import Path
from typing import ClassVar

import torch
from pydantic import BaseModel, ConfigDict

from speedy.artifact import Artifact, file_digest
from speedy.console import notice
from speedy.stages.base import Draft, Stage, StageContext
from speedy.torch_utils import strip_weight_norm

MODEL_FILE = "model.pt"


class LoadOptions(BaseModel):
    """Which weights to load (none: the family's seeded initial weights)."""

    model_config = ConfigDict(extra="forbid")

    checkpoint: Path | None = None


class LoadStage(Stage):
    """Build the network, load the checkpoint, remove weight norm, save the state dict."""

    name: ClassVar[str] = "torch"
    options: LoadOptions

    def source_digest(self, parent: Artifact | None) -> str | None:
        checkpoint = self.options.checkpoint
        return file_digest([checkpoint]) if checkpoint and checkpoint.is_file() else None

    def build(self, parent: Artifact | None, workdir: Path, ctx: StageContext) -> Draft:
        module = ctx.spec.build_module()
        if removed := strip_weight_norm(module):
            notice(f"removed weight norm from {removed} layer(s)")
        if self.options.checkpoint is not None:
            ctx.spec.adapter().load(module, self.options.checkpoint)
        else:
            notice("no checkpoint: using seeded random weights")
        torch.save(module.state_dict(), workdir / MODEL_FILE)
        parameters = sum(p.numel() for p in module.parameters())
        return Draft(kind="torch", files=[MODEL_FILE], reports={"parameters": parameters})
