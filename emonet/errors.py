"""Exceptions raised by the package; scripts turn them into one readable line and a non-zero exit."""


class EmoNetError(Exception):
    """Base class: a problem the user can fix (bad file, bad flag, missing data)."""


class CheckpointError(EmoNetError):
    """A checkpoint file is missing, unreadable or does not fit the model."""


class DatasetError(EmoNetError):
    """The dataset, a manifest or a feature folder cannot be used."""


class MediaError(EmoNetError, ValueError):
    """An input image or video cannot be read: the message names it and says why. (A ValueError too, as a bad value
    of its file: code that reads frames of a dataset treats it as one more bad frame.)"""
