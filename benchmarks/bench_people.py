"""The measurements behind following people in predict.py: identity distances, where shots are cut, and the cost
of each part, on the real faces of ../shared/faces/ (required) and scikit-image's astronaut.

1. Descriptor distances (`people.SAME_PERSON_DISTANCE`): dlib's 128-d descriptor of every face (each photo in six
   forms, see `photos`), the Euclidean distance of every pair, split into same person / other person.
2. Shot cuts (`shots.py`): the cuts `ShotDetector` finds on the test video of `testing.write_people_video` (two
   people who cross, one leaves and returns, one cut at frame 180), and, when PySceneDetect is installed
   (`pip install --no-deps scenedetect`; not a project requirement), those of its ContentDetector at default
   settings on the same frames.
3. Milliseconds a face on this CPU of detection (per frame), the 68 landmarks and the descriptor.

    python benchmarks/bench_people.py --output /tmp/bench_people.json
"""
import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from emonet.device import describe_machine  # noqa: E402
from emonet.dlib_models import FaceDescriptor, Landmarks68  # noqa: E402
from emonet.faces import FaceDetector  # noqa: E402
from emonet.io import write_json  # noqa: E402
from emonet.media import VideoSequence  # noqa: E402
from emonet.people import SAME_PERSON_DISTANCE  # noqa: E402
from emonet.shots import ShotDetector  # noqa: E402
from emonet.testing import PEOPLE_FPS, write_people_video  # noqa: E402
from skimage import data  # noqa: E402

FACES_DIR = ROOT.parent / "shared" / "faces"


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--faces_dir", default=str(FACES_DIR), help=f"the real photos (default: {FACES_DIR})")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls of each part (default: 20)")
    parser.add_argument("--output", default=None, help="also write the figures to this JSON file")
    return parser


def photos(faces_dir: Path) -> dict[str, np.ndarray]:
    """{name: RGB photo}: each real photo and the astronaut as it is, mirrored, at a quarter size, as JPEG of
    quality 20, at half brightness and turned 12 degrees: what a face meets in recordings."""
    originals = {f.stem: cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in sorted(faces_dir.glob("*.jpg"))}
    originals["astronaut"] = data.astronaut()
    out = {}
    for name, rgb in originals.items():
        h, w = rgb.shape[:2]
        jpeg = cv2.imdecode(cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 20])[1], cv2.IMREAD_COLOR)
        out.update({name: rgb, f"{name} mirrored": np.ascontiguousarray(rgb[:, ::-1]),
                    f"{name} quarter": cv2.resize(rgb, (w // 4, h // 4), interpolation=cv2.INTER_AREA),
                    f"{name} jpeg20": jpeg[:, :, ::-1].copy(), f"{name} dark": (rgb // 2).astype(np.uint8),
                    f"{name} turned": cv2.warpAffine(rgb, cv2.getRotationMatrix2D((w / 2, h / 2), 12, 1.0), (w, h))})
    return out


def person(name: str) -> str:
    """The person in a photo: obama.jpg and obama2.jpg show one person."""
    return name.split()[0].rstrip("0123456789")


def distances(images: dict[str, np.ndarray], detector, landmarks, descriptor) -> dict:
    described = {}
    for name, rgb in images.items():
        faces = detector(rgb)
        if len(faces) != 1:
            raise RuntimeError(f"{name}: {len(faces)} faces found, expected one")
        described[name] = descriptor(rgb, landmarks.shape(rgb, faces[0].box))
    same, other = [], []  # lists of distances
    for a, b in itertools.combinations(described, 2):
        d = float(np.linalg.norm(described[a] - described[b]))
        (same if person(a) == person(b) else other).append(d)
    return {"faces": len(described), "same_person": {"pairs": len(same), "max": max(same), "median": float(np.median(same))},
            "other_person": {"pairs": len(other), "min": min(other), "median": float(np.median(other))},
            "threshold": SAME_PERSON_DISTANCE}


def cuts(faces_dir: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "people.mp4"
        write_people_video(video, faces_dir)
        rgb = [f.rgb for f in VideoSequence(video).frames()]
    shots = ShotDetector()
    ours = [i for i, frame in enumerate(rgb) if shots.update(frame)]
    result = {"frames": len(rgb), "written_cut": 180, "shot_detector": ours}
    try:
        from scenedetect import FrameTimecode
        from scenedetect.detectors import ContentDetector
    except ImportError:
        result["pyscenedetect"] = "not installed"
        return result
    detector = ContentDetector()
    # PySceneDetect works on BGR frames; its first frame of a new scene is what ShotDetector reports.
    theirs = [c.frame_num for i, frame in enumerate(rgb)
              for c in detector.process_frame(FrameTimecode(i, fps=PEOPLE_FPS), frame[:, :, ::-1].copy())]
    result["pyscenedetect"] = [c for c in theirs if c > 0]
    return result


def timings(detector, landmarks, descriptor, repeats: int) -> dict:
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:] = (90, 110, 100)
    face = cv2.resize(data.astronaut()[20:260, 150:330], (150, 200))
    frame[140:340, 245:395] = face
    box = detector(frame)[0].box

    def ms(call) -> float:
        call()
        start = time.perf_counter()
        for _ in range(repeats):
            call()
        return (time.perf_counter() - start) / repeats * 1000

    shape = landmarks.shape(frame, box)
    return {"detect_frame_640x480_ms": ms(lambda: detector(frame)), "landmarks68_ms": ms(lambda: landmarks.shape(frame, box)),
            "descriptor_ms": ms(lambda: descriptor(frame, shape))}


def main(args) -> dict:
    faces_dir = Path(args.faces_dir)
    if not faces_dir.is_dir():
        raise SystemExit(f"{faces_dir}: the real photos are needed (see its README)")
    detector, landmarks, descriptor = FaceDetector(torch.device("cpu")), Landmarks68(), FaceDescriptor()
    result = {"machine": describe_machine(torch.device("cpu")),
              "distances": distances(photos(faces_dir), detector, landmarks, descriptor),
              "cuts": cuts(faces_dir), "timings": timings(detector, landmarks, descriptor, args.repeats)}
    d = result["distances"]
    print(f"machine: {result['machine']}")
    print(f"descriptor distances over {d['faces']} faces: same person max {d['same_person']['max']:.3f} "
          f"(median {d['same_person']['median']:.3f}, {d['same_person']['pairs']} pairs); other person min "
          f"{d['other_person']['min']:.3f} (median {d['other_person']['median']:.3f}, {d['other_person']['pairs']} pairs); "
          f"threshold {d['threshold']}")
    c = result["cuts"]
    print(f"cuts in the {c['frames']}-frame test video (written at {c['written_cut']}): ShotDetector {c['shot_detector']}, "
          f"PySceneDetect ContentDetector {c['pyscenedetect']}")
    print("ms on this CPU: " + ", ".join(f"{k} {v:.1f}" for k, v in result["timings"].items()))
    if args.output:
        write_json(Path(args.output), result)
    return result


if __name__ == "__main__":
    main(get_args_parser().parse_args())
