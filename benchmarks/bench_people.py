"""The measurements behind following people in predict.py (emonet/people.py, emonet/face_quality.py), on the real faces
of ../shared/faces/ (required).

1. Descriptor distances on faces made hard as footage makes them: each of the 12 faces (six people; Obama and Biden
   three photos each, Lacamoire and Leslie two) at 100, 60, 45 and 30 pixels, and at 60 and 30 blurred, darkened,
   turned (testing.degrade) and cut in half by the frame's edge; dlib's 128-d descriptor from the face's known box.
   Distances of every pair, split into one person's other photos and two people, for clear faces (those that pass
   face_quality.QualityGates) and for the others; the error rates of TrackerConfig's link distance on clear faces and
   of the earlier rule (the nearest within 0.6, any face) on all.
2. The quality measures of each form (what the gates separate).
3. Ids on the film of testing.write_film_video (six shots) and the crossing video of testing.write_people_video at every
   frame, --sample_fps 2 and 5: ids per person and ids shared by two people; the cuts found against those written.
4. Milliseconds on this CPU of detection (a 640 x 480 frame), the 68 landmarks, the quality measure and a descriptor.

    python benchmarks/bench_people.py --output /tmp/bench_people.json
"""
import argparse
import collections
import itertools
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from emonet.device import describe_machine  # noqa: E402
from emonet.dlib_models import Landmarks68  # noqa: E402
from emonet.face_quality import measure  # noqa: E402
from emonet.following import FaceModels, Following, sampling_step  # noqa: E402
from emonet.io import write_json  # noqa: E402
from emonet.media import discover  # noqa: E402
from emonet.people import TrackerConfig  # noqa: E402
from emonet.testing import (FACE_BOXES, FILM_SHOTS, degrade, person_of_photo, write_film_video,  # noqa: E402
                            write_people_video)
from emonet.timing import StageTimer  # noqa: E402
from skimage import data  # noqa: E402

FACES_DIR = ROOT.parent / "shared" / "faces"
# two_people.jpg: Biden right, Obama left.
EXTRA_FACES = {"biden3": ("two_people.jpg", (562, 34, 669, 180)), "obama3": ("two_people.jpg", (168, 16, 275, 156))}
SIZES = (100, 60, 45, 30)
HARD = ("blur", "dark", "turned", "half")
OLD_THRESHOLD = 0.6  # the earlier rule: the nearest known person within 0.6, on any face


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--faces_dir", default=str(FACES_DIR), help=f"the real photos (default: {FACES_DIR})")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls of each part (default: 20)")
    parser.add_argument("--output", default=None, help="also write the figures to this JSON file")
    return parser


def faces(faces_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{name: (RGB photo, face box)}; the name's letters are the person."""
    out = {Path(file).stem: (file, box) for file, box in FACE_BOXES.items()} | EXTRA_FACES
    return {name: (cv2.cvtColor(cv2.imread(str(faces_dir / file)), cv2.COLOR_BGR2RGB), np.array(box, dtype=np.float64))
            for name, (file, box) in out.items()}


def forms(rgb: np.ndarray, box: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray, bool]]:
    """{form: (image, face box, cut off)}: the photo scaled so that the face is SIZES pixels tall, and at 60 and 30 each
    hard form."""
    out = {}
    for size in SIZES:
        scale = size / (box[3] - box[1])
        small = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        face = box * scale
        out[f"{size}"] = (small, face, False)
        if size not in (60, 30):
            continue
        for how in HARD[:3]:
            image, moved = degrade(small, how, face)
            out[f"{size} {how}"] = (image, moved, False)
        cut = int(round((face[0] + face[2]) / 2))  # the frame's edge through the middle of the face
        out[f"{size} half"] = (np.ascontiguousarray(small[:, cut:]), np.array([0, face[1], face[2] - cut, face[3]]), True)
    return out


def describe_all(faces_dir: Path, models: FaceModels) -> pd.DataFrame:
    """One row per face and form: descriptor and quality."""
    rows = []
    for name, (rgb, box) in faces(faces_dir).items():
        for form, (image, face, cut_off) in forms(rgb, box).items():
            shape = models.landmarks.shape(image, face)
            quality = measure(image, face, Landmarks68.points(shape), cut_off)
            rows.append({"name": name, "person": person_of_photo(name), "form": form,
                         "clear": quality.clear(TrackerConfig().quality), "descriptor": models.descriptor(image, shape),
                         **{k: getattr(quality, k) for k in ("size", "sharpness", "contrast", "frontal")}})
    return pd.DataFrame(rows)


def distances(described: pd.DataFrame) -> dict:
    pairs = []
    for a, b in itertools.combinations(described.itertuples(), 2):
        kind = "same photo" if a.name == b.name else "same person" if a.person == b.person else "two people"
        pairs.append({"kind": kind, "clear": bool(a.clear and b.clear),
                      "distance": float(np.linalg.norm(a.descriptor - b.descriptor))})
    pairs = pd.DataFrame(pairs)
    link = TrackerConfig().link_distance

    def spread(values: pd.Series) -> dict:
        return {"pairs": len(values), "min": round(float(values.min()), 3), "median": round(float(values.median()), 3),
                "max": round(float(values.max()), 3)}

    out = {"faces": len(described), "clear_faces": int(described["clear"].sum()), "link_distance": link}
    for clear, label in ((True, "clear"), (False, "not clear")):
        own = pairs[pairs["clear"] == clear]
        out[label] = {kind: spread(own[own["kind"] == kind]["distance"]) for kind in ("same person", "two people")}
    clear = pairs[pairs["clear"]]
    out["link_on_clear"] = {
        "split_rate": round(float((clear[clear["kind"] == "same person"]["distance"] > link).mean()), 4),
        "merge_rate": round(float((clear[clear["kind"] == "two people"]["distance"] <= link).mean()), 4)}
    out["old_rule_on_all"] = {
        "split_rate": round(float((pairs[pairs["kind"] == "same person"]["distance"] > OLD_THRESHOLD).mean()), 4),
        "merge_rate": round(float((pairs[pairs["kind"] == "two people"]["distance"] <= OLD_THRESHOLD).mean()), 4)}
    return out


