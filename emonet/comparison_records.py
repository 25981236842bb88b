"""A comparison folder's files, and what a report reads back from them: folds.json, and per unit (`Unit.folder`) its
training outputs, fold_predictions.csv (the held-out frames: the chosen model's prediction and EmoNet's own
zero-shot one, raw scale), the cross-corpus predictions (`cross_files`), and unit.json, written last: a unit with it
is finished. A rerun skips a finished unit made with the same settings, resumes an interrupted one from its last.pth,
and refuses one made with other settings, in words.

--report_only describes what the finished units hold: every setting they or folds.json record (spaces and their
manifests, heads, repetitions, folds, split, seed, training flags; the bootstrap draws of the report already there)
is read from them, and one given that differs is refused naming both values (`adopt_*`).
"""
import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from .comparison import TRAINING_FLAGS, Unit, check_same_settings, grouping, prediction_column, unit_groups
from .constants import COLOR_SPACES, DEFAULT_HEAD, HEAD_KINDS, OFFICIAL
from .errors import EmoNetError
from .io import write_json, write_text
from .settings import ComparisonConfig, given
from .splits import sample_key
from .text import number
from .training import load_training_checkpoint

logger = logging.getLogger(__name__)

FOLDS_FILE = "folds.json"
UNIT_FILE = "unit.json"
UNIT_PREDICTIONS = "fold_predictions.csv"
REPORT_FILE = "comparison.json"
PREDICTION_COLUMNS = ("clip", "frame", "valence_pred", "arousal_pred", "valence_zero_shot", "arousal_zero_shot")


def cross_files(unit_folder: Path, dataset: str) -> tuple[Path, Path]:
    """(predictions, record) of a unit's cross-corpus predictions of `dataset`."""
    return unit_folder / f"cross_{dataset}.csv", unit_folder / f"cross_{dataset}.json"


def recorded_report(report_dir: Path) -> dict | None:
    """The comparison.json of a report already in `report_dir`, if any."""
    path = report_dir / REPORT_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def recorded_folds(output_dir: Path) -> dict:
    """The settings a finished comparison's folds.json holds ({} without one): folds (None under an official split:
    one fixed test set), split and seed."""
    path = output_dir / FOLDS_FILE
    if not path.is_file():
        return {}
    stored = json.loads(path.read_text())
    return {"folds": None if stored.get("protocol") == OFFICIAL else len(stored["folds"]), "split": grouping(stored),
            "seed": stored.get("seed")}


def claim_folds(output_dir: Path, folds: dict, write: bool) -> dict:
    """Write `folds.json`, or check that the one there is the same comparison: same unit, seed and partitions for
    the repetitions both hold. A larger --repeats extends it; the returned folds hold every repetition known."""
    path = output_dir / FOLDS_FILE
    if path.is_file():
        stored = json.loads(path.read_text())
        stored_repeats = stored.get("repeats") or [{"seed": stored.get("seed"), "folds": stored.get("folds")}]
        shared = min(len(stored_repeats), len(folds["repeats"]))
        if ((grouping(stored), stored.get("seed"), stored.get("folds")) != (grouping(folds), folds["seed"], folds["folds"])
                or stored_repeats[:shared] != folds["repeats"][:shared]):
            raise EmoNetError(f"{path} holds other folds (another frame list, --split, --folds or --seed): {output_dir} "
                              "belongs to another comparison; choose another --output_dir")
        if len(stored_repeats) >= len(folds["repeats"]):
            return {**folds, "repeats": stored_repeats}
    if write:
        write_json(path, folds)
    return folds


def unit_state(folder: Path, expected: dict, model_type: str, epochs: int) -> tuple[str, dict | None]:
    """("done", None), ("predict", None) when training is complete but not its predictions, ("resume", ckpt)
    or ("new", None); refuses a unit made with other settings, naming them."""
    stored = read_fingerprint(folder)
    if stored is not None:
        check_same_settings(folder, stored, expected, "made")
        return "done", None
    last = folder / "last.pth"
    if not last.is_file():
        return "new", None
    ckpt = load_training_checkpoint(last, model_type)
    stored = ckpt.get("unit")
    if stored is None:
        raise EmoNetError(f"{last}: not a unit of a comparison (no fingerprint); use another --output_dir")
    stored = {**stored, "training": {**stored["training"], "epochs": epochs}}  # an interrupted unit may train longer
    check_same_settings(folder, stored, expected, "started")
    return ("predict", None) if int(ckpt["epoch"]) >= epochs else ("resume", ckpt)


