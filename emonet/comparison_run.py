"""A colour-space comparison from start to report (`run_comparison`, which compare_color_spaces.py and `emonet.compare`
run): the units to train (heads on features, `comparison_heads.py`, or EmoNet fine-tuned, `comparison_finetune.py`),
their folds, the cross-corpus rows, and the report of every finished unit (`comparison_report.py`).
"""
import logging
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch

from .comparison import (all_units, check_feature_files, check_heads, check_manifests, comparison_manifests,
                         feature_identity, group_indices, make_folds, parse_only, read_manifests, scored_samples,
                         without_samples)
from .comparison_finetune import FinetuneComparison
from .comparison_heads import HeadComparison
from .comparison_records import (adopt_recorded_settings, adopt_unit_layout, adopt_unit_settings, check_finished,
                                 check_not_narrower, claim_folds, collect_predictions, finished_units, heads_in_order,
                                 read_fingerprint, unit_source)
from .comparison_report import build_report, write_report
from .constants import CROSS_CORPUS, DEFAULT_CLIPS_PER_BATCH, DEFAULT_COLOR_SPACE, DEFAULT_HEAD, OFFICIAL
from .cross_corpus import collect_test_predictions, predict_test_corpus, read_test_corpus, test_groups
from .dataset_info import DATASETS
from .distributed import Distributed, init_distributed
from .errors import EmoNetError
from .extraction import extract_features
from .finetune import check_device, load_frames_for
from .io import check_writable, sha256_file
from .runs import check_kind
from .settings import (DEFAULT_BOOTSTRAP, DEFAULT_FOLDS, ComparisonConfig, ExtractionConfig, FinetuneConfig,
                       FrameNetworkSettings, HeadConfig, check_optimisation, dataset_root_for, default_feature_paths)
from .testing import write_demo_dataset
from .text import plural

logger = logging.getLogger(__name__)

DEMO_SPACES = ("rgb", "hsv")
DEFAULT_SPACES = ("rgb", "hsv", "lab", "yuv")


@dataclass
class ComparisonRun:
    """What a run did: one line per unit it trained or skipped, the units listed (`list_units`), and the report (the
    content of comparison.json; None when no report was made: --only, --list_units, another rank of torchrun)."""

    lines: list[str] = field(default_factory=list)
    listed: list[str] = field(default_factory=list)
    report: dict | None = None


def run_comparison(config: ComparisonConfig) -> ComparisonRun:
    """Run the comparison `config` describes (see compare_color_spaces.py's docstring for the protocol)."""
    config = config.checked()
    logging.getLogger("emonet.training").setLevel(logging.WARNING)  # one line per unit, not one per epoch
    dist = init_distributed(config.device)
    try:
        if config.demo and dist.is_distributed:
            raise EmoNetError("--demo is a whole head comparison in one command: run it without torchrun")
        if config.report_only:
            config = adopt_recorded_settings(config)
        config = replace(config, split=config.split or "clip", bootstrap=config.bootstrap or DEFAULT_BOOTSTRAP)
        if not config.report_only:  # with --report_only, the heads not given are the units' (`_compare`)
            config = replace(config, heads=heads_in_order(config.heads or (DEFAULT_HEAD,)))
        if not config.list_units and dist.is_main:
            check_writable(config.output_dir, config.report_dir)
        if config.demo:
            config = replace(config, manifests=_demo_manifests(config))
        return _compare(config, dist)
    finally:
        dist.close()


def _demo_manifests(config: ComparisonConfig) -> dict[str, str]:
    """Write the demo sample and weights, extract rgb and hsv features with the normal extraction code."""
    folder = Path(config.output_dir) / "demo_data"
    root, checkpoint = write_demo_dataset(folder, config.demo_clips, config.demo_frames)
    manifests = {}
    for space in DEMO_SPACES:
        features, manifest = default_feature_paths(space)
        result = extract_features(ExtractionConfig(str(root), str(folder / features), str(folder / manifest),
                                                   str(checkpoint), color_space=space, device=config.device,
                                                   progress=config.progress))
        logger.info("demo %s features: %s", space, result.summary())
        manifests[space] = str(folder / manifest)
    return manifests


