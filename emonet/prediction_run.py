"""A prediction run over one's own videos and images (`run_predictions`, which predict.py and `emonet.predict` run): the
inputs checked before any work, the model loaded, each input predicted (`prediction.Predictor`) or skipped when a
former run finished it, and the run folder's combined outputs written over every input it holds
(`prediction_outputs.py`). An input that cannot be read is named and listed; the others go on.
"""
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from .device import resolve_device
from .errors import EmoNetError, MediaError
from .io import check_writable
from .media import Source, discover
from .prediction import (CHECKPOINT_FRAMES, CHECKPOINT_SECONDS, PredictOptions, Predictor, check_run_folder,
                         load_model)
from .prediction_outputs import (earlier_inputs, finish_input, finished, input_files, remove_input, write_rows,
                                 write_summary)
from .prediction_state import checkpoint_frame
from .settings import PredictConfig
from .text import plural

logger = logging.getLogger(__name__)


@dataclass
class PredictionRun:
    """What a run did: the entry of each of its inputs (predicted now, finished earlier, or its error), the earlier
    inputs its folder keeps, and how many it skipped."""

    output_dir: Path
    entries: list[dict]
    kept: list[dict]
    skipped: int

    @property
    def failed(self) -> list[dict]:
        return [e for e in self.entries if e["error"]]

    def said(self) -> str:
        """The run in one line."""
        failed = len(self.failed)
        predicted = len(self.entries) - failed - self.skipped
        words = [f"{predicted} predicted" if predicted else "", f"{self.skipped} finished earlier" if self.skipped else "",
                 f"{failed} could not be read" if failed else "",
                 f"{plural(len(self.kept), 'earlier input')} kept" if self.kept else ""]
        return (f"{plural(len(self.entries), 'input')}: {', '.join(w for w in words if w)}; predictions.csv, people.csv, "
                f"predictions.json and report.html in {self.output_dir}/"
                + (" (the unread ones listed in predictions.json)" if failed else ""))


def check_inputs(config: PredictConfig, sources: list[Source]) -> None:
    """Refuse, before any work, what cannot work or would be ignored."""
    missing = [str(s.path) for s in sources if not s.path.exists()]
    if missing:
        raise MediaError(f"--inputs: {', '.join(missing)}: not found")
    stills = [s for s in sources if s.kind != "video"]
    if config.sample_fps is not None and stills:
        kind = "a folder of images" if stills[0].kind == "folder" else "an image"
        raise EmoNetError(f"--sample_fps applies to videos; {stills[0].path} is {kind}: predict it in a run of its own")


def run_predictions(config: PredictConfig) -> PredictionRun:
    """Predict every input of `config` into config.output_dir (see the module docstring)."""
    config = config.checked()
    sources = discover(list(config.inputs))
    check_inputs(config, sources)
    check_writable(config.output_dir)
    device = resolve_device(config.device)
    model = load_model(config.model_path, config.pretrained_path, config.crop, config.amp, config.compile, device,
                       config.backend, config.threads)
    options = PredictOptions(config.faces, config.sample_fps, config.batch_size, progress=config.progress)
    record = {"faces": config.faces, "sample_fps": config.sample_fps}
    output_dir = Path(config.output_dir)
    check_run_folder(output_dir, {**model.identity, "options": record}, config.overwrite)
    others = earlier_inputs(output_dir, sources)
    if others:
        names = ", ".join(Path(e["input"]).name for e in others)
        if config.overwrite:
            for entry in others:
                remove_input(output_dir, entry)
            logger.info("--overwrite: removed the results of %s finished earlier in %s/ that this command does not name "
                        "(%s)", plural(len(others), "input"), output_dir, names)
            others = []
        else:
            logger.info("%s/ also holds %s finished earlier that this command does not name (%s): the combined outputs "
                        "keep them (--overwrite removes them)", output_dir, plural(len(others), "input"), names)
    if model.head is not None and model.head.kind == "temporal" and config.sample_fps:
        logger.warning("--sample_fps with a temporal head: it was trained on consecutive frames, and sees a sampled "
                       "sequence with most of its positions empty (see the guide)")
    predictor = Predictor(model, device, options)
    described_run = model.identity | model.notes | {"settings": asdict(config)}  # predictions.json's head
    entries, skipped = [], 0
    for source in sources:
        entry = finished(output_dir, source, config.render)
        if entry is not None:
            logger.info("%s: skipped (finished earlier: %s)", source.path, described(entry))
            entries.append(entry)
            skipped += 1
            continue
        try:
            files = input_files(output_dir, source)
            result = predictor.run(source, files["parts"],
                                   lambda path, rows, source=source: write_rows(path, rows, model, source))
            entry = finish_input(output_dir, source, result, model, config.render)
        except (EmoNetError, OSError) as exc:  # a bad input: named, listed, and the other inputs go on
            logger.error("%s", exc)
            entries.append({"input": str(source.path), "name": source.name, "kind": source.kind, "error": str(exc)})
            continue
        except KeyboardInterrupt:
            write_summary(output_dir, described_run, record, entries + others)
            done = len([e for e in entries + others if not e["error"]])
            raise KeyboardInterrupt(interrupted_at(output_dir, source, done)) from None
        logger.info("%s: %s -> %s/", source.path, described(entry), output_dir)
        entries.append(entry)
    write_summary(output_dir, described_run, record, entries + others)
    return PredictionRun(output_dir, entries, others, skipped)


def described(entry: dict) -> str:
    warned = f" ({'; '.join(entry['warnings'])})" if entry["warnings"] else ""
    return (f"{plural(len(entry['people']), 'person', 'people')} in {plural(entry['analysed_frames'], 'analysed frame')}"
            f"{warned}")


def interrupted_at(output_dir: Path, source: Source, finished_inputs: int) -> str:
    """What is true when Ctrl-C lands during `source`: which inputs are in the combined outputs, and where the same
    command takes up `source` again."""
    held = (f"predictions.csv and predictions.json in {output_dir}/ hold the {plural(finished_inputs, 'input')} finished"
            if finished_inputs else "no input had finished, so there is no predictions.csv yet")
    state = checkpoint_frame(input_files(output_dir, source)["parts"])
    where = (f"continues {source.path.name} from frame {state} (its last checkpoint)" if state is not None else
             f"starts {source.path.name} again (its first checkpoint comes after {CHECKPOINT_FRAMES} analysed frames or "
             f"{CHECKPOINT_SECONDS:.0f} s)")
    return f"{held}; the same command {where} and skips the inputs already finished"
