"""Loading EmoNet weights: the released files (`pretrained/emonet_8.pth`) and this project's checkpoints.

Every file is read with `torch.load(..., weights_only=True)`: a checkpoint that needs Python code to
unpickle is refused, never executed. The released files are plain state dicts whose keys may carry the
`module.` prefix of `nn.DataParallel` and may lack `*.num_batches_tracked` (older PyTorch); those two
variations are accepted, anything else is an error naming the file and the keys or shapes at fault.
"""
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import torch

from .constants import PRETRAINED_SOURCE
from .errors import CheckpointError
from .model import EmoNet
from .stand_in import is_stand_in

logger = logging.getLogger(__name__)

# This project's checkpoints are dicts with the weights under this key (see `training.py`).
MODEL_KEY = "model"
_LAST_LAYER = "emo_fc_2.3.weight"
_ZIP_MAGIC = b"PK\x03\x04"
_MAX_LISTED = 8
_NAMED_STAND_INS: set[str] = set()  # stand-in checkpoints already named in this process
# Files that are never checkpoints, named as such when passed as one (a manifest given as --model_path, say).
TEXT_SUFFIXES = (".json", ".csv", ".txt", ".md")


def require_file(path: str | os.PathLike) -> None:
    """A checkpoint that is not there, named (with where the released ones come from) before any slow work."""
    path = Path(path)
    if not path.is_file():
        hint = ""
        if path.suffix == ".pth" and path.name.startswith("emonet_"):
            hint = f" Download {path.name} from {PRETRAINED_SOURCE} and put it there, or pass its path."
        raise CheckpointError(f"{path}: file not found.{hint}")


def read_checkpoint(path: str | os.PathLike, map_location="cpu") -> object:
    """`torch.load(path, weights_only=True)` with each failure turned into a CheckpointError that says why."""
    path = Path(path)
    require_file(path)
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic[:1] in (b"{", b"[") or path.suffix.lower() in TEXT_SUFFIXES:
        raise CheckpointError(f"{path}: not a checkpoint, this is a {path.suffix.lstrip('.').upper() or 'text'} file (a "
                              "feature manifest or a results file?); pass a .pth written by a training script")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several unrelated types here; classify by content
        message = str(exc)
        if "Weights only load failed" in message:
            raise CheckpointError(
                f"{path}: refused, the file contains Python objects that need code to load "
                "(only tensors and plain containers are loaded, weights_only=True); re-save it as a state dict"
            ) from None
        if magic == _ZIP_MAGIC:  # PyTorch's own message here is the zip reader's internals: not useful to a user
            raise CheckpointError(f"{path}: the file is truncated or corrupt (an interrupted download or copy?); "
                                  "download or save it again") from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({type(exc).__name__})") from None


def state_dict_from(obj: object, path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a released state dict or of a project checkpoint, without the `module.` prefix."""
    if isinstance(obj, Mapping) and isinstance(obj.get(MODEL_KEY), Mapping):
        obj = obj[MODEL_KEY]
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path}: not a state dict (found {type(obj).__name__})")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: not a state dict (entries that are not tensors: {_listing(bad)})")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def infer_n_expression(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike) -> int:
    """The last layer outputs n_expression logits, then valence and arousal."""
    weight = state_dict.get(_LAST_LAYER)
    if weight is None or weight.ndim != 2 or weight.shape[0] < 3:
        raise CheckpointError(f"{path}: no valid '{_LAST_LAYER}' (the last layer), so this is not an EmoNet checkpoint")
    return int(weight.shape[0]) - 2


def load_emonet_state(model: EmoNet, state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Strict load that tolerates only missing `num_batches_tracked`; other mismatches raise, listing keys."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {_listing(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {_listing(unexpected)}")
        raise CheckpointError(f"{path}: does not match EmoNet({model.n_expression}): " + "; ".join(parts))
    wrong = [
        f"{k} {tuple(state_dict[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    if wrong:
        raise CheckpointError(f"{path}: wrong shapes: {_listing(wrong)}")
    full = dict(state_dict)
    for k, v in expected.items():
        full.setdefault(k, torch.zeros_like(v))  # only num_batches_tracked can be absent here
    model.load_state_dict(full, strict=True)


def load_emonet(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[EmoNet, dict]:
    """Load a released EmoNet file or a project checkpoint; returns (model in eval mode, checkpoint metadata).

    The metadata is the project checkpoint's dict without the weights ({} for a released file). `model.stand_in` says
    whether they are this project's stand-in weights (`stand_in.py`), which are named once per process, as a warning.
    """
    obj = read_checkpoint(path)
    state_dict = state_dict_from(obj, path)
    model = EmoNet(infer_n_expression(state_dict, path))
    load_emonet_state(model, state_dict, path)
    logger.info("loaded EmoNet(n_expression=%d) from %s", model.n_expression, path)
    model.stand_in = is_stand_in(state_dict)
    if model.stand_in and str(path) not in _NAMED_STAND_INS:
        _NAMED_STAND_INS.add(str(path))
        logger.warning("%s: these are this project's stand-in EmoNet weights (deterministic, untrained: the tests' and the "
                       "demo's), not the released EmoNet; every value computed with them says nothing about faces. The "
                       "released weights: %s", path, PRETRAINED_SOURCE)
    metadata = {k: v for k, v in obj.items() if k != MODEL_KEY} if MODEL_KEY in obj else {}
    return model.to(device).eval(), metadata


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f", ... ({len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else "")
