"""EmoNet on the CPU through ONNX Runtime: the network exported once from its loaded weights, cached, and run by an
inference engine instead of PyTorch's eager mode.

Why ONNX Runtime (measured side by side with benchmarks/bench_extract.py, batch 1, two threads, README_HSV_PIPELINE.md
"Benchmarks"): in float32 it was the fastest of the two engines on both CPUs measured (on an AMD EPYC with AVX-512,
about 1.2x PyTorch eager; on one with AVX2 only, 2.3-2.9x in figures measured there, where OpenVINO was 2.1-2.6x), its
post-training int8 quantisation ships in the same package, and its wheel is 78 MB against OpenVINO's 180 MB. Its
float32 outputs equal PyTorch's to float rounding (about 5e-7 of the largest value, tests/test_engine.py), so its
features are the same features ("fp32"); int8 features are another feature set ("int8").

The cache: `<cache>/<checkpoint sha256>/<variant>.onnx` beside a JSON record of what made it (checkpoint, torch and
ONNX Runtime versions, input size, expression classes, the file's own sha256). A record that differs from what is
asked for, or a file whose hash does not match its record (truncated, edited), is exported again, never trusted. The
cache is $EMONET_CACHE, else $XDG_CACHE_HOME/emonet, else ~/.cache/emonet; a run that cannot write there says so.

PyTorch stays the path on CUDA, for training and fine-tuning, for bf16 (`--amp`) and `--compile`, and for
`--backend torch`.
"""
import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .constants import BACKENDS, IMAGE_SIZE
from .errors import EmoNetError
from .io import atomic_path, sha256_file, write_json
from .model import EmoNet

logger = logging.getLogger(__name__)

ENGINE = "onnxruntime"
CACHE_ENV = "EMONET_CACHE"
# The outputs of the exported graph, in order (`infer` takes any subset).
OUTPUTS = ("features", "valence", "arousal", "expression", "heatmap")
INPUT = "image"
# ONNX operator set of the export (ONNX Runtime 1.32 runs up to 23; 17 is what the exporter knows best).
OPSET = 17
# int8 features are recorded as precision INT8_PREFIX + the calibration's id (another calibration, other features).
INT8_PREFIX = "int8-"


def engine_version() -> str:
    try:
        return importlib.metadata.version(ENGINE)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


@dataclass(frozen=True)
class EngineChoice:
    """How EmoNet runs: `backend` (torch or onnxruntime), its `threads`, and int8 (ONNX Runtime only)."""

    backend: str
    threads: int
    int8: bool = False

    def record(self) -> dict:
        """What outputs record: the backend, its version and threads."""
        version = torch.__version__ if self.backend == "torch" else engine_version()
        return {"name": self.backend, "version": version, "threads": self.threads, "int8": self.int8}


def choose_backend(backend: str, device: torch.device, amp: bool, compile_: bool, int8: bool,
                   threads: int | None) -> EngineChoice:
    """The backend `--backend` asks for on `device`: auto takes ONNX Runtime on the CPU and torch on CUDA, and torch
    where a PyTorch feature is asked for (bf16 autocast, torch.compile). A combination that cannot work is refused."""
    if backend not in BACKENDS:
        raise EmoNetError(f"--backend {backend}: choose one of {', '.join(BACKENDS)}")
    if threads is not None and threads < 1:
        raise EmoNetError(f"--threads {threads}: at least 1")
    torch_only = [flag for flag, on in (("--amp", amp), ("--compile", compile_)) if on]
    if backend == "onnxruntime":
        if device.type != "cpu":
            raise EmoNetError(f"--backend onnxruntime runs on the CPU; on {device} EmoNet runs through PyTorch "
                              "(--backend torch or auto)")
        if torch_only:
            raise EmoNetError(f"{torch_only[0]} is PyTorch's (bf16 autocast, torch.compile): use --backend torch or auto")
    if int8 and (device.type != "cpu" or backend == "torch" or torch_only):
        raise EmoNetError("int8 runs through ONNX Runtime on the CPU: use --backend auto or onnxruntime, without --amp "
                          "and --compile, on the CPU")
    chosen = backend if backend != "auto" else ("torch" if device.type != "cpu" or torch_only else ENGINE)
    if chosen == ENGINE and engine_version() == "not installed":
        raise EmoNetError(f"--backend {backend}: {ENGINE} is not installed; run the README's set-up command, or pass "
                          "--backend torch")
    return EngineChoice(chosen, threads or torch.get_num_threads(), int8)


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "emonet"


class _Outputs(torch.nn.Module):
    """EmoNet with its outputs as a tuple in OUTPUTS' order (the exporter takes tuples)."""

    def __init__(self, network: EmoNet):
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.network(x)
        return tuple(out[k] for k in OUTPUTS)


def export(network: EmoNet, path: Path) -> None:
    """`network` (eval mode, on the CPU) as ONNX at `path`, for batches of any size."""
    blank = torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        # The TorchScript exporter is the one torch 2.14 runs without onnxscript (a further dependency); its
        # deprecation notices say nothing a user can act on.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(_Outputs(network).eval(), (blank,), str(tmp), dynamo=False, input_names=[INPUT],
                          output_names=list(OUTPUTS), dynamic_axes={INPUT: {0: "batch"}}, opset_version=OPSET)


