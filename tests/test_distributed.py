"""torchrun on the CPU (gloo, 2 processes, through `python -m torch.distributed.run --standalone`): sharded
extraction, DistributedDataParallel fine-tuning and its resume, and the fine-tuning comparison's units.

Each process of a torchrun job runs one intra-op thread (torchrun sets OMP_NUM_THREADS=1), so the
one-process references here run on one thread too: then results agree bit for bit."""
import json
import re
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import compare_color_spaces
import evaluate_hsv_model
import extract_features_hsv_crop
from conftest import ROOT, clip_labels, fixture_labels, write_spaces
from emonet.afew_va import read_afew_va
from emonet.distributed import shard_clips, shard_positions
from emonet.feature_store import FRAME_KEYS, frame_arrays
from emonet.head_training import intra_op_threads
from emonet.manifest import read_manifest
from emonet.model import EMOTION_MODULES
from emonet.testing import deterministic_state_dict, write_afew_va_tree


def torchrun(script, *argv, cwd):
    """Run `script` under torchrun with 2 CPU processes; returns (stdout, stderr), asserting success."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(ROOT / script),
           *map(str, argv), "--no_progress", "--device", "cpu"]
    result = subprocess.run(cmd, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout, result.stderr


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory):
    """4 clips x 2 frames of the fixture's first clips: the smallest tree on which 2 folds train something."""
    labels = {c: {k: v[:2] for k, v in lab.items()} for c, lab in list(fixture_labels().items())[:4]}
    return write_afew_va_tree(tmp_path_factory.mktemp("small") / "AFEW-VA", labels, 2)


def test_shards_are_disjoint_whole_and_balanced():
    clips, sizes = [f"{c:03d}" for c in range(10)], [10, 80, 30, 30, 20, 145, 12, 60, 44, 90]
    shards = [shard_clips(clips, sizes, r, 3) for r in range(3)]
    assert set().union(*shards) == set(clips) and sum(map(len, shards)) == len(clips)
    loads = [sum(s for c, s in zip(clips, sizes, strict=True) if c in shard) for shard in shards]
    assert max(loads) - min(loads) <= max(sizes) // 2
    positions = [shard_positions(11, r, 3) for r in range(3)]
    assert sorted(p for shard in positions for p in shard) == list(range(11))


def test_extraction_under_torchrun_equals_one_process(afew_tree, released_checkpoint, tmp_path, monkeypatch):
    argv = ["--dataset_root", afew_tree, "--pretrained_path", released_checkpoint, "--limit", "3", "--num_workers", "0"]
    out, err = torchrun("extract_features_hsv_crop.py", *argv, cwd=tmp_path)
    frames, _ = read_afew_va(afew_tree, limit=3)  # 3 clips: one process gets 2 of them, the other 1
    assert out.strip().splitlines() == [  # one summary line, every frame counted once
        f"extracted {len(frames)} of {len(frames)} (0 could not be decoded), skipped 0 (already done), 0 problems in the "
        "dataset; manifest: features_hsv_manifest.json; "
        "errors: features_hsv/extraction_errors.json"]
    assert err.count(" to extract, ") == 1  # rank 1 logs nothing but errors
    manifest = read_manifest(tmp_path / "features_hsv_manifest.json")
    assert [(s["clip"], s["frame"]) for s in manifest.samples] == [(f.clip, f.frame) for f in frames]
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["features_hsv_manifest.json"]  # one manifest

    single = tmp_path / "single"
    single.mkdir()
    monkeypatch.chdir(single)
    with intra_op_threads(1):
        extract_features_hsv_crop.main(extract_features_hsv_crop.get_args_parser().parse_args(
            [*map(str, argv), "--no_progress", "--device", "cpu"]))
    for sample in manifest.samples:
        a, b = frame_arrays(manifest.resolve(sample), sample["frame"]), frame_arrays(single / sample["path"], sample["frame"])
        for key in FRAME_KEYS:
            assert np.array_equal(a[key], b[key]), (sample["path"], key)
    # A rerun with one process resumes the folder the two processes wrote: nothing left to do.
    monkeypatch.chdir(tmp_path)
    assert extract_features_hsv_crop.main(extract_features_hsv_crop.get_args_parser().parse_args(
        [*map(str, argv), "--no_progress", "--device", "cpu"])) == 0
    assert read_manifest(tmp_path / "features_hsv_manifest.json").samples == manifest.samples


