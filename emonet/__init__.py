"""EmoNet on AFEW-VA: the model, checkpoint loading, colour spaces, dataset reading, face crops, metrics."""
import logging

from .checkpoint import load_emonet
from .errors import CheckpointError, DatasetError, EmoNetError
from .model import EmoNet

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["EmoNet", "load_emonet", "EmoNetError", "CheckpointError", "DatasetError"]
