"""Long, wide 1-D convolutions rewritten as block FFT convolutions, in plain ONNX ops.

A vocoder spends most of its time in "same"-padded 1-D convs with many channels and long
kernels, which ONNX Runtime's CPU kernels already run close to the FMA peak: in FP32, fewer
multiply-adds is the only way to go faster. Overlap-save does it: the output is cut into hops of
H samples, each computed from a frame of N = H+k-1 inputs; the frame goes to the frequency
domain (a real DFT as one matrix product), channels mix there per frequency bin (2x2 real blocks
per complex weight), and the inverse DFT keeps the H valid samples. Per output sample and
channel pair that is about 2N/H multiply-adds instead of k, plus the transforms. Frames are laid
out [channel, frame, sample], so both DFTs read them transposed in place (ONNX Runtime fuses
Transpose into MatMul). Dilation d runs as d phases per channel, each an undilated convolution.
Same function; rounding differs by ~1e-6 of the signal.
"""

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from speedy.onnx_io import default_opset

MIN_OPSET = 15  # Shape with start/end


@dataclass(frozen=True)
class FftConvOptions:
    """Which convs to rewrite, and the hop H."""

    min_channels: int = 128  # both input and output channels
    min_kernel: int = 7
    hop: int = 54  # outputs per frame H; the DFT size is H + k - 1 (64 for kernel 11)


@dataclass(frozen=True)
class ConvShape:
    out_channels: int
    in_channels: int
    kernel: int
    dilation: int


def dft_matrices(size: int, valid: int) -> tuple[np.ndarray, np.ndarray]:
    """A real DFT of `size` samples as a [2G, N] matrix (rows: bin, then real/imaginary part),
    and its inverse as an [H, 2G] matrix giving only the last `valid` samples (G = N/2+1)."""
    bins = size // 2 + 1
    angle = 2 * np.pi * np.outer(np.arange(size), np.arange(bins)) / size  # [N, G]
    forward = np.stack([np.cos(angle), -np.sin(angle)], axis=-1).reshape(size, 2 * bins)
    weight = np.full(bins, 2.0)  # bins strictly inside (0, N/2) stand for their mirror images too
    weight[0] = 1.0
    if size % 2 == 0:
        weight[-1] = 1.0
    inverse = np.stack([weight * np.cos(angle), -weight * np.sin(angle)], axis=-1) / size
    return forward.T, inverse.reshape(size, 2 * bins)[size - valid :]


def kernel_dft_matrix(kernel: int, size: int) -> np.ndarray:
    """A [k, 4G] matrix taking conv weights [.., k] to the spectrum of the flipped kernel as
    2x2 real blocks [[re, -im], [im, re]] per bin (columns: bin, output part, input part)."""
    bins = size // 2 + 1
    angle = 2 * np.pi * np.outer(kernel - 1 - np.arange(kernel), np.arange(bins)) / size
    cos, sin = np.cos(angle), np.sin(angle)  # spectrum: re = W @ cos, im = -(W @ sin)
    return np.stack([cos, sin, -sin, cos], axis=-1).reshape(kernel, 4 * bins)


def _attribute(node: onnx.NodeProto, name: str, default: object) -> object:
    found = [helper.get_attribute_value(a) for a in node.attribute if a.name == name]
    return found[0] if found else default


