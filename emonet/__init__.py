"""EmoNet on AFEW-VA: valence and arousal from faces, colour spaces compared honestly.

The API (`emonet.api`, keyword arguments named as the scripts' flags): `predict`, `extract`, `compare`, `evaluate`;
and the network itself, `EmoNet` and `load_emonet`. They import PyTorch when first used, so that importing the package
(and a script's `--help`) stays light.
"""
import importlib
import logging

from .errors import CheckpointError, DatasetError, EmoNetError, MediaError

logging.getLogger(__name__).addHandler(logging.NullHandler())

_LAZY = {"EmoNet": "model", "load_emonet": "checkpoint", "predict": "api", "extract": "api", "compare": "api",
         "evaluate": "api"}

__all__ = ["predict", "extract", "compare", "evaluate", "EmoNet", "load_emonet", "EmoNetError", "CheckpointError",
           "DatasetError", "MediaError"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