def _unit_record(folder: Path) -> dict | None:
    """A finished unit's unit.json (fingerprint, frames, source), None for an unfinished one."""
    marker = folder / UNIT_FILE
    return json.loads(marker.read_text()) if marker.is_file() else None


def read_fingerprint(folder: Path) -> dict | None:
    """The fingerprint of a finished unit, None for an unfinished one."""
    record = _unit_record(folder)
    return record["fingerprint"] if record else None


def unit_source(folder: Path) -> str | None:
    """Where a finished unit's input came from (a manifest's path, the dataset root), as it recorded it."""
    return _unit_record(folder).get("source")


def finished_units(output_dir: Path) -> list[tuple[Unit, dict]]:
    """Every finished unit of a comparison folder, as (unit, its unit.json), identified by what it recorded (its
    space, head, repetition and fold), in unit order."""
    found = []
    for marker in output_dir.rglob(UNIT_FILE) if output_dir.is_dir() else ():
        record = json.loads(marker.read_text())
        fp = record.get("fingerprint", {})
        if "head" not in fp:  # an earlier version's unit: refused, in words, when it is checked
            continue
        unit = Unit(fp["repeat"], fp["space"], fp["head"]["kind"], fp["split"]["fold"])
        if unit.folder(output_dir) == marker.parent:
            found.append((unit, record))
    return sorted(found, key=lambda pair: pair[0])


def require_finished(output_dir: Path, units: list[Unit]) -> None:
    """Refuse a report while any of `units` is unfinished (no unit.json), naming the first ones."""
    missing = [u.label for u in units if not (u.folder(output_dir) / UNIT_FILE).is_file()]
    if missing:
        raise EmoNetError(f"{len(missing)} units are not finished ({', '.join(missing[:6])}{', ...' if len(missing) > 6 else ''}); "
                          "run them (--only UNIT, or without --report_only) before the report")


def finish_unit(folder: Path, samples: list[dict], pred: np.ndarray, zero_shot: np.ndarray | None,
                 fp: dict, source_path: str | None) -> None:
    # `source` (the manifest's path, say) is for a reader, not part of the fingerprint.
    write_predictions(folder / UNIT_PREDICTIONS, folder / UNIT_FILE, samples, pred, zero_shot,
                      {"fingerprint": fp, "frames": len(samples), "source": source_path})


def write_predictions(table: Path, record_path: Path, samples: list[dict], pred: np.ndarray, zero_shot: np.ndarray | None,
                      record: dict) -> None:
    """A unit's predictions of `samples` (PREDICTION_COLUMNS, raw scale), then `record`, last: its presence means the
    predictions are complete."""
    zero = zero_shot if zero_shot is not None else np.full((len(samples), 2), np.nan)
    frame = pd.DataFrame({"clip": [s["clip"] for s in samples], "frame": [s["frame"] for s in samples],
                          "valence_pred": pred[:, 0], "arousal_pred": pred[:, 1],
                          "valence_zero_shot": zero[:, 0], "arousal_zero_shot": zero[:, 1]}, columns=PREDICTION_COLUMNS)
    write_text(table, frame.to_csv(index=False, float_format=lambda v: repr(float(v))))
    write_json(record_path, record)


def done_line(state: str, best: dict, held_out: int) -> str:
    """One line on a unit: what was done, the epoch chosen on the inner split, the frames predicted."""
    action = {"new": "trained", "resume": "resumed and trained", "predict": "predicted"}[state]
    sigma = best["history"][best["best_epoch"] - 1].get("sigma")
    return (f"{action}: epoch {best['best_epoch']}{f' and sigma {sigma:g}' if sigma is not None else ''} chosen "
            f"(inner-validation mean CCC {number(best['best_metric'])}), {held_out} held-out frames predicted")


