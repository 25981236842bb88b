"""Does feeding EmoNet another colour space help on AFEW-VA? The answer in one command, cross-validated,
with a statistic of the difference.

    python compare_color_spaces.py --demo          # a first run: no data, no weights, numbers that mean nothing

    python compare_color_spaces.py \\
        --manifests rgb=features_manifest.json hsv=features_hsv_manifest.json lab=features_lab_manifest.json \\
        --folds 5 --split clip --epochs 50 --batch_size 64 --learning_rate 1e-3 --loss_function ccc \\
        --reference rgb --bootstrap 1000 --seed 0 --output_dir color_space_comparison

    python compare_color_spaces.py --approach finetune --dataset_root $AFEW_VA_ROOT \\
        --pretrained_path pretrained/emonet_8.pth --color_spaces rgb hsv lab yuv --folds 5 --freeze_backbone

Protocol (see emonet/comparison.py): the same frames and the same group K-fold folds for every colour space
(folds.json); each fold's model is trained on the other folds, its epoch chosen on an inner validation
split of those training clips, and the held-out fold predicted once. The report (comparison.json, .csv,
.md, .png, oof_predictions.csv) gives per-fold and pooled metrics with clip-bootstrap CIs, and for each
space the CCC difference to --reference with its CI and p-value. The EmoNet zero-shot rows score the
network's own valence/arousal on the same frames.

Units (SPACE:FOLD) are independent: --only SPACE:FOLD runs one (a job-array task), --report_only
aggregates finished ones, and a rerun skips finished units and resumes an interrupted one. Under torchrun,
the head approach shares the units among the processes; the fine-tuning approach trains each unit with all
of them (DistributedDataParallel).
"""
import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from emonet.cli import (add_finetune_arguments, add_frame_arguments, add_optimisation_arguments, check_finetune_args,
                        check_fraction, check_optimisation_args, dataset_root_or_env, run)
from emonet.colour import COLOR_SPACES, DEFAULT_COLOR_SPACE
from emonet.comparison import (APPROACHES, CommonFrames, check_manifests, claim_folds, collect_predictions, load_space,
                               make_folds, parse_manifest_args, parse_only, read_manifests, run_finetune_unit,
                               run_head_unit, unit_fingerprints)
from emonet.comparison_report import build_report, summary, write_report
from emonet.distributed import init_distributed
from emonet.errors import EmoNetError
from emonet.extraction import ExtractionConfig, extract_features
from emonet.features import HEAD_DEFAULTS
from emonet.finetune import FINETUNE_DEFAULTS, load_frames_for
from emonet.io import sha256_file
from emonet.manifest import default_feature_paths
from emonet.splits import sample_key
from emonet.testing import write_demo_dataset

DEFAULTS = {"head": HEAD_DEFAULTS, "finetune": FINETUNE_DEFAULTS}
# Flags that belong to one approach only: given with the other, they are refused, not ignored.
HEAD_ONLY = ("manifests", "common_frames", "dropout")
FINETUNE_ONLY = ("color_spaces", "dataset_root", "pretrained_path", "crop", "n_expression", "freeze_backbone", "augment",
                 "colour_jitter", "grad_clip", "sync_bn", "num_workers", "amp", "limit", "flip_tta")
