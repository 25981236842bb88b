"""Stage 1: get AFEW-VA (600 clips, 30,051 frames) onto disk and verify it.

    python download_afew_va.py                           # through kagglehub (needs Kaggle credentials)
    python download_afew_va.py --archive afew-va.zip     # a zip downloaded by hand from the Kaggle page
    python download_afew_va.py --verify /data/AFEW-VA    # verification only

Prints the dataset root and the line `export AFEW_VA_ROOT=...` to paste; exits 1 when no usable frame exists.
"""
import argparse
import json
import shlex
import sys
from pathlib import Path

from emonet.afew_va import PROBLEM_KINDS, read_afew_va, resolve_dataset_root, summarize
from emonet.cli import run
from emonet.constants import AFEW_VA_ROOT_ENV, KAGGLE_HANDLE
from emonet.download import extract_archive, find_dataset_root, kaggle_download
from emonet.errors import EmoNetError
from emonet.io import write_json

PROBLEMS_FILE = "afew_va_problems.json"
SHOWN_PROBLEMS = 10


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)  # a misspelt or shortened flag is an error, never another flag
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--handle", default=KAGGLE_HANDLE,
                        help=f"kagglehub dataset handle, version pinned so a cached copy needs no network (default: {KAGGLE_HANDLE})")
    source.add_argument("--archive", default=None, help="zip of the dataset downloaded by hand; extracted into --output_dir")
    source.add_argument("--verify", metavar="ROOT", default=None, help="only verify the dataset at ROOT")
    parser.add_argument("--output_dir", default="data", help="where --archive is extracted (default: data)")
    parser.add_argument("--problems_file", default=PROBLEMS_FILE,
                        help=f"where the list of problems found is written (default: {PROBLEMS_FILE})")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a problems file written for another dataset folder (default: refuse)")
    return parser


def check_problems_file(path: Path, root: Path, overwrite: bool) -> None:
    """Refuse to replace the problems of another dataset folder (the same folder's are simply renewed)."""
    if overwrite or not path.is_file():
        return
    try:
        before = json.loads(path.read_text()).get("dataset_root")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        before = None
    if before != str(root):
        raise EmoNetError(f"{path} holds the problems of {before or 'another file'}, not of {root}: pass "
                          "--problems_file OTHER.json, or --overwrite to replace it")


def main(args) -> int:
    if args.verify:
        root = resolve_dataset_root(args.verify)
    elif args.archive:
        root = find_dataset_root(extract_archive(args.archive, args.output_dir))
    else:
        root = find_dataset_root(kaggle_download(args.handle))

    check_problems_file(Path(args.problems_file), root, args.overwrite)
    frames, problems = read_afew_va(root)
    summary = summarize(frames, problems)
    write_json(args.problems_file, {"dataset_root": str(root), "summary": summary, "problems": [p.as_dict() for p in problems]})
    formats = ", ".join(f"{suffix} {n}" for suffix, n in summary["image_formats"].items()) or "none"
    print(f"AFEW-VA at {root}")
    print(f"  clips with usable frames  {summary['clips']:>6}")
    print(f"  frames labelled in JSON   {summary['labelled_frames']:>6}")
    print(f"  usable frames             {summary['usable_frames']:>6}  (labels, landmarks and image; {formats})")
    print(f"  actors                    {summary['actors']:>6}")
    for kind, count in summary.items():
        if kind in PROBLEM_KINDS and kind != "unreadable_image":
            print(f"  {kind.replace('_', ' '):<25} {count:>6}")
    print("  corrupt images            decoded and checked at extraction")
    for problem in problems[:SHOWN_PROBLEMS]:
        print(f"  ! {problem.path}: {problem.reason}")
    if len(problems) > SHOWN_PROBLEMS:
        print(f"  ... {len(problems) - SHOWN_PROBLEMS} more")
    if problems:
        print(f"  all problems: {args.problems_file}")
    if not frames:
        print("no usable frame: nothing to extract", file=sys.stderr)
        return 1
    print(f"export {AFEW_VA_ROOT_ENV}={shlex.quote(str(root.resolve()))}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser().parse_args()))