def collect_predictions(output_dir: Path, units: list[Unit], folds: dict, samples: list[dict],
                        repeats: int) -> tuple[list[pd.DataFrame], pd.DataFrame]:
    """The out-of-fold predictions of every unit: one frame per repetition with columns clip, frame, fold,
    valence_true, arousal_true, then <column>_valence, <column>_arousal per (space, head); and EmoNet's
    zero-shot output per space (repetition 0's units, from which every repetition's is the same)."""
    require_finished(output_dir, units)
    base = pd.DataFrame({"clip": [s["clip"] for s in samples], "frame": [s["frame"] for s in samples],
                         "valence_true": [float(s["valence"]) for s in samples],
                         "arousal_true": [float(s["arousal"]) for s in samples]})
    unit_key = [sample_key(s, grouping(folds)) for s in samples]
    model = []
    for r in range(repeats):
        fold_of = {u: k for k, fold in enumerate(folds["repeats"][r]["folds"]) for u in fold}
        frame = base.copy()
        frame.insert(2, "fold", [fold_of[k] for k in unit_key])
        model.append(frame)
    zero = model[0].copy()
    for (r, space, head), group in unit_groups(units).items():
        table = pd.concat([pd.read_csv(u.folder(output_dir) / UNIT_PREDICTIONS, dtype={"clip": str, "frame": str})
                           for u in group])
        table = base[["clip", "frame"]].merge(table, on=["clip", "frame"], how="left", validate="one_to_one")
        column = prediction_column(space, head)
        for dim in ("valence", "arousal"):
            model[r][f"{column}_{dim}"] = table[f"{dim}_pred"].to_numpy()
            if r == 0 and head == units[0].head:
                zero[f"{space}_{dim}"] = table[f"{dim}_zero_shot"].to_numpy()
    return model, zero


# -- what --report_only reads back -------------------------------------------------------------------------------------
def adopt_recorded_settings(config: ComparisonConfig) -> ComparisonConfig:
    """--folds, --split and --seed of the finished comparison's folds.json, and --bootstrap of the report already in
    --report_dir; one given with another value is refused, naming both."""
    recorded = recorded_folds(Path(config.output_dir))
    report = recorded_report(Path(config.report_dir))
    if report is not None:
        recorded["bootstrap"] = report["protocol"].get("bootstrap")
    adopted = {}
    for name, value in recorded.items():
        have = getattr(config, name)
        if value is None or have == value:
            continue
        if have is None or not given(config, name):
            adopted[name] = value
            continue
        where = "the report already there" if name == "bootstrap" else FOLDS_FILE
        raise EmoNetError(f"--{name} {have}: the comparison was made with --{name} {value} ({where}); drop --{name}, "
                          "--report_only reads it from there" + (", or pass --report_dir OTHER_FOLDER for a report with "
                                                                 "other draws" if name == "bootstrap" else ""))
    return replace(config, **adopted)


def heads_in_order(heads) -> tuple[str, ...]:
    """The frame head first (every other is compared with it), then the others in the order of HEAD_KINDS, once each."""
    return (DEFAULT_HEAD, *(h for h in HEAD_KINDS if h in heads and h != DEFAULT_HEAD))


def adopt_unit_layout(config: ComparisonConfig, found: list[tuple[Unit, dict]]) -> ComparisonConfig:
    """The heads, repetitions and colour spaces not given are those of the finished units, and a head comparison's
    manifests those the units were made from (each unit records its manifest's path)."""
    output_dir = Path(config.output_dir)
    if not found:
        raise EmoNetError(f"{output_dir}: no finished unit to report on; run the units first")
    adopted = {}
    if config.heads is None:
        adopted["heads"] = heads_in_order([u.head for u, _ in found])
    if config.repeats is None:
        adopted["repeats"] = max(u.repeat for u, _ in found) + 1
    # The units do not record the order the spaces were given in: the known spaces in their usual order, then others.
    labels = {u.space for u, _ in found}
    spaces = [s for s in COLOR_SPACES if s in labels] + sorted(labels - set(COLOR_SPACES))
    if config.approach == "finetune" and config.color_spaces is None:
        adopted["color_spaces"] = tuple(spaces)
    if config.approach == "head" and config.manifests is None:
        sources = {}
        for unit, record in sorted(found, key=lambda pair: spaces.index(pair[0].space)):
            sources.setdefault(unit.space, record.get("source"))
        adopted["manifests"] = recorded_manifests(sources, "the manifests the finished units were made from", "--manifests")
    if config.approach == "head" and config.test_manifests is None:
        tested = tested_manifests(output_dir, found)
        if len(tested) == 1:
            (dataset, sources), = tested.items()
            adopted["test_manifests"] = recorded_manifests(
                sources, f"the {dataset} manifests the units' cross-corpus predictions were made from", "--test_manifests")
    return replace(config, **adopted)


