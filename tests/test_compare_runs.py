"""A comparison run over its life: one space with several heads, reported again from its units (never narrower, never
from the command's flags), resumed under a new path string, stopped by a bad input or Ctrl-C, holding one colour space
in memory at a time, and its plot."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import compare_color_spaces
from conftest import QUIET_CPU, ROOT, clip_labels, manifest_as_list, run_script, write_spaces
from emonet.comparison_report import plot_report
from emonet.errors import EmoNetError
from emonet.testing import write_feature_set

FOLDS = 2


@pytest.fixture(scope="module")
def spaces(tmp_path_factory):
    return write_spaces(tmp_path_factory.mktemp("spaces"), clip_labels(12), (1.0, 3.0), noise=2.0)


def _compare(folder, out, *extra, manifests=None) -> dict | None:
    """compare_color_spaces.py on the rgb and hsv manifests in `folder` (or `manifests`; [] for none), and the
    comparison.json it left, if any."""
    manifests = manifests if manifests is not None else [f"rgb={folder / 'features_manifest.json'}",
                                                         f"hsv={folder / 'features_hsv_manifest.json'}"]
    run_script(compare_color_spaces, *(["--manifests", *manifests] if manifests else []), "--folds", FOLDS,
               "--bootstrap", "100", "--output_dir", out, *QUIET_CPU, *extra)
    return json.loads((out / "comparison.json").read_text()) if (out / "comparison.json").is_file() else None


# One colour space with several heads is a comparison of heads; with one head it is refused, saying what to add.
def test_one_colour_space_compares_its_heads(spaces, tmp_path, capsys):
    report = _compare(spaces, tmp_path / "rgb_heads", "--epochs", "2", "--heads", "frame", "smooth", "temporal",
                      manifests=[f"rgb={spaces / 'features_manifest.json'}"])
    assert list(report["color_spaces"]) == ["rgb"] and report["protocol"]["reference"] == "rgb"
    heads = report["color_spaces"]["rgb"]["heads"]
    assert set(heads) == {"frame", "smooth", "temporal"} and all(h["vs_reference"] is None for h in heads.values())
    for head in ("smooth", "temporal"):
        diff = heads[head]["vs_frame"]["valence"]
        assert diff["CCC_diff_ci"][0] <= diff["CCC_diff"] <= diff["CCC_diff_ci"][1]
    table = (tmp_path / "rgb_heads" / "comparison.md").read_text()
    assert "ΔCCC vs frame head" in table and "ΔCCC vs rgb" not in table and "there is no other space" in table
    printed = capsys.readouterr().out
    assert "vs frame:" in printed and "vs rgb" not in printed
    fig = plot_report(report, tmp_path / "again.png")
    assert len(fig.axes) == 4  # CCC and head minus frame head, per dimension: no empty difference-to-reference panel
    with pytest.raises(EmoNetError, match=r"needs two colour spaces or more, or one colour space with several heads.*"
                                          r"add another space's manifest.*--heads frame smooth temporal"):
        _compare(spaces, tmp_path / "alone", manifests=[f"rgb={spaces / 'features_manifest.json'}"])
    assert not (tmp_path / "alone").exists()


# --report_only describes what the units record, and refuses flags that contradict them.
def test_report_only_describes_the_units_not_the_command(spaces, tmp_path):
    out = tmp_path / "cmp"
    _compare(spaces, out, "--epochs", "2", "--dropout", "0.3", "--inner_val_split", "0.2")
    written = (out / "comparison.md").read_text()
    (out / "comparison.json").unlink()
    _compare(spaces, out, "--report_only")  # no training flag: the units' are reported
    assert (out / "comparison.md").read_text() == written
    protocol = written.split("## Protocol")[1]
    assert "for 2 epochs (adam, learning rate 0.001, batch 64, ccc loss" in protocol and "dropout 0.3" in protocol
    assert "inner validation split of 0.2" in protocol
    for flags, named in ((["--epochs", "77"], "--epochs 2 -> 77"), (["--learning_rate", "0.5"], "--learning_rate 0.001 -> 0.5"),
                         (["--dropout", "0.7"], "--dropout 0.3 -> 0.7"), (["--batch_size", "8"], "--batch_size 64 -> 8"),
                         (["--loss_function", "mse"], "--loss_function 'ccc' -> 'mse'"),
                         (["--optimizer", "sgd"], "--optimizer 'adam' -> 'sgd'")):
        with pytest.raises(EmoNetError, match=re.escape(named)):
            _compare(spaces, out, "--report_only", *flags)
    # Other features under the same labels (here: another crop): refused, not recorded as the protocol.
    for name in ("features_manifest.json", "features_hsv_manifest.json"):
        manifest = manifest_as_list(spaces / name)
        manifest["settings"]["crop"] = "resize"
        for s in manifest["samples"]:
            s["path"] = str(spaces / s["path"])
        (tmp_path / name).write_text(json.dumps(manifest))
    with pytest.raises(EmoNetError, match=r"made with other settings \(the features' crop 'landmarks' -> 'resize'\)"):
        _compare(spaces, out, "--report_only", manifests=[f"rgb={tmp_path / 'features_manifest.json'}",
                                                          f"hsv={tmp_path / 'features_hsv_manifest.json'}"])
    assert (out / "comparison.md").read_text() == written


# --report_only never narrows a finished report; heads and repetitions come from the units.
def test_report_only_takes_heads_and_repetitions_from_the_units(spaces, tmp_path, monkeypatch, caplog):
    out = tmp_path / "cmp"
    full = _compare(spaces, out, "--epochs", "2", "--heads", "frame", "smooth", "--repeats", "2")
    files = {name: (out / name).read_bytes() for name in ("comparison.json", "comparison.md", "comparison.csv")}
    (out / "comparison.json").unlink()
    # From another folder holding another space's manifest: the units' own manifests are used, and said to be.
    elsewhere = tmp_path / "elsewhere"
    write_feature_set(elsewhere, clip_labels(3), "features_lab_manifest.json", "features_lab", color_space="lab")
    monkeypatch.chdir(elsewhere)
    caplog.set_level("INFO")
    assert _compare(spaces, out, "--report_only", manifests=[]) == full
    assert "the manifests the finished units were made from: rgb=" in caplog.text
    assert (out / "comparison.md").read_bytes() == files["comparison.md"]
    for flags, left_out in ((["--heads", "frame"], "heads smooth"), (["--repeats", "1"], "repetitions 1..1")):
        with pytest.raises(EmoNetError, match=rf"holds finished units of {left_out} that this report would leave out"):
            _compare(spaces, out, "--report_only", *flags)
        assert all((out / name).read_bytes() == data for name, data in files.items())
    with pytest.raises(EmoNetError, match="holds finished units of heads smooth"):  # a training run too
        _compare(spaces, out, "--heads", "frame")
    # Asked for into another folder, a narrower report is written there, and says where its units are.
    _compare(spaces, out, "--report_only", "--heads", "frame", "--repeats", "1", "--report_dir", str(tmp_path / "narrow"))
    narrow = json.loads((tmp_path / "narrow" / "comparison.json").read_text())
    assert narrow["protocol"]["heads"] == ["frame"] and narrow["protocol"]["repeats"] == 1
    assert narrow["protocol"]["units_folder"] == str(out.resolve())
    assert all((out / name).read_bytes() == data for name, data in files.items())


# A changed path string with the same content keeps finished units; a real change is named in words.
def test_units_survive_a_new_path_string_and_refusals_say_what_changed(spaces, tmp_path, capsys):
    out = tmp_path / "cmp"
    _compare(spaces, out, "--epochs", "1")
    copy = tmp_path / "copy"
    for name in ("features_manifest.json", "features_hsv_manifest.json"):
        manifest = manifest_as_list(spaces / name)
        manifest["settings"]["pretrained_path"] = "./pretrained/../pretrained/emonet_8.pth"  # same sha, other string
        for s in manifest["samples"]:
            s["path"] = str(spaces / s["path"])
        copy.mkdir(exist_ok=True)
        (copy / name).write_text(json.dumps(manifest))
    capsys.readouterr()
    _compare(spaces, out, "--epochs", "1", manifests=[f"rgb={copy / 'features_manifest.json'}",
                                                      f"hsv={copy / 'features_hsv_manifest.json'}"])
    assert capsys.readouterr().out.count("skipped (finished)") == 4
    manifest = manifest_as_list(copy / "features_hsv_manifest.json")
    manifest["samples"][0]["valence"] = manifest["samples"][0]["valence"] + 1
    (copy / "features_hsv_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(EmoNetError, match=r"carry other labels"):
        _compare(spaces, out, "--epochs", "1", manifests=[f"rgb={copy / 'features_manifest.json'}",
                                                          f"hsv={copy / 'features_hsv_manifest.json'}"])


# Every input is read before the first unit trains, and the message says how to repair it.
def test_a_truncated_feature_file_stops_the_comparison_before_any_unit(spaces, tmp_path):
    folder = tmp_path / "inputs"
    labels = clip_labels(12)
    write_spaces(folder, labels)
    victim = sorted((folder / "features_hsv").glob("*/*.npz"))[-1]
    victim.write_bytes(victim.read_bytes()[:100])
    with pytest.raises(EmoNetError, match=rf"{victim.name}: unreadable feature file.*Rerunning the extraction command"):
        _compare(folder, tmp_path / "cmp", "--epochs", "1")
    assert not (tmp_path / "cmp" / "rgb").exists()  # nothing trained on the other space first


def test_the_comparison_holds_one_colour_space_in_memory_at_a_time(spaces, tmp_path, monkeypatch):
    from emonet import comparison_heads

    loaded, held = [], []
    load, use = comparison_heads.load_space, comparison_heads.HeadComparison.use

    def loading(path, common, space, progress):
        loaded.append(space)
        return load(path, common, space, progress)

    def using(self, space):
        use(self, space)
        held.append(sorted(self.datasets))

    monkeypatch.setattr(comparison_heads, "load_space", loading)
    monkeypatch.setattr(comparison_heads.HeadComparison, "use", using)
    _compare(spaces, tmp_path / "cmp", "--epochs", "1", "--workers", "1")
    assert loaded == ["rgb", "hsv"] and held and all(len(h) == 1 for h in held)  # one space at a time, each once


# Workers are forked to share the features, and PyTorch's autograd does not survive fork once the process has run
# torch.compile and then a backward pass: a notebook that did both gets its comparison trained in the process itself,
# said once, instead of PyTorch's RuntimeError from every worker.
def test_workers_that_cannot_be_forked_leave_the_training_to_the_process(spaces, tmp_path):
    notebook = f"""
