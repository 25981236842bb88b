"""Deterministic stand-ins for the things this project cannot download: EmoNet weights and AFEW-VA.

Used by the tests, the benchmarks and `compare_color_spaces.py --demo`. The weight recipe is the one the reference outputs in
`tests/data/emonet_golden.npz` were computed with (see `../shared/reference/README.md`).
"""
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from .constants import FEATURE_DIM, FLIP_ORDER_68, IMAGE_SIZE, LABEL_MAX, LABEL_MIN, LABEL_SCALE, NUM_LANDMARKS
from .manifest import write_manifest
from .model import EmoNet
from .stand_in import stand_in_tensor


def deterministic_state_dict(n_expression: int = 8, prefix: str = "", with_num_batches_tracked: bool = True) -> dict:
    """EmoNet state dict of the stand-in weights (`stand_in.py`); `prefix="module."` mimics the released files."""
    out = {}
    for name, ref in EmoNet(n_expression).state_dict().items():
        if name.endswith("num_batches_tracked") and not with_num_batches_tracked:
            continue
        out[prefix + name] = torch.from_numpy(stand_in_tensor(name, tuple(ref.shape)))
    return out


def write_released_checkpoint(path: Path, n_expression: int = 8) -> Path:
    """A checkpoint in the released format: `module.` prefix (DataParallel), no `num_batches_tracked`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(deterministic_state_dict(n_expression, prefix="module.", with_num_batches_tracked=False), path)
    return path


def landmark_template() -> np.ndarray:
    """A mirror-symmetric 68-point face shape in the unit square (iBUG order, image left = subject's right).

    Not a real mean shape, but every point sits in its part's place (jaw arc, brows above eyes, nose on
    the axis, mouth below), and flipping it with FLIP_ORDER_68 gives it back: enough to test crops and flips.
    """
    pts = np.zeros((NUM_LANDMARKS, 2))
    t = np.linspace(-1.0, 1.0, 17)
    pts[0:17] = np.stack([0.5 + 0.48 * np.sin(t * 1.3), 0.35 + 0.62 * np.cos(t * 1.3)], 1)  # jaw
    pts[17:22] = np.stack([np.linspace(0.12, 0.42, 5), 0.22 - 0.05 * np.sin(np.linspace(0, np.pi, 5))], 1)
    pts[27:31] = np.stack([np.full(4, 0.5), np.linspace(0.32, 0.56, 4)], 1)  # nose bridge
    pts[31:34] = np.stack([np.linspace(0.40, 0.5, 3), [0.62, 0.64, 0.65]], 1)  # nostrils (left half)
    eye = np.linspace(0, 2 * np.pi, 7)[:6]
    pts[36:42] = np.stack([0.3 - 0.08 * np.cos(eye), 0.36 - 0.03 * np.sin(eye)], 1)
    mouth = np.linspace(0, 2 * np.pi, 13)[:12]
    pts[48:60] = np.stack([0.5 - 0.17 * np.cos(mouth), 0.78 - 0.07 * np.sin(mouth)], 1)
    inner = np.linspace(0, 2 * np.pi, 9)[:8]
    pts[60:68] = np.stack([0.5 - 0.1 * np.cos(inner), 0.78 - 0.03 * np.sin(inner)], 1)
    # The right half is the mirror of the left half; points on the axis are averaged with themselves.
    order = np.asarray(FLIP_ORDER_68)
    left = np.zeros(NUM_LANDMARKS, bool)
    left[[*range(0, 8), *range(17, 22), 31, 32, *range(36, 42), 48, 49, 50, 58, 59, 60, 61, 67]] = True
    mirrored = np.stack([1.0 - pts[:, 0], pts[:, 1]], 1)
    pts[order[left]] = mirrored[left]
    on_axis = order == np.arange(NUM_LANDMARKS)
    pts[on_axis, 0] = 0.5
    return pts


def face_image() -> np.ndarray:
    """A real face: the astronaut from scikit-image, cropped to her face (uint8 RGB, 200 x 200)."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[20:220, 130:330])


