"""What the pipeline knows of each dataset without reading it: its title, label scale, whether its frames are videos,
whether it has an official split, the crops its frames allow, and what every result on it must say. A light module:
the scripts' flag checks use it before anything heavy is imported."""
from dataclasses import dataclass

from .constants import LABEL_SCALE
from .errors import EmoNetError


@dataclass(frozen=True)
class DatasetInfo:
    title: str
    label_scale: float  # labels lie on [-label_scale, label_scale]
    has_time: bool  # frames of videos (smooth and temporal heads apply) or single images
    official_split: bool  # the dataset's own training / validation split, recorded per sample
    crops: tuple[str, ...]  # the crops its frames allow (landmarks: it has 68 points per frame)
    caveat: str = ""  # what every result on it must say


DATASETS = {
    "afew_va": DatasetInfo("AFEW-VA", LABEL_SCALE, True, False, ("landmarks", "resize")),
    "aff_wild2": DatasetInfo("Aff-Wild2 (VA track)", 1.0, True, True, ("resize",)),
    "affectnet": DatasetInfo("AffectNet (manually annotated)", 1.0, False, True, ("landmarks", "resize"),
                             caveat="EmoNet was trained on AffectNet's training images: their features come from faces "
                                    "EmoNet itself fitted (a head trained on them learns from better features than unseen "
                                    "faces give), and its validation images are EmoNet's own test set (published: valence "
                                    "CCC 0.82, arousal 0.75 on its cleaned 8-class set)"),
}


def dataset_crop(name: str, crop: str | None) -> str:
    """The crop a run takes: `crop` when given (refused where the dataset cannot give it), else the dataset's own (its
    first: landmarks for AFEW-VA and AffectNet, resize for Aff-Wild2, whose frames are aligned crops already)."""
    if crop is None:
        return DATASETS[name].crops[0]
    check_crop(name, crop)
    return crop


def check_crop(name: str, crop: str) -> None:
    """Refuse a crop the dataset's frames cannot give (one line, before any work)."""
    info = DATASETS[name]
    if crop not in info.crops:
        why = ("its cropped_aligned frames are faces already cropped and aligned, without landmarks"
               if name == "aff_wild2" else "it has no landmarks")
        raise EmoNetError(f"--crop {crop} cannot be used with --dataset {name}: {why}; use --crop "
                          f"{' or '.join(info.crops)}")