def recorded_manifests(sources: dict[str, str | None], what: str, flag: str) -> dict[str, str]:
    """{space: path} of the manifests the units recorded (`what`: which, in words); one no longer there is refused."""
    missing = [s for s, path in sources.items() if not path or not Path(path).is_file()]
    if missing:
        raise EmoNetError(f"--report_only: of {what}, {missing[0]}'s ({sources[missing[0]] or 'not recorded'}) is not "
                          f"there any more; pass {flag} LABEL=PATH for every space")
    logger.info("--report_only: %s: %s", what, ", ".join(f"{s}={p}" for s, p in sources.items()))
    return dict(sources)


def tested_manifests(output_dir: Path, found: list[tuple[Unit, dict]]) -> dict[str, dict[str, str | None]]:
    """{test dataset: {space: manifest}} of the cross-corpus predictions the finished units hold."""
    tested: dict[str, dict[str, str | None]] = {}
    for unit, _ in found:
        for record in sorted(unit.folder(output_dir).glob(cross_files(Path(), "*")[1].name)):
            tested.setdefault(record.stem.removeprefix("cross_"), {}).setdefault(
                unit.space, json.loads(record.read_text()).get("source"))
    return tested


def check_not_narrower(config: ComparisonConfig, found, spaces: list[str], tested_dataset: str | None) -> None:
    """Refuse a report of fewer spaces, heads, repetitions or test corpora than the finished units of the output folder
    into that folder: it would replace the report of the whole (a narrower one goes to another --report_dir)."""
    output_dir = Path(config.output_dir)
    if Path(config.report_dir).resolve() != output_dir.resolve():
        return
    left_out = []
    tested = set(tested_manifests(output_dir, found)) - {tested_dataset}
    if tested:
        left_out.append(f"the cross-corpus predictions of {', '.join(sorted(tested))} (--test_manifests)")
    for name, have, asked in (("colour spaces", {u.space for u, _ in found}, set(spaces)),
                              ("heads", {u.head for u, _ in found}, set(config.heads))):
        if have - asked:
            left_out.append(f"{name} {', '.join(sorted(have - asked))}")
    repeats = max((u.repeat for u, _ in found), default=-1) + 1
    if repeats > config.repeats:
        left_out.append(f"repetitions {config.repeats}..{repeats - 1}")
    if left_out:
        raise EmoNetError(f"{output_dir} holds finished units of {'; '.join(left_out)} that this report would leave "
                          f"out, replacing the report of the whole: run it with those included (--report_only alone "
                          "reads them from the units), or pass --report_dir OTHER_FOLDER for a narrower report")


def adopt_unit_settings(config: ComparisonConfig, units: list[Unit]) -> ComparisonConfig:
    """The training settings not given take the values the units record (one given is then checked against every unit,
    like any other setting)."""
    output_dir = Path(config.output_dir)
    fingerprints = {u.head: fp for u in reversed(units) if (fp := read_fingerprint(u.folder(output_dir)))}
    if not fingerprints:
        raise EmoNetError(f"{output_dir}: no finished unit to report on; run the units first")
    adopted = {}
    for name in TRAINING_FLAGS[config.approach]:
        if given(config, name):
            continue
        # The temporal head's own setting comes from a temporal unit; every other from any unit.
        source = fingerprints.get("temporal") if name == "clips_per_batch" else next(iter(fingerprints.values()))
        if source is not None and name in source["training"]:
            adopted[name] = source["training"][name]
    return replace(config, **adopted)


def check_finished(output_dir: Path, units: list[Unit], expected) -> None:
    """Every unit is finished and was made with the settings this report describes."""
    require_finished(output_dir, units)
    for unit in units:
        check_same_settings(unit.folder(output_dir), read_fingerprint(unit.folder(output_dir)), expected(unit), "made")
