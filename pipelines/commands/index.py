"""``clipstream index``: probe videos into a Parquet manifest.

Example::

    clipstream index data/kinetics/train -o train.parquet --labels train.csv --verify

prints a progress line while files are probed, then the summary::

    indexed 3 files in 2.1s (1.4 files/s): 2 ok, 1 quarantined
      quarantined      1  Invalid data found when processing input (moov atom not found)
"""

from __future__ import annotations

import argparse
import sys

from workers.errors import UnsafePathError
from workers.probe import DEFAULT_MAX_PIXELS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="video files or folders (local or s3://, gs://, hdfs:// ...)",
    )
    p.add_argument(
        "-o", "--output", required=True, metavar="MANIFEST.parquet", help="where the manifest goes"
    )
    p.add_argument(
        "--root",
        metavar="DIR",
        help="dataset root; paths (and CSV entries) may not leave it "
        "(default: the current folder for relative paths)",
    )
    labels = p.add_mutually_exclusive_group()
    labels.add_argument(
        "--labels",
        metavar="FILE.csv",
        help="CSV with path,label or Kinetics' label,youtube_id,time_start,time_end,split columns",
    )
    labels.add_argument(
        "--label-from-dir",
        action="store_true",
        help="label = the parent folder's name (class/video.mp4)",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="decode every frame; quarantine files whose frames do not all decode",
    )
    p.add_argument(
        "--motion",
        action="store_true",
        help="store per-frame mean motion-vector magnitude (for high-motion tasks)",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=f"quarantine streams with larger frames (default {DEFAULT_MAX_PIXELS})",
    )
    p.add_argument("--address", help="Ray address; default: local Ray, or RAY_ADDRESS")


def main(args: argparse.Namespace) -> int:
    from pipelines.manifest import index_paths, write_manifest

    try:
        result = index_paths(
            args.paths,
            root=args.root,
            labels=args.labels,
            label_from_dir=args.label_from_dir,
            verify=args.verify,
            motion=args.motion,
            address=args.address,
            max_pixels=args.max_pixels,
        )
    except UnsafePathError as e:
        print(f"clipstream index: refused: {e}", file=sys.stderr)
        return 2
    write_manifest(result.rows, args.output)
    print(result.summary())
    print(f"wrote {args.output}")
    return 0