def test_ddp_fine_tuning_resumes_keeps_the_backbone_and_validates_every_frame_once(small_tree, released_checkpoint,
                                                                                  tmp_path):
    # 2 clips train (a batch of one clip's equal labels has no CCC gradient: over 2 epochs some batch mixes
    # them), 2 clips validate (so that their CCC is not degenerate). Each process: one batch of 2 an epoch.
    argv = ["--dataset_root", small_tree, "--pretrained_path", released_checkpoint, "--batch_size", "2",
            "--val_split", "0.5", "--freeze_backbone", "--num_workers", "0", "--output_dir", "run"]
    out, err = torchrun("train_emonet_hsv.py", *argv, "--epochs", "1", cwd=tmp_path)
    assert re.findall(r"epoch (\d+/\d+) ", err) == ["1/1"]
    assert out.count("global batch 4") == 1  # printed once, by rank 0
    out, err = torchrun("train_emonet_hsv.py", *argv, "--epochs", "2", "--resume", "run/last.pth", cwd=tmp_path)
    assert re.findall(r"epoch (\d+/\d+) ", err) == ["2/2"]
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == ["args.json", "best_model.pth", "last.pth", "split.json",
                                                     "training_curves.png", "training_log.csv", "training_log.txt"]
    ckpt = torch.load(run / "last.pth", weights_only=True)
    assert ckpt["epoch"] == 2 and len(ckpt["history"]) == 2 and ckpt["world_size"] == 2 and ckpt["global_batch_size"] == 4
    assert not any(k.startswith("module.") for k in ckpt["model"])  # plain state dict
    loaded = deterministic_state_dict(8)
    for name, tensor in loaded.items():
        if name.split(".")[0] not in EMOTION_MODULES:
            assert torch.equal(ckpt["model"][name], tensor) or name.endswith("num_batches_tracked"), name
    assert not torch.equal(ckpt["model"]["emo_fc_2.3.weight"], loaded["emo_fc_2.3.weight"])
    # Validation was sharded and gathered: one process scoring the same checkpoint gets the same metrics.
    with intra_op_threads(1):
        evaluate_hsv_model.main(evaluate_hsv_model.get_args_parser().parse_args(
            ["--model_type", "full", "--model_path", str(run / "last.pth"), "--output_dir", str(tmp_path / "eval"),
             "--num_workers", "0", "--no_progress", "--device", "cpu", "--backend", "torch"]))  # training's arithmetic
    results = json.loads((tmp_path / "eval" / "evaluation_results.json").read_text())
    assert results["num_samples"] == 2 * len(ckpt["split"]["val"])  # every validation frame (2 a clip), once
    for dim in ("valence", "arousal"):  # to float rounding: training scores [-1, 1], evaluation the raw scale x 10
        assert ckpt["history"][-1][f"val_{dim}_CCC"] == pytest.approx(results[f"{dim}_metrics"]["CCC"], rel=1e-5)


def _finetune_compare(tree, checkpoint, out, *extra):
    argv = ["--approach", "finetune", "--dataset_root", str(tree), "--pretrained_path", str(checkpoint),
            "--color_spaces", "rgb", "hsv", "--folds", "2", "--epochs", "1", "--batch_size", "2", "--freeze_backbone",
            "--num_workers", "0", "--bootstrap", "100", "--output_dir", str(out), "--no_progress", "--device", "cpu", *extra]
    compare_color_spaces.main(compare_color_spaces.get_args_parser().parse_args(argv))
    return json.loads((out / "comparison.json").read_text()) if (out / "comparison.json").exists() else None


