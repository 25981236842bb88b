"""Does feeding EmoNet another colour space help on AFEW-VA (or Aff-Wild2, AffectNet)? The answer in one command,
cross-validated (or on the dataset's official split), with a statistic of the difference that covers training again.

    python compare_color_spaces.py --demo          # a first run: no data, no weights, a planted signal

    python compare_color_spaces.py \\
        --manifests rgb=features_manifest.json hsv=features_hsv_manifest.json lab=features_lab_manifest.json \\
        --heads frame smooth temporal --repeats 5 --folds 5 --split clip --epochs 50 --batch_size 64 \\
        --learning_rate 1e-3 --loss_function ccc --reference rgb --bootstrap 1000 --seed 0 \\
        --output_dir color_space_comparison

    python compare_color_spaces.py --manifests rgb=aw2_rgb.json hsv=aw2_hsv.json --repeats 5 --split actor \\
        --test_manifests rgb=afew_rgb.json hsv=afew_hsv.json --output_dir aw2_comparison   # official split, cross-corpus

    python compare_color_spaces.py --approach finetune --dataset_root $AFEW_VA_ROOT \\
        --pretrained_path pretrained/emonet_8.pth --color_spaces rgb hsv lab yuv --folds 5 --freeze_backbone

Protocol (see emonet/comparison.py): the same frames and the same group K-fold folds for every colour space
and head (folds.json); each fold's model is trained on the other folds, its epoch (and the smooth head's
sigma) chosen on an inner validation split of those training clips, and the held-out fold predicted once.
With --repeats R the whole cross-validation is repeated with seeds seed..seed+R-1 (other folds, inner
splits, initialisations, orders). The report (comparison.json, .csv, .md, .png, oof_predictions.csv) gives
per-fold and pooled metrics with clip-bootstrap CIs (repetition 0), and for each space and head the CCC
difference to --reference and to the frame head: paired clip bootstrap, and with R > 1 the corrected
resampled t-test over the R x K folds, which the report leads with. The EmoNet zero-shot rows score the
network's own valence/arousal on the same frames.

Aff-Wild2 and AffectNet manifests (their samples carry the official split) are not cross-validated: every unit
trains on the official training split (epochs chosen on an inner split of it) and scores the validation split; the
R repetitions are R trainings on that one fixed test set, and the report leads with the mean over seeds and a
bootstrap of the validation clips (or actors) and the seeds. --test_manifests adds cross-corpus rows: every unit's
chosen model also scores another corpus (its validation split, or every frame of AFEW-VA).

Units are independent: --only SPACE:FOLD (frame head, repetition 0), SPACE:HEAD:FOLD, either with @REPEAT
(e.g. hsv:temporal:2@3), runs one (a job-array task; --list_units prints them all, one a line);
--report_only aggregates finished ones and describes what they record; a rerun skips finished units,
resumes an interrupted one, and with a larger --repeats trains only the new repetitions. Head units use
every core of the machine (--workers processes, one thread each); under torchrun the head approach shares
the units among the processes, the fine-tuning approach trains each unit with all of them (DDP).
"""
import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from emonet.cli import (add_finetune_arguments, add_frame_arguments, add_optimisation_arguments, check_finetune_args,
                        check_fraction, check_optimisation_args, dataset_root_for, run)
from emonet.colour import COLOR_SPACES, DEFAULT_COLOR_SPACE
from emonet.comparison import (APPROACHES, FOLDS_FILE, TRAINING_FLAGS, UNIT_FILE, HeadComparison, all_units, check_feature_files,
                               check_manifests, check_same_settings, claim_folds, collect_predictions, default_workers,
                               feature_identity, finetune_plan, finetune_source, finished_units, group_indices, make_folds,
                               parse_manifest_args, parse_only, read_fingerprint, read_manifests, recorded_folds,
                               run_finetune_unit,
                               run_head_units, scored_samples, unit_source, without_samples)