DEMO_SPACES = ("rgb", "hsv")
DEMO_EPOCHS = 10
DEMO_WARNING = ("DEMO: random (deterministic) weights and a synthetic sample of one face: these numbers mean nothing; "
                "they show what a real comparison writes and how to read it.")


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--approach", choices=APPROACHES, default="head",
                        help="head: a head on extracted features; finetune: EmoNet fine-tuned on frames (default: head)")
    parser.add_argument("--manifests", nargs="+", metavar="SPACE=MANIFEST", default=None,
                        help="head: the feature manifest of each colour space (default: the standard manifest of every "
                             "space found in the working folder: features_manifest.json, features_hsv_manifest.json, ...)")
    parser.add_argument("--common_frames", action="store_true",
                        help="head: keep the frames every manifest has, instead of refusing manifests that differ "
                             "(default: refuse)")
    parser.add_argument("--dropout", type=float, default=0.2, help="head: dropout of the head (default: 0.2)")
    parser.add_argument("--color_spaces", nargs="+", choices=COLOR_SPACES, default=None,
                        help="finetune: the colour spaces to compare (default: rgb hsv lab yuv)")
    add_frame_arguments(parser, one_space=False)
    add_finetune_arguments(parser)
    parser.add_argument("--flip_tta", action="store_true",
                        help="finetune: predict each held-out frame as the mean with its mirror (default: off)")
    add_optimisation_arguments(parser, None, save_freq=0)
    parser.add_argument("--split", choices=("clip", "actor", "frame"), default="clip",
                        help="unit the folds keep whole: clip or actor (frame is refused: it leaks) (default: clip)")
    parser.add_argument("--folds", type=int, default=5, help="K of the group K-fold (default: 5)")
    parser.add_argument("--inner_val_split", type=float, default=0.1,
                        help="fraction of each fold's training clips on which the best epoch is chosen (default: 0.1)")
    parser.add_argument("--reference", default=DEFAULT_COLOR_SPACE,
                        help=f"colour space every other is compared with (default: {DEFAULT_COLOR_SPACE})")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap draws (resampled clips) (default: 1000)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--output_dir", default=None,
                        help="where units and report go (default: color_space_comparison, _demo with --demo)")
    parser.add_argument("--only", metavar="SPACE:FOLD", default=None, help="run this unit only, e.g. hsv:2 (default: all)")
    parser.add_argument("--report_only", action="store_true", help="aggregate finished units; train nothing (default: off)")
    parser.add_argument("--no_progress", action="store_true", help="hide progress bars (default: shown)")
    parser.add_argument("--demo", action="store_true",
                        help="a first run without AFEW-VA or the weights: writes a small sample and deterministic weights "
                             "into <output_dir>/demo_data/, extracts rgb and hsv features, compares them (default: off)")
    parser.add_argument("--demo_clips", type=int, default=36, help="with --demo: clips of the sample (default: 36)")
    parser.add_argument("--demo_frames", type=int, default=3, help="with --demo: frames per clip (default: 3)")
    return parser


def check_args(args, dist) -> None:
    """Refuse, before any work, what cannot work or would be ignored; fill the approach's defaults."""
    given = {name for name in (*HEAD_ONLY, *FINETUNE_ONLY, "demo_clips", "demo_frames")
             if getattr(args, name) != get_args_parser().get_default(name)}
    other = given & set(FINETUNE_ONLY if args.approach == "head" else HEAD_ONLY)
    if other:
        raise EmoNetError(f"--{sorted(other)[0]} does not apply to --approach {args.approach}")
    if args.split == "frame":
        raise EmoNetError("--split frame is refused: neighbouring frames of a clip would sit in training and in the "
                          "held-out fold, and the comparison would measure clip recognition; use clip or actor")
    if args.demo and (args.approach != "head" or args.only or args.report_only or args.manifests or dist.is_distributed):
        raise EmoNetError("--demo is a whole head comparison in one process: drop --approach finetune, --only, "
                          "--report_only, --manifests and torchrun")
    if given & {"demo_clips", "demo_frames"} and not args.demo:
        raise EmoNetError("--demo_clips and --demo_frames go with --demo")
    if args.only and args.report_only:
        raise EmoNetError("--only trains one unit and --report_only trains none: choose one")
    for name, value in DEFAULTS[args.approach].items():
        if getattr(args, name) is None:
            setattr(args, name, DEMO_EPOCHS if args.demo and name == "epochs" else value)
    check_optimisation_args(args)
    check_fraction("--inner_val_split", args.inner_val_split)
    if args.folds < 2:
        raise EmoNetError(f"--folds {args.folds}: K-fold needs K >= 2")
    if args.bootstrap < 100:
        raise EmoNetError(f"--bootstrap {args.bootstrap}: at least 100 draws for a 95 % interval")
    if args.approach == "finetune":
        check_finetune_args(args, dist)
    args.output_dir = Path(args.output_dir or ("color_space_comparison_demo" if args.demo else "color_space_comparison"))


def main(args):
    logging.getLogger("emonet.training").setLevel(logging.WARNING)  # one line per unit, not one per epoch
    dist = init_distributed(args.device)
    try:
        check_args(args, dist)
        if args.demo:
            print(DEMO_WARNING)
            args.manifests = demo_manifests(args)
        compare(args, dist)
        if args.demo:
            print(DEMO_WARNING)
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


def _units(spaces: list[str], args) -> list[tuple[str, int]]:
    every = [(s, k) for s in spaces for k in range(args.folds)]
    return [parse_only(args.only, spaces, args.folds)] if args.only else every


