"""The stand-in EmoNet weights this project writes where the released ones cannot be had (the tests, the benchmarks,
the demo), and how a loaded checkpoint is recognised as one.

The recipe is that of the reference outputs in tests/data/emonet_golden.npz (../shared/reference/README.md): every
tensor drawn from `numpy.random.default_rng(crc32(name))`. Such a network is not trained: its valence, arousal,
expressions and features say nothing about a face (values in the hundreds, where the released network gives [-1, 1]).
A checkpoint whose tensors are these is named as stand-in weights wherever it is loaded, and the outputs record it.
"""
import zlib

import numpy as np

# Tensors compared with the recipe to recognise the stand-in (the first layer and the last).
PROBES = ("conv1.weight", "emo_fc_2.3.weight")


def stand_in_tensor(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """The stand-in value of tensor `name` of `shape` (float32; int64 zeros for BatchNorm's counters)."""
    if name.endswith("num_batches_tracked"):
        return np.zeros(shape, dtype=np.int64)
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    if name.endswith("running_mean"):
        value = 0.1 * rng.standard_normal(shape)
    elif name.endswith("running_var"):
        value = rng.uniform(0.5, 1.5, shape)
    elif len(shape) >= 2:
        value = rng.standard_normal(shape) * np.sqrt(1.0 / np.prod(shape[1:]))
    elif name.endswith("weight"):
        value = rng.uniform(0.5, 1.0, shape)
    else:
        value = 0.05 * rng.standard_normal(shape)
    return np.asarray(value, dtype=np.float32)


def is_stand_in(state_dict) -> bool:
    """Whether a state dict (tensors, `module.` prefix removed) holds the stand-in weights."""
    for name in PROBES:
        tensor = state_dict.get(name)
        if tensor is None or not np.array_equal(tensor.detach().cpu().numpy(), stand_in_tensor(name, tuple(tensor.shape))):
            return False
    return True