from emonet.comparison_report import DEMO_NOTE, build_report, recorded_report, summary, write_report
from emonet.constants import CROSS_CORPUS, OFFICIAL
from emonet.cross_corpus import collect_test_predictions, predict_test_corpus, read_test_corpus, test_groups
from emonet.datasets import DATASETS
from emonet.distributed import init_distributed
from emonet.errors import EmoNetError
from emonet.extraction import ExtractionConfig, extract_features
from emonet.features import HEAD_DEFAULTS
from emonet.finetune import FINETUNE_DEFAULTS, load_frames_for
from emonet.head_training import DEFAULT_CLIPS_PER_BATCH
from emonet.heads import DEFAULT_HEAD, HEAD_KINDS
from emonet.io import check_writable, sha256_file
from emonet.manifest import default_feature_paths
from emonet.runs import check_kind
from emonet.testing import write_demo_dataset
from emonet.text import plural

DEFAULTS = {"head": HEAD_DEFAULTS, "finetune": FINETUNE_DEFAULTS}
# Flags that belong to one approach only: given with the other, they are refused, not ignored.
HEAD_ONLY = ("manifests", "test_manifests", "common_frames", "dropout", "heads", "clips_per_batch", "workers")
FINETUNE_ONLY = ("color_spaces", "dataset", "dataset_root", "pretrained_path", "crop", "n_expression", "freeze_backbone",
                 "augment", "colour_jitter", "grad_clip", "sync_bn", "num_workers", "amp", "limit", "flip_tta")