import logging, torch, emonet
logging.basicConfig(level=logging.WARNING)
from torch._inductor import config
config.freezing = True
with torch.inference_mode():
    torch.compile(torch.nn.Linear(3, 2).eval())(torch.zeros(1, 3))   # as extraction --compile does
torch.nn.Linear(3, 2)(torch.zeros(1, 3)).sum().backward()            # then a head trained
report = emonet.compare({{"rgb": "{spaces / 'features_manifest.json'}", "hsv": "{spaces / 'features_hsv_manifest.json'}"}},
                        output_dir="{tmp_path / 'cmp'}", folds={FOLDS}, epochs=1, bootstrap=100, workers=2, device="cpu")
print(report["protocol"]["folds"])
"""
    result = subprocess.run([sys.executable, "-c", notebook], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(FOLDS)]
    assert "cannot train (this one has run torch.compile and a backward pass" in result.stderr


# Ctrl-C in the comparison: "stopping" at once, the units in flight ended within seconds, finished units kept; a
# second Ctrl-C while they end aborts at once; no worker is left behind.
@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_stops_the_comparison_within_seconds(spaces, tmp_path, presses):
    out = tmp_path / f"cmp{presses}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(ROOT / "compare_color_spaces.py"), "--manifests", f"rgb={spaces / 'features_manifest.json'}",
           f"hsv={spaces / 'features_hsv_manifest.json'}", "--folds", "2", "--epochs", "5000", "--workers", "2", "--output_dir", str(out), "--no_progress", "--device", "cpu"]
    # Its own process group, as a terminal's job is: Ctrl-C reaches the command and its workers alike.
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    deadline = time.monotonic() + 120
    while not list(out.rglob("last.pth")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()[1]
    finished = {p: p.stat().st_mtime_ns for p in out.rglob("unit.json")}
    start = time.monotonic()
    for _ in range(presses):
        os.killpg(process.pid, signal.SIGINT)
        time.sleep(0.05)
    _, err = process.communicate(timeout=60)
    assert time.monotonic() - start < 15, err
    # 130: the command's own exit; a second press may also end it by the signal itself (-2), as an abort does.
    assert process.returncode in ((130,) if presses == 1 else (130, -signal.SIGINT)), err
    assert "stopping: ending the units in flight" in err, err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("unit.json")} == finished  # nothing finished is lost
    time.sleep(0.5)
    left = [p for p in Path("/proc").glob("[0-9]*") if _cmdline(p).count(str(out)) and p.name != str(os.getpid())]
    assert not left, "workers left running"


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


# The demo's plot: titles apart, the legend inside the figure (see also the demo test in test_compare.py).
def test_the_comparison_plot_keeps_titles_and_legend_inside(spaces, tmp_path):
    report = _compare(spaces, tmp_path / "cmp", "--epochs", "2")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = plot_report(report, tmp_path / "plot.png")
    renderer = FigureCanvasAgg(fig).get_renderer()
    page = fig.bbox
    titles = [ax.title.get_window_extent(renderer) for ax in fig.axes]
    for i, a in enumerate(titles):
        assert page.x0 <= a.x0 and a.x1 <= page.x1, "a title runs off the figure"
        assert not any(a.overlaps(b) for b in titles[i + 1:]), "two titles overlap"
    legend = fig.legends[0].get_window_extent(renderer)
    assert page.x0 <= legend.x0 and legend.x1 <= page.x1 and page.y0 <= legend.y0