def test_finetune_comparison_units_equal_one_full_run(small_tree, released_checkpoint, tmp_path):
    full = _finetune_compare(small_tree, released_checkpoint, tmp_path / "full")
    assert full["protocol"]["approach"] == "finetune" and full["protocol"]["frames"] == 8
    assert all(full["color_spaces"][s]["zero_shot"] is not None for s in ("rgb", "hsv"))
    assert "fine-tuned EmoNet" in (tmp_path / "full" / "comparison.md").read_text()
    # The same comparison from units run one by one: hsv:1 computed anew, the others as the full run left them.
    units = tmp_path / "units"
    shutil.copytree(tmp_path / "full", units, ignore=shutil.ignore_patterns("comparison*", "oof_predictions.csv",
                                                                              "zero_shot_predictions.csv"))
    shutil.rmtree(units / "hsv" / "fold_1")
    assert _finetune_compare(small_tree, released_checkpoint, units, "--only", "hsv:1") is None
    assert _finetune_compare(small_tree, released_checkpoint, units, "--report_only") == full


def test_a_finetune_unit_runs_under_torchrun(afew_tree, released_checkpoint, tmp_path):
    out, _ = torchrun("compare_color_spaces.py", "--approach", "finetune", "--dataset_root", afew_tree, "--limit", "4",
                      "--pretrained_path", released_checkpoint, "--color_spaces", "rgb", "hsv", "--folds", "2",
                      "--epochs", "1", "--batch_size", "2", "--freeze_backbone", "--num_workers", "0",
                      "--output_dir", "cmp", "--only", "rgb:0", cwd=tmp_path)
    assert out.count("rgb:0 trained") == 1 and not (tmp_path / "cmp" / "comparison.json").exists()
    unit = json.loads((tmp_path / "cmp" / "rgb" / "fold_0" / "unit.json").read_text())
    assert unit["fingerprint"]["input"]["processes"] == 2 and unit["frames"] == 8
    ckpt = torch.load(tmp_path / "cmp" / "rgb" / "fold_0" / "last.pth", weights_only=True)
    assert ckpt["world_size"] == 2 and ckpt["split"]["inner_val"] and ckpt["split"]["val"]


def test_evaluation_on_frames_under_torchrun_equals_one_process(small_tree, released_checkpoint, tmp_path):
    tree = tmp_path / "AFEW-VA"
    shutil.copytree(small_tree, tree)
    (tree / "002" / "00001.png").write_bytes(b"corrupt")  # one process's shard: left out and listed by both runs
    argv = ["--model_type", "pretrained", "--pretrained_path", released_checkpoint, "--dataset_root", tree,
            "--subset", "all", "--num_workers", "0", "--no_progress", "--device", "cpu"]
    torchrun("evaluate_hsv_model.py", *argv, "--output_dir", "two", cwd=tmp_path)
    with intra_op_threads(1):
        evaluate_hsv_model.main(evaluate_hsv_model.get_args_parser().parse_args(
            [*map(str, argv), "--output_dir", str(tmp_path / "one")]))
    two, one = (json.loads((tmp_path / name / "evaluation_results.json").read_text()) for name in ("two", "one"))
    for results in (two, one):  # the one setting that differs: where each run wrote
        assert Path(results["settings"].pop("output_dir")).name in ("two", "one")
    assert [e["path"] for e in two["excluded_frames"]] == [str(tree / "002" / "00001.png")]
    assert two["num_samples"] == 7 and np.isfinite(two["valence_metrics"]["CCC"])
    assert two == one  # every frame predicted once, by one process, gathered in order
    assert (tmp_path / "two" / "predictions.csv").read_text() == (tmp_path / "one" / "predictions.csv").read_text()


def test_head_units_with_repetitions_are_shared_under_torchrun(tmp_path):
    folder = write_spaces(tmp_path, clip_labels(12), (0.5, 4.0))
    argv = ["--manifests", f"rgb={folder / 'features_manifest.json'}", f"hsv={folder / 'features_hsv_manifest.json'}",
            "--heads", "frame", "smooth", "--repeats", "2", "--folds", "2", "--epochs", "2", "--bootstrap", "100"]
    out, _ = torchrun("compare_color_spaces.py", *argv, "--output_dir", "two", cwd=tmp_path)
    assert sum(" trained: " in line for line in out.splitlines()) == 2 * 2 * 2 * 2  # every unit once, printed by rank 0
    compare_color_spaces.main(compare_color_spaces.get_args_parser().parse_args(
        [*argv, "--output_dir", str(tmp_path / "one"), "--no_progress", "--device", "cpu"]))
    two, one = (json.loads((tmp_path / name / "comparison.json").read_text()) for name in ("two", "one"))
    assert two == one
