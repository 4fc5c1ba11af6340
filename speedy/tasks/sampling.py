"""Choosing the next code from logits, outside the graphs: greedy, or seeded sampling with
temperature, top-k, top-p (nucleus) and a repetition penalty."""

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt


class Sampling(BaseModel):
    """How the next code is chosen (temperature 0: greedy, the argmax)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(0.0, ge=0.0)
    top_k: NonNegativeInt = 0  # 0: no limit
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    repetition_penalty: float = Field(1.0, gt=0.0)  # > 1 makes codes already chosen less likely
    seed: int = 0


def penalized(logits: np.ndarray, history: np.ndarray, penalty: float) -> np.ndarray:
    """CTRL's repetition penalty: each item's logits of codes in its `history` [batch, n]
    divided by `penalty` where positive, multiplied where negative."""
    if penalty == 1.0 or history.shape[1] == 0:
        return logits
    out = logits.copy()
    for row, seen in zip(out, history, strict=True):
        chosen = np.unique(seen)
        row[chosen] = np.where(row[chosen] > 0, row[chosen] / penalty, row[chosen] * penalty)
    return out


def pick(
    logits: np.ndarray, history: np.ndarray, sampling: Sampling, rng: np.random.Generator
) -> np.ndarray:
    """The next code of each item: int64 [batch]."""
    logits = penalized(logits.astype(np.float64), history, sampling.repetition_penalty)
    if sampling.temperature == 0.0:
        return logits.argmax(axis=-1).astype(np.int64)
    logits = logits / sampling.temperature
    if sampling.top_k:
        kth = np.sort(logits, axis=-1)[:, -min(sampling.top_k, logits.shape[1])][:, None]
        logits = np.where(logits < kth, -np.inf, logits)
    probabilities = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probabilities /= probabilities.sum(axis=-1, keepdims=True)
    if sampling.top_p < 1.0:
        order = np.argsort(-probabilities, axis=-1)
        sorted_p = np.take_along_axis(probabilities, order, axis=-1)
        outside = np.cumsum(sorted_p, axis=-1) - sorted_p >= sampling.top_p
        np.put_along_axis(probabilities, order, np.where(outside, 0.0, sorted_p), axis=-1)
        probabilities /= probabilities.sum(axis=-1, keepdims=True)
    return np.array([rng.choice(p.size, p=p) for p in probabilities], dtype=np.int64)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def kl_divergence(reference: np.ndarray, test: np.ndarray) -> np.ndarray:
    """KL(reference || test) of the next-code distributions given as logits [..., vocab]."""
    p, q = log_softmax(reference), log_softmax(test)
    return (np.exp(p) * (p - q)).sum(axis=-1)