def _compare(config: ComparisonConfig, dist: Distributed) -> ComparisonRun:
    output_dir, report_dir = Path(config.output_dir), Path(config.report_dir)
    found = finished_units(output_dir) if config.report_only or not (config.only or config.list_units) else []
    if config.report_only:
        config = adopt_unit_layout(config, found)
        config = replace(config, heads=heads_in_order(config.heads))
    config = replace(config, repeats=config.repeats or 1)
    if config.clips_per_batch is not None and "temporal" not in config.heads:
        raise EmoNetError("--clips_per_batch is the temporal head's: add temporal to --heads, or drop it")
    corpus = common = manifests = None
    if config.approach == "head":
        paths = comparison_manifests(config.manifests, Path.cwd(), len(config.heads) > 1)
        spaces = list(paths)
    else:
        spaces = list(config.color_spaces or DEFAULT_SPACES)
        if len(spaces) < 2:
            raise EmoNetError("--color_spaces: the fine-tuning comparison needs two colour spaces or more (its network "
                              "stays frame-level, so one space has nothing to be compared with)")
    reference = config.reference or (spaces[0] if len(spaces) == 1 else DEFAULT_COLOR_SPACE)
    if reference not in spaces:
        raise EmoNetError(f"--reference {reference} is not among the colour spaces compared ({', '.join(spaces)})")
    config = replace(config, reference=reference)
    check_files = not (config.report_only or config.list_units)
    if config.approach == "head":
        manifests = read_manifests(paths)
        common = check_manifests(manifests, config.common_frames)
        official, dataset = common.official, common.dataset
        check_heads(manifests, config.heads)  # not a loop here: its variable would hold a manifest's samples all run
        if check_files:
            check_feature_files(manifests)
        manifests = without_samples(manifests)
        samples = common.samples
        if config.test_manifests:
            corpus = read_test_corpus(comparison_manifests(config.test_manifests, Path.cwd(), True, "--test_manifests"),
                                      manifests, common.dataset, config.heads, config.common_frames, check_files)
    else:
        official, dataset = DATASETS[config.dataset].official_split, config.dataset
    if official and config.folds is not None:
        raise EmoNetError(f"--folds {config.folds}: {dataset} has an official training / validation split, on which the "
                          "comparison trains and scores (no cross-validation); drop --folds")
    config = replace(config, folds=1 if official else config.folds or DEFAULT_FOLDS)
    every = all_units(config.repeats, spaces, list(config.heads), config.folds)
    if config.list_units:
        return ComparisonRun(listed=[u.label for u in every])
    units = [parse_only(config.only, spaces, list(config.heads), config.folds, config.repeats)] if config.only else every
    if not config.only:
        check_not_narrower(config, found, spaces, corpus.dataset if corpus else None)
    if config.report_only:
        config = adopt_unit_settings(config, every)
    if "temporal" in config.heads and config.clips_per_batch is None:
        config = replace(config, clips_per_batch=DEFAULT_CLIPS_PER_BATCH)
    training = config.training()
    shared = {k: getattr(config, k) for k in ("weight_decay", "optimizer", "loss_function", "seed", "save_freq",
                                              "keep_checkpoints", "inner_val_split", "device", "progress")}
    if config.approach == "finetune":
        finetuning = FinetuneConfig(**training, **shared, **{f.name: getattr(config, f.name)
                                                             for f in fields(FrameNetworkSettings)}).checked()
        config = replace(config, crop=finetuning.crop)
        check_device(finetuning, dist)
        dataset_root = Path(dataset_root_for(config.dataset, config.dataset_root)).resolve()
        frames = load_frames_for(dataset_root, config.limit, finetuning.crop, config.dataset)
        samples = [f.sample() for f in frames]
    folds = make_folds(samples, config.split, config.folds, config.seed, config.repeats, official)
    error = None
    if dist.is_main:
        try:
            check_kind(output_dir, "comparison")
            check_kind(report_dir, "comparison")
            folds = claim_folds(output_dir, folds, write=not config.report_only)
        except EmoNetError as exc:
            error = exc
    dist.agree(error)
    folds = dist.broadcast(folds)
    if config.approach == "head":
        sources = {s: feature_identity(manifests[s], samples) for s in spaces}
        device = dist.device if dist.device.type == "cuda" else torch.device("cpu")
        heads = HeadConfig(**training, **shared, dropout=config.dropout, clips_per_batch=config.clips_per_batch)
        check_optimisation(heads)
        comparison = HeadComparison(output_dir, folds, heads, spaces, common, sources, manifests, device,
                                    progress=config.progress and dist.is_main)
    else:
        comparison = FinetuneComparison.of(output_dir, folds, finetuning, frames, dataset_root,
                                           sha256_file(config.pretrained_path), dist.world_size)
    run = ComparisonRun()
    if config.report_only:
        check_finished(output_dir, every, comparison.expected)
    else:
        lines = comparison.run(units, dist, config.workers)
        if corpus is not None:
            predicted = predict_test_corpus(comparison, corpus, units[dist.rank :: dist.world_size])
            lines.append(f"{plural(predicted, 'unit')} predicted the {corpus.scored} of {corpus.dataset} "
                         f"({len(corpus.rows):,} frames)" if predicted else f"every unit had predicted {corpus.dataset} already")
        gathered = [line for rank_lines in dist.gather(lines) for line in rank_lines]
        run.lines = gathered if dist.is_main else []
        dist.barrier()
    if config.only or not dist.is_main:
        return run
    run.report = _report(config, spaces, every, folds, scored_samples(folds, samples), manifests, common, corpus)
    return run