def quantize(fp32: Path, path: Path, calibration: Callable[[], Iterator[np.ndarray]]) -> None:
    """Post-training static int8 quantisation of `fp32` (QDQ, int8 weights per output channel, uint8 activations
    calibrated on the batches of model input `calibration()` yields: N x 3 x 256 x 256 float32 in [0, 1])."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = calibration()

        def get_next(self) -> dict | None:
            batch = next(self.batches, None)
            return None if batch is None else {INPUT: np.ascontiguousarray(batch, dtype=np.float32)}

    root = logging.getLogger()
    level = root.level
    # The quantiser logs a line on the root logger for every one-dimensional weight it leaves per tensor (about 300
    # BatchNorm weights of EmoNet): nothing a user can act on.
    root.setLevel(logging.ERROR)
    try:
        with atomic_path(path) as tmp, atomic_path(path.with_suffix(".pre.onnx")) as pre:
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            quantize_static(str(pre), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)


class OnnxEmoNet:
    """EmoNet run by ONNX Runtime, called as the torch network is (`inference.infer`): a batch in, a dict of float32
    tensors out."""

    def __init__(self, path: Path, n_expression: int, threads: int, precision: str):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Threads that spin while waiting for work take the cores of whatever else runs: measured with two processes
        # on two cores (benchmarks/bench_extract.py), spinning slowed both; alone it gains about 3 %.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.n_expression, self.precision, self.path = n_expression, precision, path

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        arrays = self.session.run(None, {INPUT: np.ascontiguousarray(images.float().numpy())})
        return {k: torch.from_numpy(v) for k, v in zip(OUTPUTS, arrays, strict=True)}


def _record(checkpoint_sha256: str, network: EmoNet, variant: str, extra: dict) -> dict:
    return {"checkpoint_sha256": checkpoint_sha256, "variant": variant, "torch": torch.__version__,
            "onnxruntime": engine_version(), "opset": OPSET, "image_size": IMAGE_SIZE,
            "n_expression": network.n_expression, **extra}


def _intact(path: Path) -> dict | None:
    """The record beside the engine file `path` when both are there and the file's hash is the recorded one."""
    meta = path.with_suffix(".json")
    if path.is_file() and meta.is_file():
        with contextlib.suppress(OSError, ValueError):
            saved = json.loads(meta.read_text())
            if saved.get("file_sha256") == sha256_file(path):
                return saved
    return None


def _cached(path: Path, record: dict) -> bool:
    """Whether `path` holds what `record` describes, intact."""
    saved = _intact(path)
    if saved is not None and {k: saved.get(k) for k in record} == record:
        return True
    if path.is_file() and path.with_suffix(".json").is_file():
        logger.warning("%s: the cached engine file is stale or damaged; exporting it again", path)
    return False


def _store(path: Path, record: dict, make: Callable[[Path], None]) -> None:
    make(path)
    write_json(path.with_suffix(".json"), record | {"file_sha256": sha256_file(path)})


def load_engine(network: EmoNet, checkpoint_sha256: str, choice: EngineChoice,
                calibration: Callable[[], Iterator[np.ndarray]] | None = None, calibration_id: str | None = None
                ) -> OnnxEmoNet:
    """`network`'s ONNX Runtime engine: fp32, or int8 calibrated on `calibration()` (identified by `calibration_id`,
    a hash of the frames: another calibration is another engine), exported or quantised once and cached."""
    folder = cache_dir() / checkpoint_sha256
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmoNetError(f"the engine cache {folder} cannot be written ({exc.strerror}); set ${CACHE_ENV} to a "
                          "writable folder, or pass --backend torch") from None
    fp32 = folder / "fp32.onnx"
    record = _record(checkpoint_sha256, network, "fp32", {})
    if not _cached(fp32, record):
        logger.info("exporting EmoNet to ONNX (once per checkpoint; %s)", fp32)
        _store(fp32, record, lambda path: export(network.cpu().eval(), path))
    if not choice.int8:
        return OnnxEmoNet(fp32, network.n_expression, choice.threads, "fp32")
    if calibration is None or calibration_id is None:
        raise EmoNetError("int8 needs calibration frames")
    path = int8_path(checkpoint_sha256, calibration_id)
    record = _record(checkpoint_sha256, network, "int8", {"calibration": calibration_id, "fp32_sha256": sha256_file(fp32)})
    if not _cached(path, record):
        logger.info("quantising EmoNet to int8 on the calibration frames (once per calibration; %s)", path)
        _store(path, record, lambda target: quantize(fp32, target, calibration))
    return OnnxEmoNet(path, network.n_expression, choice.threads, int8_precision(calibration_id))


def calibration_id(items: list[str]) -> str:
    """A hash of what identifies the calibration frames (their files, crop and colour space)."""
    return hashlib.sha256("\n".join(items).encode()).hexdigest()[:16]


def int8_precision(calibration: str) -> str:
    return INT8_PREFIX + calibration


def int8_path(checkpoint_sha256: str, calibration: str) -> Path:
    return cache_dir() / checkpoint_sha256 / f"int8-{calibration}.onnx"


def cached_int8(checkpoint_sha256: str, precision: str, n_expression: int, threads: int) -> OnnxEmoNet:
    """The int8 engine whose features a head was trained on (its precision names the calibration), from this machine's
    cache: it cannot be made again without the calibration frames."""
    path = int8_path(checkpoint_sha256, precision.removeprefix(INT8_PREFIX))
    if _intact(path) is None:
        raise EmoNetError(f"the model was trained on int8 features ({precision}) whose engine file {path} is not in this "
                          "machine's cache (or is damaged): copy it and its .json from the machine that extracted the "
                          f"features into ${CACHE_ENV}, or use a model trained on fp32 features")
    return OnnxEmoNet(path, n_expression, threads, precision)
