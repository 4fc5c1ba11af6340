"""`lstm`: every nn.LSTM / nn.GRU / nn.RNN run batch first on its batch plus one spare row.

torch 2.13's dynamo exporter specialises a recurrent layer traced at batch 1 to that batch (and
the lengths after it then break under ONNX Runtime's optimizer). Run on the batch with a copy of
its first row appended, the layer is never traced at batch 1, so batch and length stay dynamic
with either exporter; the spare row's outputs are dropped. The exporter reshapes a
sequence-first layer's output (EnCodec's) to the traced length, so such a layer runs as a
batch-first copy of itself between transposes; what it returns is copied into contiguous memory,
since a view cut along the batch makes the next op that asks for its layout (a Linear,
`.contiguous()`) fix the batch at its tracing size. The state is explicit: a given initial
state gets its spare row too, and the final state loses it.
"""

import copy

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence


class SpareRowRNN(nn.Module):
    """A recurrent layer run batch first on its batch plus a spare row, same inputs and
    outputs."""

    def __init__(self, rnn: nn.RNNBase) -> None:
        super().__init__()
        self.sequence_first = not rnn.batch_first
        self.rnn = copy.deepcopy(rnn) if self.sequence_first else rnn
        self.rnn.batch_first = True

    def forward(self, x: torch.Tensor, hx=None):
        if isinstance(x, PackedSequence) or x.dim() == 2:  # no batch axis to pad
            return self.rnn(x, hx)
        x = x.transpose(0, 1) if self.sequence_first else x
        batch = x.shape[0]
        if hx is not None:
            hx = _map_state(hx, lambda h: torch.cat([h, h[:, :1]], 1))
        output, state = self.rnn(torch.cat([x, x[:1]]), hx)
        output = output[:batch]
        if self.sequence_first:
            output = _contiguous(output.transpose(0, 1))
        return output, _map_state(state, lambda h: _contiguous(h[:, :batch]))


def _contiguous(x: torch.Tensor) -> torch.Tensor:
    """A contiguous copy of `x`, made without asking whether `x` is contiguous (the question
    fixes a dim of size 1 at export)."""
    return x.clone(memory_format=torch.contiguous_format)


def _map_state(state, fn):
    """`fn` over a GRU/RNN state tensor or each tensor of an LSTM's (h, c)."""
    return tuple(fn(s) for s in state) if isinstance(state, tuple) else fn(state)


def targets(network: nn.Module) -> list[str]:
    """Every recurrent layer not already wrapped."""
    wrapped = {id(m.rnn) for m in network.modules() if isinstance(m, SpareRowRNN)}
    return [
        path
        for path, module in network.named_modules()
        if isinstance(module, nn.RNNBase) and id(module) not in wrapped
    ]


def replace(module: nn.Module) -> nn.Module:
    assert isinstance(module, nn.RNNBase)
    return SpareRowRNN(module)