def _report(config: ComparisonConfig, spaces, units, folds, samples, manifests, common, corpus) -> dict:
    """The report of every unit: comparison.json's content, written with the table, plot and predictions."""
    output_dir = Path(config.output_dir)
    preds, zero = collect_predictions(output_dir, units, folds, samples, config.repeats)
    keep = np.logical_and.reduce([p.notna().all(axis=1).to_numpy() for p in preds])  # undecodable frames (finetune)
    if not keep.all():
        logger.warning("%d frames lack a prediction for some colour space (undecodable) and are left out",
                       int((~keep).sum()))
    preds = [p[keep].reset_index(drop=True) for p in preds]
    zero = zero[keep].reset_index(drop=True)
    samples = [s for s, k in zip(samples, keep, strict=True) if k]
    groups = group_indices(samples, config.split)
    protocol = _protocol(config, units, samples, common, folds)
    if config.demo:  # the demo's EmoNet has stand-in weights: its zero-shot rows are left out, saying why
        protocol["demo_zero_shot_median"] = float(np.nanmedian(zero[[c for c in zero if c.startswith(tuple(spaces))]]))
        zero = None
    sources = {s: unit_source(next(u for u in units if u.space == s).folder(output_dir)) for s in spaces}
    result = build_report(preds, zero, spaces, list(config.heads), config.reference, groups, protocol,
                          sources if manifests is not None else None)
    cross_preds = None
    if corpus is not None:
        result["cross_corpus"], cross_preds = _cross_corpus_report(config, spaces, units, corpus, protocol)
    write_report(Path(config.report_dir), result, preds, zero, cross_preds)
    return result


def _cross_corpus_report(config: ComparisonConfig, spaces, units, corpus, protocol) -> tuple[dict, list]:
    """The cross-corpus rows: every (space, head) scored on the test corpus, as a report of its own; and the
    predictions they score."""
    preds, zero = collect_test_predictions(Path(config.output_dir), units, corpus, config.repeats)
    groups, group_by = test_groups(corpus.samples, config.split)
    cross = {**protocol, "protocol": CROSS_CORPUS, "trained_on": protocol["dataset"], "dataset": corpus.dataset,
             "scored": corpus.scored, "group_by": group_by, "folds": 1, "frames": len(corpus.rows),
             "clips": len({s["clip"] for s in corpus.samples}),
             "combination": (f"the mean of its {protocol['folds']} fold models" if protocol["protocol"] != OFFICIAL
                             else "that of its one model")}
    for key in ("dropped_frames", "units_folder", "training_groups"):
        cross.pop(key, None)
    return build_report(preds, None if config.demo else zero, spaces, list(config.heads), config.reference, groups, cross,
                        {s: str(m.path.resolve()) for s, m in corpus.manifests.items()}), preds


def _protocol(config: ComparisonConfig, units, samples, common, folds) -> dict:
    """What the report says was done: the training settings as the units record them, the comparison's own choices."""
    output_dir = Path(config.output_dir)
    fingerprints = {}
    for unit in units:
        fingerprints.setdefault(unit.head, read_fingerprint(unit.folder(output_dir)))
    first = fingerprints[DEFAULT_HEAD]
    training, source = first["training"], first["input"]
    official = folds.get("protocol") == OFFICIAL
    protocol = {"approach": config.approach, "dataset": common.dataset if common else config.dataset,
                "protocol": OFFICIAL if official else "cross-validation", "group_by": config.split,
                "folds": len(folds["folds"]), "seed": config.seed, "repeats": config.repeats,
                "heads": list(config.heads), "bootstrap": config.bootstrap, "reference": config.reference,
                **{k: training[k] for k in ("inner_val_split", "epochs", "batch_size", "learning_rate", "weight_decay",
                                            "optimizer", "loss_function")},
                "frames": len(samples), "clips": len({s["clip"] for s in samples}), "torch_version": torch.__version__,
                "selection": "best mean CCC on an inner validation split of each fold's training units",
                "demo": bool(config.demo)}
    if official:
        protocol["training_groups"] = len(folds["repeats"][0]["train"])
    if Path(config.report_dir).resolve() != output_dir.resolve():  # a report beside its units says where they are
        protocol["units_folder"] = str(output_dir.resolve())
    if config.approach == "head":
        features = source["features"]
        protocol |= {"dropout": training["dropout"], "crop": features.get("crop"),
                     "pretrained_sha256": features.get("pretrained_sha256"), "precision": features.get("precision"),
                     "common_frames": config.common_frames, "dropped_frames": common.dropped,
                     "clips_per_batch": fingerprints["temporal"]["training"]["clips_per_batch"]
                     if "temporal" in fingerprints else None}
    else:
        protocol |= {"crop": training["crop"], "pretrained_sha256": source["pretrained_sha256"],
                     **{k: training[k] for k in ("freeze_backbone", "augment", "colour_jitter", "grad_clip", "flip_tta",
                                                 "amp", "limit")},
                     "processes": sorted({read_fingerprint(u.folder(output_dir))["input"]["processes"] for u in units})}
    return protocol

