"""The real HiFi-GAN V1 LJSpeech checkpoint on real speech: parity and the right front end."""

import numpy as np
import pytest

from speedy import runtime
from speedy.audio.io import read_audio
from speedy.quality import pesq_wb
from speedy.recipe import DEFAULT_DATA

pytestmark = [pytest.mark.real, pytest.mark.slow]


@pytest.mark.parametrize("stage", ["export", "simplify"])
def test_parity_on_real_mels_is_recorded(real_build: dict, stage: str) -> None:
    parity = real_build[stage].manifest.reports["parity"]
    assert parity["passed"]
    assert [case["sizes"]["frames"] for case in parity["cases"]] == [17, 240]
    assert max(max(c["max_abs_error"].values()) for c in parity["cases"]) <= 1e-4


def test_resynthesis_through_pytorch_sounds_like_the_recording(real_build: dict) -> None:
    """A wrong mel front end (scale, window, padding, log base) drops PESQ far below 3.6."""
    session = runtime.load(real_build["torch"].path, threads=2)
    task = real_build["ctx"].task
    scores = []
    for name in ("LJ001-0004.wav", "LJ001-0011.wav"):
        recording = read_audio(DEFAULT_DATA / name, 22050)
        (synthesized,) = task.waveforms(session.run(task.inputs(task.features(recording))))
        scores.append(pesq_wb(recording, synthesized, 22050))
    assert np.mean(scores) >= 3.6, scores


def test_every_checkpoint_tensor_lands_in_the_network(real_build: dict, real_recipe) -> None:
    from speedy.families import resolve
    from speedy.families.base import read_state_dict
    from speedy.recipe import load_recipe

    recipe = load_recipe(str(real_recipe))
    spec = recipe.model_spec()
    folded = resolve(spec).adapt_state_dict(read_state_dict(recipe.checkpoint_path()))
    assert spec.checkpoint is not None and spec.checkpoint.file == "generator_LJSpeech.pth.tar"
    assert real_build["torch"].manifest.reports["parameters"] == sum(
        t.numel() for t in folded.values()
    )
