"""What kind of run a folder holds, so that one kind never writes into another's folder.

Each script writes its results into a folder of its own kind: a training run (checkpoints, logs), a
comparison (folds, units, report), an evaluation, a feature extraction, a prediction run. A script refuses
a folder that holds another kind's files, even with --overwrite (which replaces a run of the same kind only):
mixing them would leave a folder whose files describe two runs.
"""
from pathlib import Path

from .errors import EmoNetError

# kind -> (what a message calls it, the files that only that kind writes)
RUN_KINDS = {
    "training": ("a training run", ("best_model.pth", "last.pth", "training_log.txt", "args.json", "split.json")),
    "comparison": ("a colour-space comparison", ("folds.json", "comparison.json")),
    "evaluation": ("an evaluation", ("evaluation_results.json",)),
    "extraction": ("extracted features", ("extraction_settings.json",)),
    "prediction": ("a prediction run", ("prediction_run.json",)),
}


def found_kind(folder: Path) -> tuple[str, str] | None:
    """(kind, one of its files) of the run `folder` holds, or None."""
    for kind, (_, files) in RUN_KINDS.items():
        for name in files:
            if (folder / name).exists():
                return kind, name
    return None


def check_kind(folder: str | Path, kind: str) -> None:
    """Refuse `folder` when it holds a run of another kind than `kind`."""
    folder = Path(folder)
    found = found_kind(folder) if folder.is_dir() else None
    if found and found[0] != kind:
        raise EmoNetError(f"{folder} holds {RUN_KINDS[found[0]][0]} ({found[1]}); {RUN_KINDS[kind][0]} needs a folder "
                          "of its own: choose another --output_dir")