def quality_by_form(described: pd.DataFrame) -> dict:
    table = described.groupby(described["form"].str.split().str[-1].where(described["form"].str.contains(" "), "plain"))
    return {form: {k: [round(float(own[k].min()), 3), round(float(own[k].max()), 3)]
                   for k in ("sharpness", "contrast", "frontal")} | {"clear": f"{int(own['clear'].sum())}/{len(own)}"}
            for form, own in table}


def ids(path: Path, truth, models: FaceModels, cuts_written: list[int]) -> dict:
    """Ids per person and ids shared by two people, at every frame and --sample_fps 2 and 5."""
    out = {}
    for sample_fps in (None, 2.0, 5.0):
        sequence = discover([str(path)])[0].open()
        step = sampling_step(sequence.fps, sample_fps)
        following = Following(models, "all", sequence.fps, step, StageTimer(("detect", "shots", "people", "landmarks")))
        frames = list(following.follow(sequence, step))
        names_of, ids_of = collections.defaultdict(set), collections.defaultdict(set)
        for seen in frames:
            for face, tracklet in zip(seen.faces, seen.tracklets, strict=True):
                c = face.centre
                names = [a.name for a in truth[seen.frame.index]
                         if a.visible >= 0.5 and a.face[0] <= c[0] <= a.face[2] and a.face[1] <= c[1] <= a.face[3]]
                if names:
                    person = following.tracker.person_of(tracklet)
                    names_of[person].add(names[-1])
                    ids_of[names[-1]].add(person)
        cuts = [b.frame.index for a, b in zip(frames, frames[1:], strict=False) if b.shot != a.shot]
        out["every frame" if sample_fps is None else f"{sample_fps:g} fps"] = {
            "ids_per_person": {n: len(p) for n, p in sorted(ids_of.items())},
            "ids_shared_by_two_people": {str(p): sorted(n) for p, n in names_of.items() if len(n) > 1},
            "cuts_found": cuts, "cuts_written": cuts_written, "descriptions": following.tracker.descriptions}
    return out


def timings(models: FaceModels, repeats: int) -> dict:
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:] = (90, 110, 100)
    frame[140:340, 245:395] = cv2.resize(data.astronaut()[20:260, 150:330], (150, 200))
    box = models.detector(frame)[0].box

    def ms(call) -> float:
        call()
        start = time.perf_counter()
        for _ in range(repeats):
            call()
        return (time.perf_counter() - start) / repeats * 1000

    shape = models.landmarks.shape(frame, box)
    return {"detect_frame_640x480_ms": ms(lambda: models.detector(frame)),
            "landmarks68_ms": ms(lambda: models.landmarks.shape(frame, box)),
            "quality_ms": ms(lambda: measure(frame, box, Landmarks68.points(shape), False)),
            "descriptor_ms": ms(lambda: models.descriptor(frame, shape))}


def main(args) -> dict:
    faces_dir = Path(args.faces_dir)
    if not faces_dir.is_dir():
        raise SystemExit(f"{faces_dir}: the real photos are needed (see its README)")
    models = FaceModels(torch.device("cpu"))
    described = describe_all(faces_dir, models)
    with tempfile.TemporaryDirectory() as tmp:
        film, crossing = Path(tmp) / "film.mp4", Path(tmp) / "people.mp4"
        film_cuts = [int(c) for c in np.cumsum([s.frames for s in FILM_SHOTS])[:-1]]
        videos = {"film": ids(film, write_film_video(film, faces_dir), models, film_cuts),
                  "crossing": ids(crossing, write_people_video(crossing, faces_dir), models, [180])}
    result = {"machine": describe_machine(torch.device("cpu")), "distances": distances(described),
              "quality": quality_by_form(described), "ids": videos, "timings": timings(models, args.repeats)}
    d = result["distances"]
    print(f"machine: {result['machine']}")
    print(f"{d['faces']} faces ({d['clear_faces']} clear); descriptor distances (min / median / max):")
    for label in ("clear", "not clear"):
        for kind, s in d[label].items():
            print(f"  {label:>9}, {kind:>11}: {s['min']:.3f} / {s['median']:.3f} / {s['max']:.3f} ({s['pairs']} pairs)")
    print(f"link distance {d['link_distance']} on clear faces: split {d['link_on_clear']['split_rate']:.2%} of one person's "
          f"pairs, merge {d['link_on_clear']['merge_rate']:.2%} of two people's; the earlier rule ({OLD_THRESHOLD} on "
          f"any face): split {d['old_rule_on_all']['split_rate']:.2%}, merge {d['old_rule_on_all']['merge_rate']:.2%}")
    for form, q in result["quality"].items():
        print(f"  quality {form:>7}: " + ", ".join(f"{k} {v}" for k, v in q.items()))
    for video, rates in result["ids"].items():
        for rate, r in rates.items():
            print(f"{video}, {rate}: ids per person {r['ids_per_person']}; shared {r['ids_shared_by_two_people'] or 'none'}; "
                  f"cuts {r['cuts_found']} (written {r['cuts_written']}); {r['descriptions']} descriptions")
    print("ms on this CPU: " + ", ".join(f"{k} {v:.1f}" for k, v in result["timings"].items()))
    if args.output:
        write_json(Path(args.output), result)
    return result


if __name__ == "__main__":
    main(get_args_parser().parse_args())