DEFAULT_FOLDS = 5
DEFAULT_BOOTSTRAP = 1000
DEMO_SPACES = ("rgb", "hsv")
DEMO_EPOCHS = 10
logger = logging.getLogger("emonet")


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)  # a misspelt or shortened flag is an error, never another flag
    parser.add_argument("--approach", choices=APPROACHES, default="head",
                        help="head: heads on extracted features; finetune: EmoNet fine-tuned on frames (default: head)")
    parser.add_argument("--manifests", nargs="+", metavar="SPACE=MANIFEST", default=None,
                        help="head: the feature manifest of each colour space (default: the standard manifest of every "
                             "space found in the working folder: features_manifest.json, features_hsv_manifest.json, ...)")
    parser.add_argument("--test_manifests", nargs="+", metavar="SPACE=MANIFEST", default=None,
                        help="head: another corpus's manifest of each colour space of --manifests (same crop and "
                             "checkpoint): every unit's chosen model also predicts its official validation split (every "
                             "frame of a corpus without one), and the report adds cross-corpus rows beside the in-corpus "
                             "ones (default: none)")
    parser.add_argument("--common_frames", action="store_true",
                        help="head: keep the frames every manifest has, instead of refusing manifests that differ "
                             "(default: refuse)")
    parser.add_argument("--heads", nargs="+", choices=HEAD_KINDS, default=None,
                        help="head: the heads to train on every space: frame (each frame alone), smooth (frame head + "
                             "Gaussian along the clip, sigma chosen on the inner split), temporal (temporal convolution "
                             "network over each clip); frame is always included, every other head is compared with it; "
                             "one colour space with several heads is a comparison of heads (default: frame; with "
                             "--report_only, the heads of the finished units)")
    parser.add_argument("--dropout", type=float, default=0.2, help="head: dropout of the heads (default: 0.2)")
    parser.add_argument("--clips_per_batch", type=int, default=None,
                        help=f"head, with --heads temporal: clips per step of the temporal head (default: "
                             f"{DEFAULT_CLIPS_PER_BATCH})")
    parser.add_argument("--workers", type=int, default=None,
                        help="head: processes that train head units, each on one core (default: every core of a CPU "
                             "run; 1 under torchrun, whose processes share the units, and on a GPU)")
    parser.add_argument("--color_spaces", nargs="+", choices=COLOR_SPACES, default=None,
                        help="finetune: the colour spaces to compare (default: rgb hsv lab yuv)")
    add_frame_arguments(parser, one_space=False)
    add_finetune_arguments(parser)
    parser.add_argument("--flip_tta", action="store_true",
                        help="finetune: predict each held-out frame as the mean with its mirror (default: off)")
    add_optimisation_arguments(parser, None, save_freq=0)
    parser.add_argument("--split", choices=("clip", "actor", "frame"), default=None,
                        help="unit the folds keep whole: clip or actor (frame is refused: it leaks) (default: clip; with "
                             "--report_only, that of folds.json)")
    parser.add_argument("--folds", type=int, default=None,
                        help=f"K of the group K-fold; refused under an official split, which is one fixed test set "
                             f"(default: {DEFAULT_FOLDS}; with --report_only, that of folds.json)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="R: repeat the K-fold cross-validation R times, repetition r with seed --seed + r (folds, "
                             "inner splits, initialisation, order); R > 1 adds the corrected resampled t-test over "
                             "the R x K folds, which covers training again; publish with R >= 3 (default: 1; with "
                             "--report_only, the repetitions of the finished units)")
    parser.add_argument("--inner_val_split", type=float, default=0.1,
                        help="fraction of each fold's training clips on which the best epoch is chosen (default: 0.1)")
    parser.add_argument("--reference", default=None,
                        help=f"colour space every other is compared with (default: {DEFAULT_COLOR_SPACE}; the space itself "
                             "when there is one)")
    parser.add_argument("--bootstrap", type=int, default=None,
                        help=f"bootstrap draws (resampled clips) (default: {DEFAULT_BOOTSTRAP}; with --report_only, that of "
                             "the report already in --report_dir)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--output_dir", default=None,
                        help="where units and report go (default: color_space_comparison, _demo with --demo)")
    parser.add_argument("--report_dir", default=None,
                        help="where the report goes (default: --output_dir); a report of fewer spaces, heads or "
                             "repetitions than --output_dir holds must go to another folder, so that it never replaces "
                             "the report of the whole")
    parser.add_argument("--only", metavar="UNIT", default=None,
                        help="run this unit only: SPACE:FOLD, SPACE:HEAD:FOLD, optionally @REPEAT, e.g. hsv:2 or "
                             "hsv:temporal:2@1 (default: all)")
    parser.add_argument("--list_units", action="store_true",
                        help="print every unit of the comparison, one a line, for --only in a job array; train nothing "
                             "(default: off)")
    parser.add_argument("--report_only", action="store_true",
                        help="aggregate finished units; train nothing. The report describes what the units record: the "
                             "spaces (and their manifests), heads, repetitions and training flags not given here are "
                             "read from them, and one given must match them (default: off)")
    parser.add_argument("--no_progress", action="store_true", help="hide progress bars (default: shown)")
    parser.add_argument("--demo", action="store_true",
                        help="a first run without AFEW-VA or the weights: writes a small sample whose faces change with "
                             "the labels and deterministic weights into <output_dir>/demo_data/, extracts rgb and hsv "
                             "features, compares them (default: off)")
    parser.add_argument("--demo_clips", type=int, default=36, help="with --demo: clips of the sample (default: 36)")
    parser.add_argument("--demo_frames", type=int, default=3, help="with --demo: frames per clip (default: 3)")
    return parser


def check_args(args, dist) -> None:
    """Refuse, before any work, what cannot work or would be ignored; fill the approach's defaults."""
    parser = get_args_parser()
    given = {name for name in (*HEAD_ONLY, *FINETUNE_ONLY, "demo_clips", "demo_frames")
             if getattr(args, name) != parser.get_default(name)}
    other = given & set(FINETUNE_ONLY if args.approach == "head" else HEAD_ONLY)
    if other:
        name = sorted(other)[0]
        raise EmoNetError(f"--{name} does not apply to --approach {args.approach}"
                          + ("; fine-tuning keeps its frame-level network" if name in ("heads", "clips_per_batch") else ""))
    if args.report_only:
        adopt_recorded_settings(args)
    args.split = args.split or "clip"
    args.bootstrap = args.bootstrap or DEFAULT_BOOTSTRAP
    if args.split == "frame":
        raise EmoNetError("--split frame is refused: neighbouring frames of a clip would sit in training and in the "
                          "held-out fold, and the comparison would measure clip recognition; use clip or actor")
    if args.demo and (args.approach != "head" or args.only or args.report_only or args.manifests or dist.is_distributed):
        raise EmoNetError("--demo is a whole head comparison in one command: drop --approach finetune, --only, "
                          "--report_only, --manifests and torchrun")
    if given & {"demo_clips", "demo_frames"} and not args.demo:
        raise EmoNetError("--demo_clips and --demo_frames go with --demo")
    if sum(map(bool, (args.only, args.report_only, args.list_units))) > 1:
        raise EmoNetError("--only trains one unit, --report_only trains none and --list_units lists them: choose one")
    # With --report_only, heads and repetitions not given are read from the finished units (`adopt_unit_layout`).
    args.heads_given = args.heads is not None
    args.given_layout = {n for n in ("heads", "repeats", "manifests", "color_spaces") if getattr(args, n) is not None}
    args.heads = heads_in_order(args.heads or [DEFAULT_HEAD])
    if args.clips_per_batch is not None and "temporal" not in args.heads and (args.heads_given or not args.report_only):
        raise EmoNetError("--clips_per_batch is the temporal head's: add temporal to --heads, or drop it")
    if args.repeats is not None and args.repeats < 1:
        raise EmoNetError(f"--repeats {args.repeats}: at least 1")
    args.repeats = args.repeats or 1
    if args.workers is not None and args.workers < 1:
        raise EmoNetError(f"--workers {args.workers}: at least 1")
    # Training flags given on this command line: with --report_only, the others are read from the units.
    args.given_training = {n for n in TRAINING_FLAGS[args.approach] if getattr(args, n) != parser.get_default(n)}
    for name, value in DEFAULTS[args.approach].items():
        if getattr(args, name) is None:
            setattr(args, name, DEMO_EPOCHS if args.demo and name == "epochs" else value)
    check_optimisation_args(args)
    check_fraction("--inner_val_split", args.inner_val_split)
    if args.folds is not None and args.folds < 2:
        raise EmoNetError(f"--folds {args.folds}: K-fold needs K >= 2")
    if args.bootstrap < 100:
        raise EmoNetError(f"--bootstrap {args.bootstrap}: at least 100 draws for a 95 % interval")
    if args.approach == "finetune":
        check_finetune_args(args, dist)
    args.output_dir = Path(args.output_dir or ("color_space_comparison_demo" if args.demo else "color_space_comparison"))
    args.report_dir = Path(args.report_dir) if args.report_dir else args.output_dir
    if args.report_dir != args.output_dir and (args.only or args.list_units):
        raise EmoNetError("--report_dir is where a report goes: --only and --list_units write none")
    if not args.list_units and dist.is_main:
        check_writable(args.output_dir, args.report_dir)


def adopt_recorded_settings(args) -> None:
    """--report_only: --folds, --split and --seed are those of the finished comparison's folds.json, and --bootstrap that
    of the report already in --report_dir; a flag given with another value is refused, naming both."""
    parser = get_args_parser()
    recorded = recorded_folds(Path(args.output_dir or "color_space_comparison"))
    report = recorded_report(Path(args.report_dir or args.output_dir or "color_space_comparison"))
    if report is not None:
        recorded["bootstrap"] = report["protocol"].get("bootstrap")
    for name, value in recorded.items():
        given = getattr(args, name)
        if value is None or given == value:
            continue
        if given is None or (name == "seed" and given == parser.get_default("seed")):
            setattr(args, name, value)
            continue
        where = "the report already there" if name == "bootstrap" else FOLDS_FILE
        raise EmoNetError(f"--{name} {given}: the comparison was made with --{name} {value} ({where}); drop --{name}, "
                          "--report_only reads it from there" + (", or pass --report_dir OTHER_FOLDER for a report with "
                                                                 "other draws" if name == "bootstrap" else ""))


def heads_in_order(heads: list[str]) -> list[str]:
    """The frame head first (every other is compared with it), then the others in the order of HEAD_KINDS, once each."""
    return [DEFAULT_HEAD] + [h for h in HEAD_KINDS if h in heads and h != DEFAULT_HEAD]


def main(args):
    logging.getLogger("emonet.training").setLevel(logging.WARNING)  # one line per unit, not one per epoch
    dist = init_distributed(args.device)
    try:
        check_args(args, dist)
        if args.demo:
            print(DEMO_NOTE)
            args.manifests = demo_manifests(args)
        compare(args, dist)
        if args.demo:
            print(DEMO_NOTE)
    finally:
        dist.close()


def demo_manifests(args) -> list[str]:
    """Write the demo sample and weights, extract rgb and hsv features with the normal extraction code."""
    folder = args.output_dir / "demo_data"
    root, checkpoint = write_demo_dataset(folder, args.demo_clips, args.demo_frames)
    manifests = []
    for space in DEMO_SPACES:
        features, manifest = default_feature_paths(space)
        result = extract_features(ExtractionConfig(str(root), str(folder / features), str(folder / manifest), str(checkpoint),
                                                   color_space=space, device=args.device,
                                                   progress=not args.no_progress))
        print(f"demo {space} features: {result.summary()}")
        manifests.append(f"{space}={folder / manifest}")
    return manifests


def compare(args, dist) -> None:
    found = finished_units(args.output_dir) if args.report_only or not (args.only or args.list_units) else []
    if args.report_only:
        adopt_unit_layout(args, found)
    if "temporal" in args.heads and args.clips_per_batch is None and "clips_per_batch" not in args.given_training:
        args.clips_per_batch = DEFAULT_CLIPS_PER_BATCH
    several_heads = len(args.heads) > 1
    if args.approach == "head":
        paths = parse_manifest_args(args.manifests, Path.cwd(), several_heads)
        spaces = list(paths)
    else:
        spaces = args.color_spaces or ["rgb", "hsv", "lab", "yuv"]
        if len(spaces) < 2:
            raise EmoNetError("--color_spaces: the fine-tuning comparison needs two colour spaces or more (its network "
                              "stays frame-level, so one space has nothing to be compared with)")
    if args.reference is None:
        args.reference = spaces[0] if len(spaces) == 1 else DEFAULT_COLOR_SPACE
    if args.reference not in spaces:
        raise EmoNetError(f"--reference {args.reference} is not among the colour spaces compared ({', '.join(spaces)})")
    official, corpus = False, None
    if args.approach == "head":
        manifests = read_manifests(paths)
        common = check_manifests(manifests, args.common_frames)
        official = common.official
        check_dataset_args(args, manifests, common)
        if not (args.report_only or args.list_units):
            check_feature_files(manifests)
        manifests = without_samples(manifests)
        samples = common.samples
        if args.test_manifests:
            corpus = read_test_corpus(parse_manifest_args(args.test_manifests, Path.cwd(), True, "--test_manifests"),
                                      manifests, common.dataset, args.heads, args.common_frames,
                                      check_files=not (args.report_only or args.list_units))
    if args.approach == "finetune":
        official = DATASETS[args.dataset].official_split
        check_folds(args, official, args.dataset)
    args.folds = 1 if official else args.folds or DEFAULT_FOLDS
    folds_count = args.folds
    every = all_units(args.repeats, spaces, args.heads, folds_count)
    if args.list_units:
        print("\n".join(u.label for u in every))
        return
    units = [parse_only(args.only, spaces, args.heads, folds_count, args.repeats)] if args.only else every
    if not args.only:
        check_not_narrower(args, found, spaces, corpus)
    if args.report_only:
        adopt_unit_settings(args, every)
    if args.approach == "finetune":
        dataset_root = Path(dataset_root_for(args.dataset, args.dataset_root)).resolve()
        frames = load_frames_for(dataset_root, args.limit, args.crop, args.dataset)
        samples = [f.sample() for f in frames]
    folds = make_folds(samples, args.split, args.folds, args.seed, args.repeats, official)
    error = None
    if dist.is_main:
        try:
            check_kind(args.output_dir, "comparison")
            check_kind(args.report_dir, "comparison")
            folds = claim_folds(args.output_dir, folds, write=not args.report_only)
        except EmoNetError as exc:
            error = exc
    dist.agree(error)
    folds = dist.broadcast(folds)
    if args.approach == "head":
        sources = {s: feature_identity(manifests[s], samples) for s in spaces}
        device = dist.device if dist.device.type == "cuda" else torch.device("cpu")
        comparison = HeadComparison(args.output_dir, folds, args, spaces, common, sources, manifests, device,
                                    progress=not args.no_progress and dist.is_main)
        expected = comparison.expected
    else:
        source = finetune_source(frames, sha256_file(args.pretrained_path), dist.world_size)
        expected = lambda unit: finetune_plan(unit, folds, args, source)[2]  # noqa: E731
    if args.report_only:
        check_finished(args.output_dir, every, expected)
    else:
        if args.approach == "head":
            mine = units[dist.rank :: dist.world_size]  # torchrun: each process its share, none twice
            workers = args.workers or default_workers(dist)
            lines = run_head_units(comparison, mine, workers, progress=not args.no_progress and dist.is_main)
            if corpus is not None:
                predicted = predict_test_corpus(comparison, corpus, mine)
                lines.append(f"{plural(predicted, 'unit')} predicted the {corpus.scored} of {corpus.dataset} "
                             f"({len(corpus.rows):,} frames)" if predicted else
                             f"every unit had predicted {corpus.dataset} already")
            for rank_lines in dist.gather(lines):
                if dist.is_main:
                    print("\n".join(rank_lines))
        else:
            for unit in units:
                done = run_finetune_unit(args.output_dir, unit, frames, source, dataset_root, folds, args, dist)
                if dist.is_main:
                    print(f"{unit.label} {done}")
        dist.barrier()
    if args.only or not dist.is_main:
        return
    report(args, spaces, every, folds, scored_samples(folds, samples), manifests if args.approach == "head" else None,
           common if args.approach == "head" else None, corpus)


def check_dataset_args(args, manifests, common) -> None:
    """What the manifests' dataset allows: heads along time only on videos; under the official protocol (a dataset
    with an official split) no --folds, since the official validation split is the test set."""
    for m in manifests.values():
        for head in args.heads:
            m.check_head(head)
    check_folds(args, common.official, common.dataset)


def check_folds(args, official: bool, dataset: str) -> None:
    """Under the official protocol the official validation split is the test set: --folds is refused."""
    if official and args.folds is not None:
        raise EmoNetError(f"--folds {args.folds}: {dataset} has an official training / validation split, on which "
                          "the comparison trains and scores (no cross-validation); drop --folds")


def adopt_unit_layout(args, found) -> None:
    """--report_only: the heads, repetitions and colour spaces not given are those of the finished units, and a head
    comparison's manifests those the units were made from (each unit records its manifest's path)."""
    if not found:
        raise EmoNetError(f"{args.output_dir}: no finished unit to report on; run the units first")
    if not args.heads_given:
        args.heads = heads_in_order([u.head for u, _ in found])
    if "repeats" not in args.given_layout:
        args.repeats = max(u.repeat for u, _ in found) + 1
    # The units do not record the order the spaces were given in: the known spaces in their usual order, then others.
    labels = {u.space for u, _ in found}
    spaces = [s for s in COLOR_SPACES if s in labels] + sorted(labels - set(COLOR_SPACES))
    if args.approach == "finetune" and "color_spaces" not in args.given_layout:
        args.color_spaces = spaces
    if args.approach == "head" and "manifests" not in args.given_layout:
        sources = {}
        for unit, record in sorted(found, key=lambda pair: spaces.index(pair[0].space)):
            sources.setdefault(unit.space, record.get("source"))
        args.manifests = recorded_manifests(sources, "the manifests the finished units were made from", "--manifests")
    if args.approach == "head" and args.test_manifests is None:
        tested = tested_manifests(args.output_dir, found)
        if len(tested) == 1:
            (dataset, sources), = tested.items()
            args.test_manifests = recorded_manifests(
                sources, f"the {dataset} manifests the units' cross-corpus predictions were made from", "--test_manifests")


def recorded_manifests(sources: dict[str, str | None], what: str, flag: str) -> list[str]:
    """LABEL=PATH of the manifests the units recorded (`what`: which, in words); one no longer there is refused."""
    missing = [s for s, path in sources.items() if not path or not Path(path).is_file()]
    if missing:
        raise EmoNetError(f"--report_only: of {what}, {missing[0]}'s ({sources[missing[0]] or 'not recorded'}) is not "
                          f"there any more; pass {flag} LABEL=PATH for every space")
    values = [f"{s}={path}" for s, path in sources.items()]
    logger.info("--report_only: %s: %s", what, ", ".join(values))
    return values


def tested_manifests(output_dir: Path, found) -> dict[str, dict[str, str | None]]:
    """{test dataset: {space: manifest}} of the cross-corpus predictions the finished units hold."""
    tested: dict[str, dict[str, str | None]] = {}
    for unit, _ in found:
        for record in sorted(unit.folder(output_dir).glob("cross_*.json")):
            tested.setdefault(record.stem.removeprefix("cross_"), {}).setdefault(
                unit.space, json.loads(record.read_text()).get("source"))
    return tested


def check_not_narrower(args, found, spaces, corpus) -> None:
    """Refuse a report of fewer spaces, heads, repetitions or test corpora than the finished units of --output_dir into
    that folder: it would replace the report of the whole (a narrower one goes to another --report_dir)."""
    if args.report_dir.resolve() != args.output_dir.resolve():
        return
    left_out = []
    tested = set(tested_manifests(args.output_dir, found)) - {corpus.dataset if corpus else None}
    if tested:
        left_out.append(f"the cross-corpus predictions of {', '.join(sorted(tested))} (--test_manifests)")
    for name, have, asked in (("colour spaces", {u.space for u, _ in found}, set(spaces)),
                              ("heads", {u.head for u, _ in found}, set(args.heads))):
        if have - asked:
            left_out.append(f"{name} {', '.join(sorted(have - asked))}")
    repeats = max((u.repeat for u, _ in found), default=-1) + 1
    if repeats > args.repeats:
        left_out.append(f"repetitions {args.repeats}..{repeats - 1}")
    if left_out:
        raise EmoNetError(f"{args.output_dir} holds finished units of {'; '.join(left_out)} that this report would leave "
                          f"out, replacing the report of the whole: run it with those included (--report_only alone "
                          "reads them from the units), or pass --report_dir OTHER_FOLDER for a narrower report")


def adopt_unit_settings(args, units) -> None:
    """--report_only: the training flags not given on the command line take the values the units record (a flag
    that is given is then checked against every unit, like any other setting)."""
    fingerprints = {u.head: fp for u in reversed(units) if (fp := read_fingerprint(u.folder(args.output_dir)))}
    if not fingerprints:
        raise EmoNetError(f"{args.output_dir}: no finished unit to report on; run the units first")
    for name in TRAINING_FLAGS[args.approach]:
        if name in args.given_training:
            continue
        # The temporal head's own flag comes from a temporal unit; every other flag from any unit.
        source = fingerprints.get("temporal") if name == "clips_per_batch" else next(iter(fingerprints.values()))
        if source is not None and name in source["training"]:
            setattr(args, name, source["training"][name])


def check_finished(output_dir: Path, units, expected) -> None:
    """--report_only: every unit is finished and was made with the settings this report describes."""
    missing = [u.label for u in units if not (u.folder(output_dir) / UNIT_FILE).is_file()]
    if missing:
        raise EmoNetError(f"{len(missing)} units are not finished ({', '.join(missing[:6])}{', ...' if len(missing) > 6 else ''}); "
                          "run them (--only UNIT, or without --report_only) before the report")
    for unit in units:
        check_same_settings(unit.folder(output_dir), read_fingerprint(unit.folder(output_dir)), expected(unit), "made")


def report(args, spaces, units, folds, samples, manifests, common, corpus) -> None:
    preds, zero = collect_predictions(args.output_dir, units, folds, samples, args.repeats)
    keep = np.logical_and.reduce([p.notna().all(axis=1).to_numpy() for p in preds])  # undecodable frames (finetune)
    if not keep.all():
        print(f"{int((~keep).sum())} frames lack a prediction for some colour space (undecodable) and are left out",
              file=sys.stderr)
    preds = [p[keep].reset_index(drop=True) for p in preds]
    zero = zero[keep].reset_index(drop=True)
    samples = [s for s, k in zip(samples, keep, strict=True) if k]
    groups = group_indices(samples, args.split)
    protocol = _protocol(args, units, samples, common, folds)
    if args.demo:  # the demo's EmoNet has random weights: its zero-shot rows are left out, saying why
        protocol["demo_zero_shot_median"] = float(np.nanmedian(zero[[c for c in zero if c.startswith(tuple(spaces))]]))
        zero = None
    sources = {s: unit_source(next(u for u in units if u.space == s).folder(args.output_dir)) for s in spaces}
    result = build_report(preds, zero, spaces, args.heads, args.reference, groups, protocol,
                          sources if manifests is not None else None)
    cross_preds = None
    if corpus is not None:
        result["cross_corpus"], cross_preds = cross_corpus_report(args, spaces, units, corpus, protocol)
    write_report(args.report_dir, result, preds, zero, cross_preds)
    print(summary(result))
    print(f"report in {args.report_dir}/ (comparison.md: the table; comparison.json: every figure)")


def cross_corpus_report(args, spaces, units, corpus, protocol) -> tuple[dict, list]:
    """The cross-corpus rows: every (space, head) scored on the test corpus, as a report of its own; and the
    predictions they score."""
    preds, zero = collect_test_predictions(args.output_dir, units, corpus, args.repeats)
    groups, group_by = test_groups(corpus.samples, args.split)
    cross = {**protocol, "protocol": CROSS_CORPUS, "trained_on": protocol["dataset"], "dataset": corpus.dataset,
             "scored": corpus.scored, "group_by": group_by, "folds": 1, "frames": len(corpus.rows),
             "clips": len({s["clip"] for s in corpus.samples}),
             "combination": (f"the mean of its {protocol['folds']} fold models" if protocol["protocol"] != OFFICIAL
                             else "that of its one model")}
    for key in ("dropped_frames", "units_folder", "training_groups"):
        cross.pop(key, None)
    return build_report(preds, None if args.demo else zero, spaces, args.heads, args.reference, groups, cross,
                        {s: str(m.path.resolve()) for s, m in corpus.manifests.items()}), preds


def _protocol(args, units, samples, common, folds) -> dict:
    """What the report says was done: the training flags as the units record them, the comparison's own choices."""
    fingerprints = {}
    for unit in units:
        fingerprints.setdefault(unit.head, read_fingerprint(unit.folder(args.output_dir)))
    first = fingerprints[DEFAULT_HEAD]
    training, source = first["training"], first["input"]
    official = folds.get("protocol") == OFFICIAL
    protocol = {"approach": args.approach, "dataset": common.dataset if common else args.dataset,
                "protocol": OFFICIAL if official else "cross-validation", "group_by": args.split,
                "folds": len(folds["folds"]), "seed": args.seed,
                "repeats": args.repeats, "heads": list(args.heads), "bootstrap": args.bootstrap, "reference": args.reference,
                **{k: training[k] for k in ("inner_val_split", "epochs", "batch_size", "learning_rate", "weight_decay",
                                            "optimizer", "loss_function")},
                "frames": len(samples), "clips": len({s["clip"] for s in samples}), "torch_version": torch.__version__,
                "selection": "best mean CCC on an inner validation split of each fold's training units",
                "demo": bool(args.demo)}
    if official:
        protocol["training_groups"] = len(folds["repeats"][0]["train"])
    if args.report_dir.resolve() != args.output_dir.resolve():  # a report beside its units says where they are
        protocol["units_folder"] = str(args.output_dir.resolve())
    if args.approach == "head":
        features = source["features"]
        protocol |= {"dropout": training["dropout"], "crop": features.get("crop"),
                     "pretrained_sha256": features.get("pretrained_sha256"), "precision": features.get("precision"),
                     "common_frames": args.common_frames, "dropped_frames": common.dropped,
                     "clips_per_batch": fingerprints["temporal"]["training"]["clips_per_batch"] if "temporal" in fingerprints else None}
    else:
        protocol |= {"crop": training["crop"], "pretrained_sha256": source["pretrained_sha256"],
                     **{k: training[k] for k in ("freeze_backbone", "augment", "colour_jitter", "grad_clip", "flip_tta",
                                                 "amp", "limit")},
                     "processes": sorted({read_fingerprint(u.folder(args.output_dir))["input"]["processes"] for u in units})}
    return protocol


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser().parse_args()))
