"""Triton ensembles for `speedy deploy triton`: a voice whose text model is one graph handing on a
padded mel with its lengths, and whose vocoder is one graph of that mel, also runs as graphs
alone, with no Python: the text model, a cut of the mel to the longest length (a one-node ONNX
model), the vocoder. The ensemble takes the text model's tensors (token ids, speaker...), not
text (the `speedy` model takes text), and gives the vocoder's audio with the mel lengths: item
i's audio is its first `lengths[i] * hop` samples. A batch of one equals speedy's chain; in a
larger batch, a shorter item's last samples hear the padding after its mel."""

import onnx
from onnx import TensorProto, helper
from tritonclient.grpc import model_config_pb2 as pb

from speedy.serve.catalog import Voice
from speedy.specs import TensorSpec
from speedy.tasks.text_to_mel import TextToMel
from speedy.tasks.vocoder import Vocoder

CUT_IN, CUT_LENGTHS, CUT_OUT = "mel", "lengths", "cut_mel"  # the cut model's tensors
PADDED = "padded_mel"  # the ensemble's tensor between the text model and the cut


def graphs_alone(voice: Voice) -> tuple[str, str] | None:
    """The graphs of the voice's text model and vocoder where its chain is graphs alone: a
    one-graph text-to-mel model and a one-graph vocoder (None otherwise)."""
    if voice.vocoder is None or not isinstance(voice.acoustic.task, TextToMel):
        return None
    if not isinstance(voice.vocoder.task, Vocoder):
        return None
    acoustic, vocoder = (list(s.model.manifest.graphs) for s in (voice.acoustic, voice.vocoder))
    return (acoustic[0], vocoder[0]) if len(acoustic) == len(vocoder) == 1 else None


def cut_graph(mel: TensorSpec) -> tuple[onnx.ModelProto, list[TensorSpec], list[TensorSpec]]:
    """The ONNX model cutting `mel` [batch, channels, frames] to its longest item's length, with
    its inputs and outputs."""
    lengths = TensorSpec(name=CUT_LENGTHS, dtype="int64", shape=mel.shape[:1])
    inputs = [mel.model_copy(update={"name": CUT_IN}), lengths]
    outputs = [mel.model_copy(update={"name": CUT_OUT})]
    nodes = [
        helper.make_node("ReduceMax", [CUT_LENGTHS], ["longest"], keepdims=1),
        helper.make_node("Constant", [], ["zero"], value_ints=[0]),
        helper.make_node("Constant", [], ["time"], value_ints=[len(mel.shape) - 1]),
        helper.make_node("Slice", [CUT_IN, "zero", "longest", "time"], [CUT_OUT]),
    ]
    info = helper.make_tensor_value_info
    graph = helper.make_graph(
        nodes,
        "cut_to_length",
        [info(CUT_IN, TensorProto.FLOAT, mel.shape),
         info(CUT_LENGTHS, TensorProto.INT64, mel.shape[:1])],
        [info(CUT_OUT, TensorProto.FLOAT, mel.shape)],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), inputs, outputs


def ensemble_config(
    name: str, acoustic: pb.ModelConfig, cut: pb.ModelConfig, vocoder: pb.ModelConfig
) -> pb.ModelConfig:
    """The ensemble of the text model's, the cut's and the vocoder's models (batched as the
    least of them)."""
    mel, lengths = TextToMel.handed
    (vocoder_in,) = vocoder.input
    step = pb.ModelEnsembling.Step
    steps = [
        step(model_name=acoustic.name, model_version=-1,
             input_map={i.name: i.name for i in acoustic.input},
             output_map={mel: PADDED, lengths: lengths}),
        step(model_name=cut.name, model_version=-1,
             input_map={CUT_IN: PADDED, CUT_LENGTHS: lengths}, output_map={CUT_OUT: CUT_OUT}),
        step(model_name=vocoder.name, model_version=-1, input_map={vocoder_in.name: CUT_OUT},
             output_map={o.name: o.name for o in vocoder.output}),
    ]  # fmt: skip
    return pb.ModelConfig(
        name=name,
        platform="ensemble",
        max_batch_size=min(acoustic.max_batch_size, cut.max_batch_size, vocoder.max_batch_size),
        input=list(acoustic.input),
        output=[*vocoder.output, *(o for o in acoustic.output if o.name == lengths)],
        ensemble_scheduling=pb.ModelEnsembling(step=steps),
    )