def eligible(
    node: onnx.NodeProto, constants: dict[str, np.ndarray], options: FftConvOptions
) -> ConvShape | None:
    """The conv's shape when `node` is a float32, group-1, stride-1, "same"-padded 1-D Conv
    with constant weights, wide and long enough to gain; None otherwise."""
    if node.op_type != "Conv" or node.domain not in ("", "ai.onnx"):
        return None
    if any(name not in constants for name in node.input[1:] if name):
        return None
    weight = constants[node.input[1]]
    if weight.ndim != 3 or weight.dtype != np.float32:
        return None
    out_channels, in_channels, kernel = weight.shape
    (dilation,) = _attribute(node, "dilations", [1])
    reach = dilation * (kernel - 1)
    if (
        _attribute(node, "group", 1) != 1
        or list(_attribute(node, "strides", [1])) != [1]
        or _attribute(node, "auto_pad", b"NOTSET") != b"NOTSET"
        or reach % 2
        or list(_attribute(node, "pads", [0, 0])) != [reach // 2, reach // 2]
        or min(out_channels, in_channels) < options.min_channels
        or not options.min_kernel <= kernel <= options.hop + 1  # overlap fits in one hop
    ):
        return None
    return ConvShape(out_channels, in_channels, kernel, dilation)


class _Rewriter:
    """Builds the replacement nodes; constants are shared between convs by name."""

    def __init__(self, hop: int) -> None:
        self.hop = hop
        self.constants: dict[str, onnx.TensorProto] = {}
        self.nodes: list[onnx.NodeProto] = []

    def constant(self, name: str, value: np.ndarray) -> str:
        if name not in self.constants:
            self.constants[name] = numpy_helper.from_array(value, name)
        return name

    def ints(self, *values: int) -> str:
        name = "fft_conv/i64_" + "_".join(str(v) for v in values)
        return self.constant(name, np.array(values, dtype=np.int64))

    def size(self, shape: ConvShape) -> int:
        """DFT size N: one hop of H outputs needs H + k - 1 inputs."""
        return self.hop + shape.kernel - 1

    def op(self, op_type: str, inputs: list[str], output: str, **attributes: object) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attributes))
        return output

    def convolution(
        self, node: onnx.NodeProto, shape: ConvShape, bias: np.ndarray | None
    ) -> list[onnx.NodeProto]:
        """Nodes computing `node` (x [B, Ci, T] -> [B, Co, T]) by overlap-save."""
        self.nodes = []
        op, ints = self.op, self.ints
        p, size = f"{node.name or node.output[0]}/fft", self.size(shape)
        bins = size // 2 + 1
        forward, inverse = (m.astype(np.float32) for m in dft_matrices(size, self.hop))
        length = op("Shape", [node.input[0]], f"{p}/length", start=2)
        frames = self.frames(node.input[0], shape, length, p)  # [B, Ci d F, N]
        by_sample = op("Transpose", [frames], f"{p}/by_sample", perm=[0, 2, 1])
        dft = self.constant(f"fft_conv/dft{size}", forward)
        spectrum = op("MatMul", [dft, by_sample], f"{p}/spectrum")  # [B, 2G, Ci d F]
        spectrum = op("Reshape", [spectrum, ints(0, bins, 2 * shape.in_channels, -1)], f"{p}/bins")
        mixing = self.spectral_weight(node.input[1], shape, p)
        mixed = op("MatMul", [mixing, spectrum], f"{p}/mixed")  # [B, G, 2Co, d F]
        mixed = op("Reshape", [mixed, ints(0, 2 * bins, -1)], f"{p}/mixed_rows")
        by_frame = op("Transpose", [mixed], f"{p}/by_frame", perm=[0, 2, 1])
        idft = self.constant(f"fft_conv/idft{size}_{self.hop}", np.ascontiguousarray(inverse.T))
        samples = op("MatMul", [by_frame, idft], f"{p}/samples")  # [B, Co d F, H]
        flat = self.unframe(samples, shape, p)
        if bias is None:
            op("Slice", [flat, ints(0), length, ints(2)], node.output[0])
        else:
            trimmed = op("Slice", [flat, ints(0), length, ints(2)], f"{p}/trimmed")
            op("Add", [trimmed, self.constant(f"{p}/bias", bias.reshape(-1, 1))], node.output[0])
        return self.nodes

    def frames(self, x: str, shape: ConvShape, length: str, p: str) -> str:
        """The frames of every phase, [B, Ci d F, N]: F hops of H samples per channel and
        phase, each extended by the first k-1 samples of the next hop (zeros after the last)."""
        op, ints, d = self.op, self.ints, shape.dilation
        span, left = self.hop * d, d * (shape.kernel - 1) // 2  # input samples per frame
        # F = ceil((T + left) / span) frames: `left` zeros before x, the rest after
        needed = op("Add", [length, ints(left)], f"{p}/needed")
        count = op("Div", [op("Add", [needed, ints(span - 1)], f"{p}/ceil"), ints(span)], f"{p}/F")
        after = op("Sub", [op("Mul", [count, ints(span)], f"{p}/total"), needed], f"{p}/after")
        pads = op("Concat", [ints(0, 0, left, 0, 0), after], f"{p}/pads", axis=0)
        padded = op("Pad", [x, pads], f"{p}/padded")
        if d > 1:  # phase j of a channel holds its samples j, j+d, ...: [B, Ci, d, F H]
            padded = op("Reshape", [padded, ints(0, shape.in_channels, -1, d)], f"{p}/by_time")
            padded = op("Transpose", [padded], f"{p}/phases", perm=[0, 1, 3, 2])
        blocks = op(
            "Reshape", [padded, ints(0, shape.in_channels * d, -1, self.hop)], f"{p}/blocks"
        )
        overlap = [blocks, ints(1, 0), ints(2**62, shape.kernel - 1), ints(2, 3)]
        tail = op("Slice", overlap, f"{p}/next")
        tail = op("Pad", [tail, ints(0, 0, 0, 0, 0, 0, 1, 0)], f"{p}/tail")
        framed = op("Concat", [blocks, tail], f"{p}/framed", axis=3)  # [B, Ci d, F, N]
        return op("Reshape", [framed, ints(0, -1, self.size(shape))], f"{p}/frames")

    def spectral_weight(self, weight: str, shape: ConvShape, p: str) -> str:
        """Per-bin mixing matrices [G, 2Co, 2Ci] computed from the conv weights in the graph:
        constant, so ONNX Runtime folds them once when the session loads."""
        co, ci, size = shape.out_channels, shape.in_channels, self.size(shape)
        bins = size // 2 + 1
        to_spectrum = kernel_dft_matrix(shape.kernel, size).astype(np.float32)
        to_spectrum = self.constant(f"fft_conv/kernel_dft{shape.kernel}_{size}", to_spectrum)
        blocks = self.op("MatMul", [weight, to_spectrum], f"{p}/weight_dft")
        blocks = self.op("Reshape", [blocks, self.ints(co, ci, bins, 2, 2)], f"{p}/weight_blocks")
        blocks = self.op("Transpose", [blocks], f"{p}/weight_by_bin", perm=[2, 3, 0, 4, 1])
        return self.op("Reshape", [blocks, self.ints(bins, 2 * co, 2 * ci)], f"{p}/mixing")

    def unframe(self, samples: str, shape: ConvShape, p: str) -> str:
        """Valid samples [B, Co d F, H] back in time order: [B, Co, F H d]."""
        op, ints, co, d = self.op, self.ints, shape.out_channels, shape.dilation
        if d > 1:
            samples = op("Reshape", [samples, ints(0, co, d, -1)], f"{p}/phase_major")
            samples = op("Transpose", [samples], f"{p}/interleaved", perm=[0, 1, 3, 2])
        return op("Reshape", [samples, ints(0, co, -1)], f"{p}/flat")


