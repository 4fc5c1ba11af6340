"""`lstm`: every nn.LSTM / nn.GRU / nn.RNN run on its batch plus one spare row.

torch 2.13's dynamo exporter specialises a recurrent layer traced at batch 1 to that batch (and
the lengths after it then break under ONNX Runtime's optimizer). Run on the batch with a copy
of its first row appended, the layer is never traced at batch 1, so batch and length stay
dynamic with either exporter; the spare row's outputs are dropped. The state is explicit: a
given initial state gets its spare row too, and the final state loses it.
"""

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence


class SpareRowRNN(nn.Module):
    """A recurrent layer run on its batch plus a spare row, same inputs and outputs."""

    def __init__(self, rnn: nn.RNNBase) -> None:
        super().__init__()
        self.rnn = rnn
        self.batch_axis = 0 if rnn.batch_first else 1

    def forward(self, x: torch.Tensor, hx=None):
        if isinstance(x, PackedSequence) or x.dim() == 2:  # no batch axis to pad
            return self.rnn(x, hx)
        batch = x.shape[self.batch_axis]
        x = torch.cat([x, x.narrow(self.batch_axis, 0, 1)], self.batch_axis)
        if hx is not None:
            hx = _map_state(hx, lambda h: torch.cat([h, h[:, :1]], 1))
        output, state = self.rnn(x, hx)
        output = output.narrow(self.batch_axis, 0, batch)
        return output, _map_state(state, lambda h: h[:, :batch])


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
