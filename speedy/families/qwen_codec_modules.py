"""The graphs' modules over an upstream `Qwen3TTSTokenizerV2Model` (torch only, so that a GPU
script can load this file on its own): the encoder and whole decoder as upstream computes them,
with masks and sizes an exporter can trace, and the seeded weights used without a checkpoint.
The streaming decoder step is `qwen_codec_step`."""

import torch
from torch import nn

OUTPUT_RMS = 0.1  # speech level of the seeded decoder's output


def attention_mask(hidden: torch.Tensor, window: int | None = None) -> torch.Tensor:
    """The additive [1, 1, tokens, tokens] mask of causal attention over the tokens of `hidden`
    [batch, tokens, dim], within `window` keys (the query's own included) when given. Passed
    ready-made, as transformers' own construction reads the positions' values (looking for
    packed sequences), which neither exporter traces."""
    tokens = hidden.shape[1]
    position = torch.arange(tokens, device=hidden.device)
    distance = position[:, None] - position[None, :]
    hidden_key = (distance < 0) | (distance >= (window or tokens))
    return hidden.new_zeros(tokens, tokens).masked_fill(hidden_key, torch.finfo(hidden.dtype).min)[
        None, None
    ]


def extra_padding(length: int, kernel: int, stride: int, padding: int) -> int:
    """The right padding that makes a conv's last window whole, ceil((length - kernel + padding)
    / stride) windows: upstream's float arithmetic (`math.ceil` of a quotient) in integers, which
    exporters keep symbolic (0 for stride 1, so the pad is a constant that folds into the conv)."""
    frames = -(-(length - kernel + padding) // stride)
    return frames * stride + kernel - padding - length


def mimi_extra_padding(conv: nn.Module, hidden: torch.Tensor) -> int:
    """`MimiConv1d._get_extra_padding_for_conv1d` in integer arithmetic."""
    return extra_padding(hidden.shape[-1], conv.kernel_size, conv.stride, conv.padding_total)


def causal_extra_padding(conv: nn.Module, hidden: torch.Tensor) -> int:
    """`Qwen3TTSTokenizerV2CausalConvNet._get_extra_padding_for_conv1d` in integer arithmetic."""
    return extra_padding(hidden.shape[-1], conv.kernel_size, conv.stride, conv.padding)


def snake_beta(snake: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """`SnakeBeta.forward`, x + sin(x exp(alpha))^2 / (exp(beta) + eps), with the square as a
    product: torch computes pow(s, 2) as s * s, so the values are the same, and ONNX Runtime
    runs a Mul faster than a Pow over the decoder's largest tensors."""
    alpha = torch.exp(snake.alpha)[None, :, None]
    inverse_beta = 1.0 / (torch.exp(snake.beta)[None, :, None] + snake.no_div_by_zero)
    sine = torch.sin(hidden * alpha)
    return hidden + inverse_beta * (sine * sine)


def exportable_decoder(decoder: nn.Module) -> None:
    """Give the upstream decoder's causal convs integer padding arithmetic (their pads become
    constants that fold into the convs, where upstream's exports as a Ceil and a Pad per conv)
    and its SnakeBetas `snake_beta`; the outputs are bit for bit upstream's."""
    for module in decoder.modules():
        kind = type(module).__name__
        if kind == "Qwen3TTSTokenizerV2CausalConvNet":
            module._get_extra_padding_for_conv1d = causal_extra_padding.__get__(module)
        elif kind == "SnakeBeta":
            module.forward = snake_beta.__get__(module)


def sizes_as_ints(mimi: nn.Module) -> None:
    """Give `mimi`'s convolutions their kernel size, stride and paddings as Python ints.
    transformers keeps them as tensor buffers and pads by their values, which a trace reads
    (`.item()`), losing every length after the first conv; the same values as ints keep the
    lengths symbolic (the codes are the same: the tests compare them with upstream's encode)."""
    for conv in mimi.modules():
        if type(conv).__name__ != "MimiConv1d" or "stride" not in conv._buffers:
            continue  # not a Mimi conv, or one given ints already (a second wrapper)
        for name in ("stride", "kernel_size", "padding_total"):
            value = int(conv._buffers.pop(name))
            setattr(conv, name, value)
        conv.padding_right = conv.padding_total // 2
        conv.padding_left = conv.padding_total - conv.padding_right
        conv._get_extra_padding_for_conv1d = mimi_extra_padding.__get__(conv)


class Encoder(nn.Module):
    """audio [batch, 1, samples] -> codes [batch, valid codebooks, frames]: `MimiModel.encode`'s
    steps (conv encoder, transformer, downsample, quantizer), causal over the whole signal as
    upstream's encode is under eager and SDPA attention (transformers applies Mimi's sliding
    window only under flash attention)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.encoder, self.codebooks = model.encoder, model.encoder_valid_num_quantizers
        sizes_as_ints(self.encoder)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        mimi = self.encoder
        hidden = mimi.encoder(audio).transpose(1, 2)
        hidden = mimi.encoder_transformer(hidden, attention_mask=attention_mask(hidden),
                                          use_cache=False, return_dict=True)  # fmt: skip
        hidden = mimi.downsample(hidden.last_hidden_state.transpose(1, 2))
        return mimi.quantizer.encode(hidden, self.codebooks).transpose(0, 1)


class Decoder(nn.Module):
    """codes [batch, codebooks, frames] -> audio [batch, 1, frames * 1920]: the upstream
    decoder's `forward`, its transformer given its sliding-window mask."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.decoder = model.decoder
        exportable_decoder(self.decoder)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        d = self.decoder
        hidden = d.pre_conv(d.quantizer.decode(codes)).transpose(1, 2)
        mask = attention_mask(hidden, d.config.sliding_window)
        hidden = d.pre_transformer(inputs_embeds=hidden, attention_mask=mask).last_hidden_state
        hidden = hidden.permute(0, 2, 1)
        for blocks in d.upsample:
            for block in blocks:
                hidden = block(hidden)
        for block in d.decoder:
            hidden = block(hidden)
        return hidden.clamp(min=-1, max=1)


def seed_weights(model: nn.Module, codebooks: int, residual: type[nn.Module]) -> None:
    """Seeded weights that exercise every path at speech scale (call under a seeded RNG):
    fan-in-scaled normal convs and projections, codebooks with random entries (a fresh
    upstream model's are all zero, so every code would be 0), layer scales and ConvNeXt gammas
    at 0.1, `residual` units adding a tenth of their input's scale (activations stay near unit
    scale, where SnakeBeta's sine is well conditioned), and the last conv scaled so that random
    codes decode at 0.1 RMS."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv1d | nn.ConvTranspose1d | nn.Linear):
                fan_in = module.weight[0].numel()
                if isinstance(module, nn.ConvTranspose1d):
                    fan_in = module.weight.shape[0] * module.weight.shape[2] / module.stride[0]
                nn.init.normal_(module.weight, std=fan_in**-0.5)
                if module.bias is not None:
                    nn.init.normal_(module.bias, std=0.01)
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if name.endswith(("embed_sum", "embedding_sum")):
                tensor.normal_()
            elif name.endswith((".gamma", "layer_scale.scale")):
                tensor.fill_(0.1)
        for module in model.modules():
            if isinstance(module, residual):
                module.conv2.conv.weight.mul_(0.1)
        decoder = model.decoder
        codes = torch.randint(0, decoder.config.codebook_size, (1, codebooks, 4))
        rms = decoder(codes).square().mean().sqrt().item()
        last = decoder.decoder[-1].conv
        last.weight.mul_(OUTPUT_RMS / max(rms, 1e-6))
        last.bias.mul_(OUTPUT_RMS / max(rms, 1e-6))