def compare(args, dist) -> None:
    if args.approach == "head":
        paths = parse_manifest_args(args.manifests, Path.cwd(), COLOR_SPACES)
        manifests = read_manifests(paths)
        common = check_manifests(manifests, args.common_frames)
        spaces, samples = list(paths), common.samples
    else:
        spaces = args.color_spaces or ["rgb", "hsv", "lab", "yuv"]
        dataset_root = Path(dataset_root_or_env(args.dataset_root)).resolve()
        frames = load_frames_for(dataset_root, args.limit)
        samples = [f.sample() for f in frames]
    if args.reference not in spaces:
        raise EmoNetError(f"--reference {args.reference} is not among the colour spaces compared ({', '.join(spaces)})")
    folds = make_folds(samples, args.split, args.folds, args.seed)
    units = _units(spaces, args)
    error = None
    if dist.is_main:
        try:
            claim_folds(args.output_dir, folds, write=not args.report_only)
        except EmoNetError as exc:
            error = exc
    dist.agree(error)
    if not args.report_only:
        if args.approach == "head":
            run_head_units(args, dist, units, manifests, common, folds)
        else:
            source = {"dataset_root": str(dataset_root), "pretrained_sha256": sha256_file(args.pretrained_path),
                      "processes": dist.world_size}
            for space, k in units:
                done = run_finetune_unit(args.output_dir, space, k, frames, source, folds, args, dist)
                if dist.is_main:
                    print(f"{space}:{k} {done}")
        dist.barrier()
    if args.only or not dist.is_main:
        return
    model, zero = collect_predictions(args.output_dir, spaces, folds, samples)
    keep = model.notna().all(axis=1).to_numpy()  # frames that could not be decoded for some space (finetune)
    if not keep.all():
        print(f"{int((~keep).sum())} frames lack a prediction for some colour space (undecodable) and are left out",
              file=sys.stderr)
    model, zero, samples = model[keep], zero[keep], [s for s, k in zip(samples, keep, strict=True) if k]
    unit_ids = {u: i for i, u in enumerate(sorted({sample_key(s, args.split) for s in samples}))}
    groups = np.array([unit_ids[sample_key(s, args.split)] for s in samples], dtype=np.int64)
    protocol = _protocol(args, spaces, samples, manifests if args.approach == "head" else None,
                         common if args.approach == "head" else None, dist)
    report = build_report(model.reset_index(drop=True), zero.reset_index(drop=True), spaces, args.reference, groups,
                          protocol, {s: str(paths[s]) for s in spaces} if args.approach == "head" else None)
    write_report(args.output_dir, report, model, zero)
    print(summary(report))
    print(f"report in {args.output_dir}/ (comparison.md: the table; comparison.json: every figure)")


def run_head_units(args, dist, units, manifests, common: CommonFrames, folds) -> None:
    """Train the head units; under torchrun each process takes a contiguous block of them (whole colour spaces
    where possible, so that each loads few feature sets)."""
    mine = [units[i] for i in np.array_split(np.arange(len(units)), dist.world_size)[dist.rank]]
    device = dist.device if dist.device.type == "cuda" else torch.device("cpu")
    loaded = {}
    for space, k in mine:
        if space not in loaded:
            loaded = {space: load_space(space, manifests[space], common, progress=not args.no_progress and dist.is_main)}
        done = run_head_unit(args.output_dir, space, k, loaded[space], manifests[space], folds, args, device)
        if dist.is_main:
            print(f"{space}:{k} {done}")


def _protocol(args, spaces, samples, manifests, common, dist) -> dict:
    keys = ("approach", "split", "folds", "seed", "inner_val_split", "epochs", "batch_size", "learning_rate",
            "weight_decay", "optimizer", "loss_function", "bootstrap", "reference")
    protocol = {k: getattr(args, k) for k in keys}
    protocol["unit"] = protocol.pop("split")
    protocol |= {"frames": len(samples), "clips": len({s["clip"] for s in samples}), "torch_version": torch.__version__,
                 "selection": "best mean CCC on an inner validation split of each fold's training units"}
    if args.approach == "head":
        first = next((m.settings for m in manifests.values() if m.settings), {})
        protocol |= {"dropout": args.dropout, "crop": first.get("crop"), "pretrained_sha256": first.get("pretrained_sha256"),
                     "precision": first.get("precision"), "common_frames": args.common_frames,
                     "dropped_frames": common.dropped,
                     "manifests": {s: {"path": str(manifests[s].path.resolve()), "sha256": sha256_file(manifests[s].path)}
                                   for s in spaces}}
    else:
        protocol |= {"crop": args.crop, "pretrained_sha256": sha256_file(args.pretrained_path),
                     "dataset_root": str(Path(dataset_root_or_env(args.dataset_root)).resolve()),
                     **{k: getattr(args, k) for k in ("freeze_backbone", "augment", "colour_jitter", "grad_clip", "flip_tta",
                                                      "amp", "limit")},
                     "processes": sorted({f["input"]["processes"] for f in unit_fingerprints(args.output_dir, spaces, args.folds)})}
    return protocol


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser().parse_args()))