# Size of the real AFEW-VA frames.
FRAME_WIDTH, FRAME_HEIGHT = 720, 576


# The demo's planted signal: brightness per valence point, and red-up blue-down shift (of 255) per arousal point.
PLANTED_BRIGHTNESS = 0.05
PLANTED_TINT = np.array([6.0, 0.0, -6.0])


def planted_face(face: np.ndarray, valence: float, arousal: float) -> np.ndarray:
    """The face with its labels made visible: brightness follows valence (x 0.5 at -10, x 1.5 at +10) and the colour
    warms with arousal (red up and blue down by 6 levels a point: cool at -10, warm at +10). The demo's planted
    signal: a head on EmoNet's features, even with random weights, can learn it, so a demo's trained rows show
    what learning looks like."""
    rgb = face.astype(np.float32) * (1.0 + PLANTED_BRIGHTNESS * valence) + PLANTED_TINT * arousal
    return np.clip(rgb, 0, 255).astype(np.uint8)


def write_afew_va_tree(root: Path, labels: dict, frames_per_clip: int = 4, actors: dict | None = None,
                       plant: bool = False, suffix: str = ".png") -> Path:
    """Write an AFEW-VA-format tree: `<clip>/<clip>.json` and `<clip>/<frame>.png` (720 x 576; `suffix` ".jpg"
    for a JPEG copy).

    `labels` maps clip ids to `{"valence": [...], "arousal": [...]}` (as in afew_va_labels.json); the first
    `frames_per_clip` labels of each clip are used. Each clip shows the face at its own position and size,
    drifting slightly from frame to frame, with landmarks that follow it (some clips reach off the frame).
    `plant`: each frame's face shows its labels (`planted_face`).
    """
    face = face_image()
    template = landmark_template()
    rng = np.random.default_rng(0)
    for k, (clip, clip_labels) in enumerate(sorted(labels.items())):
        clip_dir = root / clip
        clip_dir.mkdir(parents=True, exist_ok=True)
        size = 160 + 40 * (k % 4)
        x0, y0 = 60 + 150 * (k % 4), 40 + 120 * (k % 3)
        if k % 5 == 4:  # a face partly off the left edge: negative landmarks, as in the real data
            x0 = -size // 3
        frames = {}
        for i in range(min(frames_per_clip, len(clip_labels["valence"]))):
            fx, fy = x0 + 3 * i, y0 + 2 * i
            frame = np.full((FRAME_HEIGHT, FRAME_WIDTH, 3), 40, np.uint8)
            frame += rng.integers(0, 20, frame.shape, dtype=np.uint8)
            shown = planted_face(face, clip_labels["valence"][i], clip_labels["arousal"][i]) if plant else face
            resized = cv2.resize(shown, (size, size), interpolation=cv2.INTER_AREA)
            _paste(frame, resized, fx, fy)
            name = f"{i:05d}"
            cv2.imwrite(str(clip_dir / f"{name}{suffix}"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            landmarks = template * size * 0.9 + [fx + 0.05 * size, fy + 0.08 * size]
            frames[name] = {
                "valence": clip_labels["valence"][i],
                "arousal": clip_labels["arousal"][i],
                "landmarks": landmarks.round(3).tolist(),
            }
        actor = (actors or {}).get(clip, f"actor_{k % 3}")
        meta = {"actor": actor, "video_id": clip, "frames": frames}
        (clip_dir / f"{clip}.json").write_text(json.dumps(meta))
    return root


def _paste(frame: np.ndarray, patch: np.ndarray, x: int, y: int) -> None:
    """Paste `patch` with its top-left corner at (x, y), clipped to the frame."""
    h, w = patch.shape[:2]
    fx0, fy0 = max(x, 0), max(y, 0)
    fx1, fy1 = min(x + w, frame.shape[1]), min(y + h, frame.shape[0])
    if fx1 > fx0 and fy1 > fy0:
        frame[fy0:fy1, fx0:fx1] = patch[fy0 - y : fy1 - y, fx0 - x : fx1 - x]


def write_feature_set(folder: Path, labels: dict, manifest_name: str = "features_hsv_manifest.json",
                      feature_dir: str = "features_hsv", actors_per_clip: int = 7,
                      color_space: str = "hsv", signal: float = 1.0, seed: int = 0, noise: float = 0.5) -> Path:
    """Feature files and a manifest as extraction writes them, for every frame of `labels` (real clip structure).

    Features carry the labels linearly (times `signal`) plus a per-clip offset and independent per-frame noise
    (sd `noise`), so a head can learn something, a leaking split can memorise clips, and with much noise a
    head that looks along the clip can average it out; `seed` draws the mixing, offsets and noise.
    The actor of clip c is `actor_{c // actors_per_clip}`.
    """
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((2, FEATURE_DIM)).astype(np.float32)
    samples = []
    for clip, clip_labels in sorted(labels.items()):
        offset = rng.standard_normal(FEATURE_DIM).astype(np.float32)
        clip_dir = folder / feature_dir / clip
        clip_dir.mkdir(parents=True, exist_ok=True)
        for i, (v, a) in enumerate(zip(clip_labels["valence"], clip_labels["arousal"], strict=True)):
            va = np.array([v, a], dtype=np.float32) / LABEL_SCALE
            features = signal * va @ mixing + offset + noise * rng.standard_normal(FEATURE_DIM).astype(np.float32)
            name = f"{i:05d}"
            np.savez(clip_dir / f"{name}.npz", features=features, valence=np.float32(v), arousal=np.float32(a),
                     emonet_valence=np.float32(va[0] * 0.5 + 0.1), emonet_arousal=np.float32(va[1] * 0.5),
                     emonet_expression=np.zeros(8, np.float32))
            samples.append({"path": f"{feature_dir}/{clip}/{name}.npz", "clip": clip, "frame": name,
                            "actor": f"actor_{int(clip) // actors_per_clip}", "valence": float(v), "arousal": float(a)})
    manifest = folder / manifest_name
    write_manifest(manifest, {"color_space": color_space, "crop": "landmarks", "image_size": IMAGE_SIZE}, samples)
    return manifest


def synthetic_labels(n_clips: int, min_frames: int, max_frames: int, seed: int = 0) -> dict:
    """Labels with AFEW-VA's structure, for where the real ones are absent: integers in [-10, 10] that drift
    slowly within a clip of min_frames..max_frames frames, from a start drawn per clip (valence around -1,
    arousal around 2, as in the real data). Same format as afew_va_labels.json's `clips`."""
    rng = np.random.default_rng(seed)
    out = {}
    for c in range(1, n_clips + 1):
        n = int(rng.integers(min_frames, max_frames + 1))
        starts = (rng.normal(-1.2, 2.8), rng.normal(2.4, 2.5))
        walks = [np.clip(np.round(start + np.cumsum(rng.normal(0, 0.3, n))), LABEL_MIN, LABEL_MAX) for start in starts]
        out[f"{c:03d}"] = {"valence": walks[0].tolist(), "arousal": walks[1].tolist()}
    return out


def write_demo_dataset(folder: Path, clips: int, frames_per_clip: int) -> tuple[Path, Path]:
    """An AFEW-VA-format sample (`synthetic_labels`, the astronaut's face showing its labels: `planted_face`) and
    a checkpoint with the deterministic weights, for a first run without the data: (dataset root, checkpoint)."""
    root = write_afew_va_tree(folder / "AFEW-VA", synthetic_labels(clips, frames_per_clip, frames_per_clip),
                              frames_per_clip, plant=True)
    return root, write_released_checkpoint(folder / "emonet_8.pth")


def write_synthetic_dataset(folder: Path, clips: int, frames_per_clip: int, seed: int = 0) -> tuple[Path, Path]:
    """A tree of `clips` clips with random labels (`write_afew_va_tree`) and a released-format checkpoint."""
    rng = np.random.default_rng(seed)
    labels = {f"{i:03d}": {"valence": rng.integers(-10, 11, frames_per_clip).tolist(),
                           "arousal": rng.integers(-10, 11, frames_per_clip).tolist()} for i in range(1, clips + 1)}
    root = write_afew_va_tree(folder / "AFEW-VA", labels, frames_per_clip)
    return root, write_released_checkpoint(folder / "emonet_8.pth")


def write_face_video(path: Path, face_frames: int, empty_frames: int, size: tuple[int, int] = (320, 240),
                     fps: float = 25.0, face_size: int = 110, faces: list[np.ndarray] | None = None) -> Path:
    """An MP4 written with OpenCV: faces (default: the astronaut's) moving left to right across a noisy background for
    `face_frames` frames, each on its own horizontal band, then `empty_frames` frames of background alone."""
    width, height = size
    faces = [cv2.resize(f, (face_size, face_size), interpolation=cv2.INTER_AREA) for f in (faces or [face_image()])]
    band = height // len(faces)
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(face_frames + empty_frames):
        frame = np.full((height, width, 3), 60, np.uint8) + rng.integers(0, 20, (height, width, 3), dtype=np.uint8)
        if i < face_frames:
            x = int((width - face_size) * i / max(face_frames - 1, 1))
            for k, face in enumerate(faces):
                _paste(frame, face, x if k % 2 == 0 else width - face_size - x, k * band + (band - face_size) // 2)
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def shared_face_crops(faces_dir: Path) -> list[np.ndarray]:
    """The faces of the photos of ../shared/faces/ (`PEOPLE_PHOTOS`, head and shoulders), RGB."""
    out = []
    for file, crop, _ in PEOPLE_PHOTOS.values():
        x1, y1, x2, y2 = crop
        out.append(cv2.cvtColor(cv2.imread(str(faces_dir / file)), cv2.COLOR_BGR2RGB)[y1:y2, x1:x2])
    return out


# -- people in a video (predict.py --faces all) ----------------------------------------------------------------------
# Head-and-shoulders crops of the photos of ../shared/faces/ (x1, y1, x2, y2 in each photo), about the detector's
# face box there (the last four numbers, in the photo) widened by half of it on each side.
PEOPLE_PHOTOS = {"obama": ("obama.jpg", (200, 10, 490, 350), (259, 57, 431, 294)),
                 "biden": ("biden.jpg", (110, 25, 300, 255), (152, 68, 256, 207))}
PEOPLE_SIZE = (640, 480)
PEOPLE_FPS = 25.0
PEOPLE_PATCH_HEIGHT = 190


@dataclass(frozen=True)
class Appearance:
    """Where a person's face is in a frame of `write_people_video` (x1, y1, x2, y2, clipped to the frame), and how much
    of it shows (the rest is off the frame, or behind the other person's photo)."""

    name: str
    face: tuple[int, int, int, int]
    visible: float


def _people_timeline(frames: int) -> list[tuple[str, dict[str, tuple[float, float]]]]:
    """(scene, {name: top-left corner}) of each frame: Obama walks right and Biden left, crossing in front of him
    (frames 0-79); they stand (80-99); Biden walks out to the left (100-109), is away two seconds (110-159) and comes
    back (160-179); a cut to another scene where they stand on swapped sides (Obama left, Biden right, 180-249)."""
    out = []
    for i in range(frames):
        if i < 80:
            t = i / 79
            corners = {"obama": (30 + 400 * t, 110), "biden": (470 - 400 * t, 200)}
        elif i < 100:
            corners = {"obama": (430, 110), "biden": (70, 200)}
        elif i < 110:
            corners = {"obama": (430, 110), "biden": (70 - 30 * (i - 99), 200)}
        elif i < 160:
            corners = {"obama": (430, 110)}
        elif i < 180:
            corners = {"obama": (430, 110), "biden": (-230 + 15 * (i - 159), 200)}
        else:
            t = (i - 180) / 69
            corners = {"obama": (60 + 20 * t, 140), "biden": (420 - 20 * t, 150)}
        out.append(("a" if i < 180 else "b", corners))
    return out


def write_people_video(path: Path, faces_dir: Path, frames: int = 250, fps: float = PEOPLE_FPS) -> list[list[Appearance]]:
    """An MP4 of two real people (photos of ../shared/faces/ moved over scikit-image backgrounds, `_people_timeline`):
    crossing, one leaving and coming back, a cut. Returns, per frame, who is where (the truth to score ids against);
    Biden's photo is drawn over Obama's where they cross."""
    from skimage import data

    width, height = PEOPLE_SIZE
    backgrounds = {"a": cv2.resize(data.coffee(), PEOPLE_SIZE, interpolation=cv2.INTER_AREA),
                   "b": cv2.resize(data.rocket(), PEOPLE_SIZE, interpolation=cv2.INTER_AREA)}
    patches, faces = {}, {}
    for name, (file, (x1, y1, x2, y2), face) in PEOPLE_PHOTOS.items():
        photo = cv2.cvtColor(cv2.imread(str(faces_dir / file)), cv2.COLOR_BGR2RGB)[y1:y2, x1:x2]
        scale = PEOPLE_PATCH_HEIGHT / photo.shape[0]
        patches[name] = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        faces[name] = (np.array(face, dtype=np.float64) - [x1, y1, x1, y1]) * scale
    truth = []
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, PEOPLE_SIZE)
    for scene, corners in _people_timeline(frames):
        frame = backgrounds[scene].copy()
        shown = np.zeros((height, width), np.int8) - 1  # which person's photo each pixel shows
        placed = {}
        for k, name in enumerate(("obama", "biden")):  # Biden last: in front where they cross
            if name not in corners:
                continue
            x, y = (int(round(v)) for v in corners[name])
            patch = patches[name]
            _paste(frame, patch, x, y)
            _paste(shown[..., None], np.full((*patch.shape[:2], 1), k, np.int8), x, y)
            placed[name] = (k, faces[name] + [x, y, x, y])
        seen = []
        for name, (k, box) in placed.items():
            fx1, fy1, fx2, fy2 = (int(round(v)) for v in box)
            area = (fx2 - fx1) * (fy2 - fy1)
            clipped = (max(fx1, 0), max(fy1, 0), min(fx2, width), min(fy2, height))
            if clipped[2] > clipped[0] and clipped[3] > clipped[1]:
                region = shown[clipped[1]:clipped[3], clipped[0]:clipped[2]]
                seen.append(Appearance(name, clipped, float((region == k).sum() / area)))
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        truth.append(seen)
    writer.release()
    return truth


# -- a film of several shots (predict.py on edited footage) ------------------------------------------------------------
# The detector's face box in each photo of ../shared/faces/ (x1, y1, x2, y2); "two_people.jpg" holds two.
FACE_BOXES = {"obama.jpg": (259, 54, 437, 297), "obama2.jpg": (135, 151, 319, 422), "biden.jpg": (159, 67, 257, 205),
              "biden2.jpg": (285, 106, 585, 517), "alex_lacamoire.jpg": (201, 86, 391, 365),
              "alex_lacamoire2.jpg": (330, 75, 484, 279), "rose_leslie.jpg": (397, 41, 544, 239),
              "rose_leslie2.jpg": (162, 104, 383, 405), "kit_harington.jpg": (179, 105, 301, 257),
              "lin_manuel_miranda.jpg": (264, 131, 521, 496)}
FILM_SIZE = (640, 360)
FILM_FPS = 25.0


@dataclass(frozen=True)
class Shot:
    """One shot of `write_film_video`: a background and who is in it, each as (photo, face height in pixels, top-left
    corner of the face box, pixels moved a frame, degradation: "", "dark", "blur", "turned")."""

    frames: int
    background: str  # a scikit-image image without faces
    people: tuple[tuple[str, int, tuple[int, int], tuple[float, float], str], ...]


# A stage, as in a filmed concert: a performer (Obama) in a wide, a close and another wide shot; a pianist (Lacamoire)
# small and dim in the wide shot, then turned and cut off by the frame's edge; an audience of four, small and some dark
# or blurred; one of them (Leslie) close later in another photo; another (Biden) close at the end, in another photo,
# beside a third (Miranda) seen small but sharp in the audience. Descriptors that do not separate people would pass an id
# across these cuts; links on clear faces only should not.
FILM_SHOTS = (
    Shot(60, "coffee", (("obama.jpg", 66, (140, 90), (1.0, 0.0), "blur"), ("alex_lacamoire.jpg", 62, (500, 200), (0.0, 0.0), "dark"))),
    Shot(50, "rocket", (("obama.jpg", 170, (240, 80), (0.5, 0.0), ""),)),
    Shot(50, "brick", (("alex_lacamoire2.jpg", 150, (572, 100), (0.0, 0.0), "turned"),)),
    Shot(60, "gravel", (("lin_manuel_miranda.jpg", 64, (20, 140), (0.3, 0.0), "blur"), ("biden.jpg", 66, (130, 150), (0.3, 0.0), "dark"),
                        ("rose_leslie.jpg", 64, (260, 140), (0.0, 0.2), "blur"), ("kit_harington.jpg", 66, (390, 150), (0.0, 0.0), ""),
                        ("obama2.jpg", 120, (535, 120), (0.0, 0.0), ""))),
    Shot(60, "coffee", (("obama.jpg", 110, (80, 100), (0.5, 0.0), ""), ("rose_leslie2.jpg", 120, (400, 90), (0.0, 0.0), ""))),
    Shot(50, "grass", (("biden2.jpg", 150, (100, 90), (0.0, 0.0), ""), ("lin_manuel_miranda.jpg", 130, (400, 100), (0.0, 0.0), ""))),
)


def person_of_photo(photo: str) -> str:
    """The person a photo shows: obama.jpg and obama2.jpg show one person."""
    return Path(photo).stem.rstrip("0123456789")


def degrade(patch: np.ndarray, how: str, face: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A head-and-shoulders patch as footage shows a face (and its face box after): darker, blurred, or turned (the
    face's far half foreshortened as a head turned about 60 degrees away shows it)."""
    if how == "dark":
        noise = np.random.default_rng(0).normal(0, 3, patch.shape)
        return np.clip(patch.astype(np.float32) * 0.3 + noise, 0, 255).astype(np.uint8), face
    if how == "blur":
        return cv2.GaussianBlur(patch, (0, 0), 1.6), face
    if how == "turned":
        x1, y1, x2, y2 = face
        cx, k = (x1 + x2) / 2, np.cos(np.radians(60))
        src = np.float32([[x1, y1], [x2, y1], [x2, y2], [x1, y2]])
        dst = np.float32([[cx - (cx - x1) * k, y1 + 0.08 * (y2 - y1)], [x2, y1], [x2, y2],
                          [cx - (cx - x1) * k, y2 - 0.08 * (y2 - y1)]])
        warp = cv2.getPerspectiveTransform(src, dst)
        turned = cv2.warpPerspective(patch, warp, (patch.shape[1], patch.shape[0]), borderMode=cv2.BORDER_REPLICATE)
        return turned, np.array([cx - (cx - x1) * k, y1, x2, y2])
    return patch, face


def write_film_video(path: Path, faces_dir: Path, shots: tuple[Shot, ...] = FILM_SHOTS, size: tuple[int, int] = FILM_SIZE,
                     fps: float = FILM_FPS) -> list[list[Appearance]]:
    """An MP4 of `shots` (real photos of ../shared/faces/ over scikit-image backgrounds, each face scaled to its height,
    degraded, moving), cut without transition. Returns, per frame, who is where (`Appearance`, named by person)."""
    from skimage import data

    width, height = size
    truth = []
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for shot in shots:
        background = getattr(data, shot.background)()
        background = cv2.resize(background if background.ndim == 3 else np.dstack([background] * 3), size,
                                interpolation=cv2.INTER_AREA)
        placed = []
        for photo, face_height, corner, move, how in shot.people:
            x1, y1, x2, y2 = FACE_BOXES[photo]
            w, h = x2 - x1, y2 - y1
            image = cv2.cvtColor(cv2.imread(str(faces_dir / photo)), cv2.COLOR_BGR2RGB)
            top, left = max(0, y1 - h // 2), max(0, x1 - w // 2)
            crop = image[top:y2 + h // 3, left:x2 + w // 2]
            scale = face_height / h
            patch = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            face = (np.array([x1, y1, x2, y2], dtype=np.float64) - [left, top, left, top]) * scale
            patch, face = degrade(patch, how, face)
            placed.append((person_of_photo(photo), patch, face, np.array(corner, float) - face[:2], np.array(move)))
        for i in range(shot.frames):
            frame = background.copy()
            seen = []
            for name, patch, face, origin, move in placed:
                x, y = (int(round(v)) for v in origin + move * i)
                _paste(frame, patch, x, y)
                fx1, fy1, fx2, fy2 = (int(round(v)) for v in face + [x, y, x, y])
                clipped = (max(fx1, 0), max(fy1, 0), min(fx2, width), min(fy2, height))
                area = (fx2 - fx1) * (fy2 - fy1)
                if clipped[2] > clipped[0] and clipped[3] > clipped[1]:
                    shown = (clipped[2] - clipped[0]) * (clipped[3] - clipped[1]) / area
                    seen.append(Appearance(name, clipped, float(shown)))
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            truth.append(seen)
    writer.release()
    return truth


def write_aff_wild2_tree(root: Path, videos: dict[str, tuple[str, list[tuple[float, float]]]],
                         missing: dict[str, set[int]] | None = None, size: int = 112) -> Path:
    """An Aff-Wild2 VA-track tree (`aff_wild2.py`'s layout): per video (split folder, per-frame (valence, arousal)
    lines) its annotation file and its cropped_aligned jpgs (the astronaut's face at `size`), except the 1-based
    frame numbers of `missing[video]` (frames where the face was not found)."""
    face = cv2.resize(face_image(), (size, size), interpolation=cv2.INTER_AREA)
    for video, (split, values) in videos.items():
        folder = root / "VA_Set" / split
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{video}.txt").write_text("valence,arousal\n" + "".join(f"{v},{a}\n" for v, a in values))
        frames = root / "cropped_aligned" / video
        frames.mkdir(parents=True, exist_ok=True)
        for number in range(1, len(values) + 1):
            if number not in (missing or {}).get(video, set()):
                cv2.imwrite(str(frames / f"{number:05d}.jpg"), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    return root


def write_affectnet_tree(root: Path, lists: dict[str, list[tuple[str, float, float]]], in_lists_folder: bool = True,
                         size: int = 200) -> Path:
    """An AffectNet tree (`affectnet.py`'s layout): per list file (training.csv, validation.csv) rows of (image path
    under Manually_Annotated_Images/, valence, arousal[, expression: default 1, happy]), each image the astronaut's face with the 68 points of
    `landmark_template` on it, listed in its row."""
    face = cv2.resize(face_image(), (size, size), interpolation=cv2.INTER_AREA)
    points = landmark_template() * size * 0.8 + size * 0.1
    landmarks = ";".join(f"{v:.2f}" for v in points.ravel())
    folder = root / ("Manually_Annotated_file_lists" if in_lists_folder else "")
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in lists.items():
        lines = ["subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal"]
        for relative, valence, arousal, *expression in rows:
            image = root / "Manually_Annotated_Images" / relative
            image.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(image), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
            lines.append(f"{relative},0,0,{size},{size},{landmarks},{expression[0] if expression else 1},{valence},{arousal}")
        (folder / name).write_text("\n".join(lines) + "\n")
    return root
