"""What every script shares: no flag taken for another, impossible combinations refused before work, help that keeps
its line breaks and appears without loading torch, outputs that git ignores, a README whose set-up can be followed."""
import importlib
import re
import shutil
import subprocess
import sys

import pytest

import train_emonet_features
from conftest import ROOT
from emonet.cli import run

COMMANDS = sorted(p.stem for p in ROOT.glob("*.py"))
SCRIPTS = COMMANDS + sorted(f"benchmarks.{p.stem}" for p in (ROOT / "benchmarks").glob("bench_*.py"))


# A flag is never taken for another: no script accepts a shortened or misspelt flag.
@pytest.mark.parametrize("name", SCRIPTS)
def test_no_script_takes_a_flag_for_another(name):
    parser = importlib.import_module(name).get_args_parser()
    required = [arg for action in parser._actions if action.required for arg in (action.option_strings[0], "x")]
    for action in parser._actions:
        for flag in action.option_strings:
            prefix = flag[:-1]
            if not flag.startswith("--") or len(prefix) < 4 or prefix in parser._option_string_actions:
                continue
            _, unknown = parser.parse_known_args([prefix, "1", *required])
            assert prefix in unknown, f"{name}: {prefix} was taken for {flag}"


# Impossible or ignored flag combinations are refused before any work (the manifest does not even exist).
@pytest.mark.parametrize("flags, message", [
    (["--fold", "2"], "--fold 2 needs --folds K"),
    (["--folds", "5", "--fold", "1", "--val_split", "0.3"], "--val_split does not apply with --folds"),
    (["--folds", "5"], "--folds 5 needs --fold i"),
    (["--folds", "5", "--fold", "5"], "--fold 5: must be in 0..4"),
    (["--epochs", "0"], "--epochs 0: at least 1"),
    (["--val_split", "1.5"], "--val_split 1.5: must be a fraction"),
    (["--inner_val_split", "0"], "--inner_val_split 0.0: must be a fraction"),
    (["--resume", "x.pth", "--overwrite"], "choose one"),
])
def test_flag_combinations_are_refused_before_work(tmp_path, caplog, flags, message):
    args = train_emonet_features.get_args_parser().parse_args(
        ["--manifest_file", str(tmp_path / "absent.json"), "--output_dir", str(tmp_path / "out"), *flags])
    assert run(train_emonet_features.main, args) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and message in errors[0] and "absent.json" not in errors[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_examples_keep_their_line_breaks(name):
    description = importlib.import_module(name).get_args_parser().description
    assert not re.search(r"\S {4,}--", description), "a line continuation was read as spaces"


# --help answers at once: a command's parser needs no torch, so reading the flags never waits seconds for it.
def test_help_loads_no_torch():
    probe = ("import runpy, sys\n"
             "for path in sys.argv[1:]:\n"
             "    sys.argv = [path, '--help']\n"
             "    try:\n"
             "        runpy.run_path(path, run_name='__main__')\n"
             "    except SystemExit:\n"
             "        pass\n"
             "    assert 'torch' not in sys.modules, path + ' --help imported torch'\n")
    result = subprocess.run([sys.executable, "-c", probe, *(str(ROOT / f"{c}.py") for c in COMMANDS)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("usage:") == len(COMMANDS)


# What the documented commands write is ignored by git.
def test_gitignore_covers_the_documented_outputs():
    paths = ["features_hsv_manifest.json", "features_manifest.json", "features_lab_manifest.json",
             "afew_va_problems.json", "evaluation_results/evaluation_results.json", "data/AFEW-VA/001/001.json",
             "hsv_features_training/last.pth", "rgb_full_training/last.pth", "hsv_evaluation_results/x.csv",
             "hsv_full_evaluation/x.png", "features_hsv/001/00000.npz", "features/001/00000.npz",
             "pretrained/emonet_8.pth", "color_space_comparison/comparison.json",
             "hsv_temporal_features_training/last.pth", "predictions/predictions.csv", "predictions_hsv/x.mp4"]
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a checkout")
    result = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=ROOT, capture_output=True, text=True)
    assert sorted(result.stdout.split()) == sorted(paths)


# The README says how to use the environment it sets up.
def test_readme_activates_the_environment_after_set_up():
    readme = (ROOT / "README.md").read_text()
    setup = readme.index("pip install -r requirements_training.txt")
    assert setup < readme.index("source .venv/bin/activate") < readme.index("python compare_color_spaces.py --demo")