def fft_convolutions(
    model: onnx.ModelProto, options: FftConvOptions
) -> tuple[onnx.ModelProto, list[str]]:
    """A copy of `model` with its eligible convs rewritten, and the names of those convs."""
    if default_opset(model) < MIN_OPSET:
        return model, []
    graph = model.graph
    conv_inputs = {name for node in graph.node if node.op_type == "Conv" for name in node.input}
    constants = {
        t.name: numpy_helper.to_array(t) for t in graph.initializer if t.name in conv_inputs
    }
    rewriter = _Rewriter(options.hop)
    nodes, rewritten = [], []
    for node in graph.node:
        shape = eligible(node, constants, options)
        if shape is None:
            nodes.append(node)
            continue
        bias = constants[node.input[2]] if len(node.input) > 2 and node.input[2] else None
        nodes += rewriter.convolution(node, shape, bias)
        rewritten.append(node.name or node.output[0])
    if not rewritten:
        return model, []
    result = onnx.ModelProto()
    result.CopyFrom(model)
    del result.graph.node[:]
    result.graph.node.extend(nodes)
    used = {name for node in nodes for name in node.input}
    kept = [t for t in graph.initializer if t.name in used]
    del result.graph.initializer[:]
    result.graph.initializer.extend([*kept, *rewriter.constants.values()])
    return result, rewritten
