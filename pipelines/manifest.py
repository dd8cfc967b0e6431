"""The manifest: one Parquet row per video, probed in parallel with Ray tasks.

``index_paths`` turns files and folders (local or ``pyarrow.fs`` URIs) into rows: it refuses
unsafe paths before any I/O, expands folders to their video files, attaches labels, probes
every file in a Ray task and turns per-file problems into ``quarantined`` rows, so a corrupt
file is never a crash and never a silent drop. ``write_manifest``/``read_manifest`` store
the rows with an explicit schema (the columns are the fields of :class:`VideoMeta`).

Example: ``index_paths(["data/"], root="data", label_from_dir=True)`` over
``data/cats/a.mp4, data/dogs/b.mp4, data/dogs/broken.mp4`` gives three rows: a (label
"cats", id 0), b ("dogs", 1) and broken.mp4 (status "quarantined", error "moov atom ...").
"""

from __future__ import annotations

import csv
import io
import os
import posixpath
import re
import sys
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import pyarrow as pa
import pyarrow.parquet as pq

from workers.errors import CorruptMediaError, UnsafePathError, UnsupportedCodecError
from workers.io import ALLOWED_SCHEMES, REMOTE_SCHEMES, scheme_of
from workers.meta import VideoMeta, video_id_of
from workers.probe import DEFAULT_MAX_PIXELS, probe

SCHEMA_VERSION = "1"


def _list(item: pa.DataType) -> pa.DataType:
    # "element" is the item name the Parquet spec uses, so the schema read back is equal.
    return pa.list_(pa.field("element", item))


SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.int64(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("size_bytes", pa.int64()),
        pa.field("container", pa.string()),
        pa.field("video_codec", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("rotation", pa.int32()),
        pa.field("avg_fps", pa.float64()),
        pa.field("num_frames", pa.int64()),
        pa.field("duration_s", pa.float64()),
        pa.field("keyframes", _list(pa.int64())),
        pa.field("is_vfr", pa.bool_()),
        pa.field("has_audio", pa.bool_()),
        pa.field("audio_codec", pa.string()),
        pa.field("audio_sample_rate", pa.int32()),
        pa.field("audio_channels", pa.int32()),
        pa.field("audio_duration_s", pa.float64()),
        pa.field("label", pa.string()),
        pa.field("label_id", pa.int32()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("motion", _list(pa.float32())),
        pa.field("pix_fmt", pa.string()),
    ],
    metadata={"clipstream.manifest": SCHEMA_VERSION},
)
OK, QUARANTINED = "ok", "quarantined"


# ---------------------------------------------------------------------------- Parquet side


def to_table(rows: Iterable[VideoMeta]) -> pa.Table:
    """Rows as a table of :data:`SCHEMA`."""
    return pa.Table.from_pylist([r.to_row() for r in rows], schema=SCHEMA)


def write_manifest(rows: Iterable[VideoMeta], path: str | os.PathLike[str]) -> None:
    """Write rows (ok and quarantined) to a Parquet file (local path or ``pyarrow.fs`` URI).

    A local file is written beside its final name and renamed, so a reader never sees half
    a manifest.
    """
    table = to_table(rows)
    target = str(path)
    if "://" in target:
        pq.write_table(table, target)
        return
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{target}.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, target)


def read_table(path: str | os.PathLike[str]) -> pa.Table:
    """Every row of a manifest (ok and quarantined), as a table of :data:`SCHEMA`.

    Columns missing from an older manifest are added with their defaults.
    """
    table = pq.read_table(str(path))
    for f in SCHEMA:
        if f.name not in table.column_names:
            default = (
                getattr(VideoMeta, f.name, None) if f.name not in ("keyframes", "motion") else []
            )
            table = table.append_column(f, pa.array([default] * table.num_rows, type=f.type))
    return table.select(SCHEMA.names).cast(SCHEMA)


def read_manifest(
    path: str | os.PathLike[str], *, include_quarantined: bool = False, root: str | None = None
) -> list[VideoMeta]:
    """Rows of a manifest.

    Args:
        path: the Parquet file.
        include_quarantined: also return rows with ``status == "quarantined"``.
        root: when given, every uri must lie inside it (a manifest from elsewhere cannot
            point readers at other files).
    Returns:
        One VideoMeta per row, in file order.
    Raises:
        UnsafePathError: a uri escapes ``root`` or uses a scheme that is not allowed.
    """
    rows = [VideoMeta.from_row(r) for r in read_table(path).to_pylist()]
    if root is not None:
        for r in rows:
            safe_uri(r.uri, root=root)
    return rows if include_quarantined else [r for r in rows if r.status == OK]


def quarantined(uri: str, reason: str, *, label: str = "", label_id: int = -1) -> VideoMeta:
    """The row of a file that cannot be used: status quarantined, ``error`` = reason."""
    return VideoMeta(
        video_id=video_id_of(uri),
        uri=uri,
        label=label,
        label_id=label_id,
        status=QUARANTINED,
        error=reason,
    )


# ----------------------------------------------------------------------------- one file


@dataclass(frozen=True)
class ProbeOptions:
    """How each file is probed (pickled into every Ray task)."""

    verify: bool = False
    motion: bool = False
    max_pixels: int | None = DEFAULT_MAX_PIXELS


def probe_row(uri: str, options: ProbeOptions, label: str = "", label_id: int = -1) -> VideoMeta:
    """Probe one file into its manifest row; a per-file problem gives a quarantined row.

    Motion (``options.motion``): a codec without motion-vector export (VP9, AV1, HEVC) keeps
    its row ``ok`` with empty ``motion`` (empty means "not available", never "no motion");
    a file whose motion decode fails is quarantined like any other broken file.
    """
    try:
        meta = probe(uri, verify=options.verify, max_pixels=options.max_pixels)
        if options.motion:
            meta = replace(meta, motion=_motion(uri))
    except CorruptMediaError as e:
        return quarantined(uri, e.reason, label=label, label_id=label_id)
    return replace(meta, label=label, label_id=label_id)


def _motion(uri: str) -> tuple[float, ...]:
    from workers.motion import mean_motion

    try:
        return tuple(float(x) for x in mean_motion(uri))
    except UnsupportedCodecError:
        return ()


def _probe_many(
    uris: list[str], options: ProbeOptions, labels: list[tuple[str, int]]
) -> list[VideoMeta]:
    """The body of one Ray task: a chunk of files, probed one after the other."""
    return [probe_row(u, options, *lab) for u, lab in zip(uris, labels)]


# ------------------------------------------------------------------- paths, safely

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpeg", ".mpg", ".ts", ".m2ts", ".264"}
    | {".h264", ".265", ".hevc", ".flv", ".3gp", ".ivf", ".wmv", ".asf", ".ogv", ".mxf", ".nut"}
)


def safe_uri(path: str, *, root: str | None = None) -> str:
    """Check a path against the dataset root and the allowed schemes, without any I/O.

    The root is ``root`` when given; otherwise relative local paths are held to the current
    folder, and an absolute path or a URI is its own root (no ``..`` segment at all).

    Args:
        path: a local path, ``file://`` URI or ``pyarrow.fs`` URI (``s3://``, ``gs://``, ...).
        root: the dataset root (local folder or URI).
    Returns:
        The normalized uri the manifest stores: an absolute local path, or the URI.
    Raises:
        UnsafePathError: naming the path, when it escapes the root or its scheme is not allowed.
    Example:
        ``safe_uri("cats/a.mp4", root="/data")`` -> ``"/data/cats/a.mp4"``;
        ``safe_uri("../etc/passwd", root="/data")`` -> UnsafePathError.
    """
    scheme = _allowed_scheme(path)
    if root is not None:
        _allowed_scheme(root)
    if scheme in REMOTE_SCHEMES:
        return _safe_remote(path, root)
    return _safe_local(path, scheme, root)


def _allowed_scheme(path: str) -> str:
    scheme = scheme_of(path)
    if scheme not in ALLOWED_SCHEMES:
        allowed = ", ".join(s or "(local path)" for s in ALLOWED_SCHEMES)
        raise UnsafePathError(f"{path}: scheme {scheme!r} is not allowed; allowed: {allowed}")
    return scheme


def _local_part(path: str) -> str:
    return path[len("file://") :] if scheme_of(path) == "file" else path


def _safe_local(path: str, scheme: str, root: str | None) -> str:
    local = _local_part(path)
    if root is not None and scheme_of(root) in REMOTE_SCHEMES:
        raise UnsafePathError(f"{path}: a local path is outside the dataset root {root}")
    if root is None and os.path.isabs(local):
        if ".." in Path(local).parts:
            raise UnsafePathError(f"{path}: '..' in a path is not allowed; give --root to allow it")
        full = os.path.normpath(local)
    else:
        # os.path.abspath only reads the current folder's name: no file is touched.
        base = os.path.abspath(_local_part(root)) if root is not None else os.getcwd()
        full = os.path.normpath(os.path.join(base, local))
        if os.path.commonpath([base, full]) != base:
            raise UnsafePathError(f"{path}: escapes the dataset root {base}")
    return f"file://{full}" if scheme == "file" else full


def _safe_remote(uri: str, root: str | None) -> str:
    scheme, rest = uri.split("://", 1)
    if ".." in rest.split("/"):
        raise UnsafePathError(f"{uri}: '..' in a URI is not allowed")
    if root is not None:
        prefix = root.rstrip("/") + "/"
        if not (uri == root.rstrip("/") or uri.startswith(prefix)):
            raise UnsafePathError(f"{uri}: is outside the dataset root {root}")
    return f"{scheme}://{posixpath.normpath(rest)}" if rest else uri


def _filesystem(uri: str) -> tuple[Any, str, str]:
    """``(filesystem, path in it, prefix)`` with ``prefix + path`` giving back a uri."""
    import pyarrow.fs as pafs

    if scheme_of(uri) in REMOTE_SCHEMES:
        fs, fspath = pafs.FileSystem.from_uri(uri)
        trimmed = uri.rstrip("/")
        return fs, fspath, trimmed[: len(trimmed) - len(fspath.rstrip("/"))]
    prefix = "file://" if scheme_of(uri) == "file" else ""
    return pafs.LocalFileSystem(), _local_part(uri), prefix


def expand(uris: Iterable[str]) -> list[str]:
    """Files to index: each file as given, each folder's video files (recursive, sorted).

    A path that does not exist stays a candidate (it becomes a quarantined row "file not
    found", not a silent drop). Duplicates keep their first place.
    """
    import pyarrow.fs as pafs

    out: dict[str, None] = {}  # an ordered set
    for uri in uris:
        fs, fspath, prefix = _filesystem(uri)
        if fs.get_file_info(fspath).type != pafs.FileType.Directory:
            out.setdefault(uri)
            continue
        infos = fs.get_file_info(pafs.FileSelector(fspath, recursive=True))
        for info in sorted(infos, key=lambda i: i.path):
            if info.type == pafs.FileType.File and _is_video(info.path):
                out.setdefault(prefix + info.path)
    return list(out)


def _is_video(path: str) -> bool:
    return posixpath.splitext(path)[1].lower() in VIDEO_EXTENSIONS


# ------------------------------------------------------------------------------ labels

PATH_COLUMNS = ("path", "label")
KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end")


@dataclass(frozen=True)
class LabelMap:
    """Labels by key and how a file finds its key.

    ``label_id`` is the index of the label in the sorted set of all labels the source names
    (every label of the CSV, matched or not), so ids are the same for any subset indexed.
    Files are matched by path suffix (CSV ``path``: the longest entry that ends the file's
    path, on folder boundaries) or by file stem (Kinetics: ``{youtube_id}_{start:06d}_
    {end:06d}`` or ``{youtube_id}``).
    """

    by_key: dict[str, str]
    by_stem: bool = False
    names: tuple[str, ...] = ()

    def lookup(self, uri: str) -> tuple[str, int]:
        """``(label, label_id)`` of a file; ``("", -1)`` when no entry names it."""
        label = self._find(uri)
        return (label, self.names.index(label)) if label else ("", -1)

    def _find(self, uri: str) -> str:
        if self.by_stem:
            stem = posixpath.splitext(posixpath.basename(uri))[0]
            return self.by_key.get(stem, "")
        parts = uri.split("/")
        for i in range(len(parts)):  # longest suffix first: "cats/a.mp4" before "a.mp4"
            label = self.by_key.get("/".join(parts[i:]))
            if label:
                return label
        return ""


def labels_from_dirs(uris: Iterable[str]) -> LabelMap:
    """Label = the name of each file's parent folder (``kinetics/train/abseiling/x.mp4``)."""
    by_key = {u: posixpath.basename(posixpath.dirname(u)) for u in uris}
    return LabelMap(by_key, names=tuple(sorted(set(by_key.values()))))


def labels_from_csv(path: str, *, root: str | None = None) -> LabelMap:
    """Labels from a CSV with a header row.

    Args:
        path: the CSV (local or ``pyarrow.fs`` URI).
        root: the dataset root the CSV's ``path`` entries are checked against.
    Returns:
        A LabelMap (``path,label``: matched by path suffix; Kinetics: by file stem).
    Raises:
        UnsafePathError: a ``path`` entry escapes the root or has a scheme not allowed.
        ValueError: the header has neither column set.
    """
    _allowed_scheme(path)
    rows = list(csv.DictReader(io.StringIO(_read_text(path))))
    header = set(rows[0]) if rows else set()
    if set(KINETICS_COLUMNS) <= header:
        by_key = _kinetics_keys(rows)
        return LabelMap(by_key, by_stem=True, names=_names(rows))
    if set(PATH_COLUMNS) <= header:
        by_key = {_csv_path_key(r["path"], path, root): r["label"] for r in rows if r["label"]}
        return LabelMap(by_key, names=_names(rows))
    raise ValueError(
        f"{path}: header {sorted(header)} has neither {list(PATH_COLUMNS)} "
        f"nor Kinetics' {list(KINETICS_COLUMNS)} columns"
    )


def _read_text(uri: str) -> str:
    fs, fspath, _ = _filesystem(uri)
    with fs.open_input_stream(fspath) as f:
        return f.read().decode("utf-8-sig")  # Excel writes a BOM


def _names(rows: list[dict[str, str]]) -> tuple[str, ...]:
    return tuple(sorted({r["label"] for r in rows if r["label"]}))


def _kinetics_keys(rows: list[dict[str, str]]) -> dict[str, str]:
    """Both file-naming conventions of Kinetics downloads point at the row's label."""
    keys: dict[str, str] = {}
    for r in rows:
        yid = r["youtube_id"]
        start, end = int(float(r["time_start"])), int(float(r["time_end"]))
        keys[f"{yid}_{start:06d}_{end:06d}"] = r["label"]
        keys.setdefault(yid, r["label"])
    return keys


def _csv_path_key(entry: str, csv_path: str, root: str | None) -> str:
    """A CSV path entry, checked like a command-line path, as a suffix key."""
    if scheme_of(entry) or os.path.isabs(entry):
        return safe_uri(entry, root=root)
    key = posixpath.normpath(entry.replace("\\", "/"))
    if key == ".." or key.startswith("../"):
        raise UnsafePathError(f"{entry} (in {csv_path}): escapes the dataset root")
    return key


# --------------------------------------------------------------------------- the index


@dataclass
class IndexResult:
    """What :func:`index_paths` found: every row (input order) and how long it took."""

    rows: list[VideoMeta]
    elapsed_s: float = 0.0
    motion_unavailable: int = 0
    unlabeled: int = 0
    _table: pa.Table | None = field(default=None, repr=False)

    @property
    def ok(self) -> int:
        return sum(r.status == OK for r in self.rows)

    @property
    def quarantined(self) -> int:
        return len(self.rows) - self.ok

    def by_reason(self) -> Counter[str]:
        """Quarantined counts per reason, numbers folded ("only N of N frames decode")."""
        return Counter(reason_key(r.error) for r in self.rows if r.status != OK)

    def table(self) -> pa.Table:
        if self._table is None:
            self._table = to_table(self.rows)
        return self._table

    def summary(self) -> str:
        """A few lines for people: totals, then quarantined counts by reason."""
        rate = len(self.rows) / self.elapsed_s if self.elapsed_s > 0 else 0.0
        head = (
            f"indexed {len(self.rows)} files in {self.elapsed_s:.1f}s ({rate:.1f} files/s): "
            f"{self.ok} ok, {self.quarantined} quarantined"
        )
        lines = [head]
        lines += [f"  quarantined {n:>6}  {reason}" for reason, n in self.by_reason().most_common()]
        if self.unlabeled:
            lines.append(f"  without a label: {self.unlabeled}")
        if self.motion_unavailable:
            lines.append(f"  ok without motion vectors (codec): {self.motion_unavailable}")
        return "\n".join(lines)


def reason_key(reason: str) -> str:
    """A reason with its numbers folded, so the same problem groups: ``only N of N frames``."""
    return re.sub(r"\d+", "N", reason)[:120]


def index_paths(
    paths: Sequence[str],
    *,
    root: str | None = None,
    labels: str | None = None,
    label_from_dir: bool = False,
    verify: bool = False,
    motion: bool = False,
    address: str | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    progress: bool | TextIO = True,
) -> IndexResult:
    """Index files and folders into manifest rows, probing in parallel with Ray tasks.

    Args:
        paths: files or folders (folders contribute their video files, recursively); local
            paths or ``pyarrow.fs`` URIs.
        root: the dataset root every path must stay inside (default: the current folder for
            relative paths; absolute paths and URIs are their own root).
        labels: CSV file with ``path,label`` or Kinetics' ``label,youtube_id,time_start,
            time_end,split`` columns.
        label_from_dir: label = the name of the file's parent folder (``class/video.mp4``).
        verify: decode every frame; a file whose frames do not all decode is quarantined.
        motion: store the per-frame mean motion-vector magnitude (``workers.motion``).
        address: Ray address (default: a local Ray, or ``RAY_ADDRESS``).
        max_pixels: refuse streams with larger frames (None: no bound).
        progress: where the progress line goes (True: stderr, False: nowhere).
    Returns:
        An IndexResult with one row per file, in the order the files were found.
    Raises:
        UnsafePathError: a path (or a CSV entry) escapes the root or has a scheme that is not
            allowed; raised before any file is touched.
        ValueError: both ``labels`` and ``label_from_dir``, or a CSV without known columns.
    """
    if labels and label_from_dir:
        raise ValueError("use either labels (a CSV) or label_from_dir, not both")
    uris = [safe_uri(p, root=root) for p in paths]  # every check before any I/O
    if motion:
        _require_motion()
    start = time.perf_counter()
    label_map = labels_from_csv(labels, root=root) if labels else None  # refuses bad entries
    files = expand(uris)
    if label_map is None:
        label_map = labels_from_dirs(files) if label_from_dir else LabelMap({})
    options = ProbeOptions(verify=verify, motion=motion, max_pixels=max_pixels)
    assigned = [label_map.lookup(f) for f in files]
    stream = (sys.stderr if progress else None) if isinstance(progress, bool) else progress
    rows = _probe_all(files, options, assigned, address, stream)
    return IndexResult(
        rows=rows,
        elapsed_s=time.perf_counter() - start,
        motion_unavailable=sum(motion and r.status == OK and not r.motion for r in rows),
        unlabeled=sum(not r.label for r in rows) if (labels or label_from_dir) else 0,
    )


def _require_motion() -> None:
    """Fail before probing anything when motion was asked for but cannot be computed."""
    try:
        from workers.motion import mean_motion  # noqa: F401
    except ImportError as e:
        raise RuntimeError(
            f"--motion needs workers.motion.mean_motion, which is missing: {e}"
        ) from e


def _probe_all(
    uris: list[str],
    options: ProbeOptions,
    labels: list[tuple[str, int]],
    address: str | None,
    progress: TextIO | None,
) -> list[VideoMeta]:
    """Probe every uri in Ray tasks; rows come back in input order."""
    if not uris:
        return []
    import ray

    from pipelines.runtime import init_ray

    init_ray(address)
    task = ray.remote(num_cpus=1, max_retries=1)(_probe_many)
    chunks = _chunks(len(uris), int(ray.cluster_resources().get("CPU", 1)))
    bar = Progress(len(uris), progress)
    out: dict[int, list[VideoMeta]] = {}
    window = 4 * int(ray.cluster_resources().get("CPU", 1))
    for start, rows in _run_chunks(task, uris, options, labels, chunks, window):
        out[start] = rows
        bar.advance(rows)
    bar.close()
    return [row for start in sorted(out) for row in out[start]]


def _chunks(n: int, cpus: int) -> list[tuple[int, int]]:
    """Split n files into task-sized chunks: about 4 per CPU, at most 32 files each.

    Small files probe in milliseconds, so one task per file would spend more time in Ray
    than in FFmpeg; a few chunks per CPU still balance a slow file against fast ones.
    Example: n=10, cpus=4 -> 10 chunks of 1; n=1000, cpus=4 -> 32 chunks of 32 (last 8).
    """
    size = max(1, min(32, n // (4 * max(cpus, 1))))
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def _run_chunks(
    task: Any,
    uris: list[str],
    options: ProbeOptions,
    labels: list[tuple[str, int]],
    chunks: list[tuple[int, int]],
    window: int,
) -> Iterator[tuple[int, list[VideoMeta]]]:
    """Run chunks as Ray tasks, at most ``window`` at once; yield ``(start, rows)`` as each
    finishes (``ray.wait``), so progress shows and the driver never holds a million refs.

    A chunk whose worker process died (FFmpeg crashing on a hostile file, or killed for
    memory) is split into one task per file once Ray's own retry is spent; a file that
    still kills its worker becomes a quarantined row instead of failing the whole index.
    """
    import ray

    crashes = (ray.exceptions.WorkerCrashedError, ray.exceptions.OutOfMemoryError)
    todo = deque(chunks)
    pending: dict[Any, tuple[int, int]] = {}
    while todo or pending:
        while todo and len(pending) < window:
            s, e = todo.popleft()
            pending[task.remote(uris[s:e], options, labels[s:e])] = (s, e)
        done, _ = ray.wait(list(pending), num_returns=1)
        s, e = pending.pop(done[0])
        try:
            rows = ray.get(done[0])
        except crashes as err:
            if e - s > 1:
                todo.extendleft((i, i + 1) for i in reversed(range(s, e)))
                continue
            why = "out of memory" if isinstance(err, ray.exceptions.OutOfMemoryError) else "crashed"
            rows = [
                quarantined(
                    uris[s], f"probe process {why}", label=labels[s][0], label_id=labels[s][1]
                )
            ]
        yield s, rows


class Progress:
    """A one-line progress report on a stream: files done, quarantined, files/s.

    On a terminal the line is redrawn in place; elsewhere (CI logs) a line is printed
    every 10% so logs stay short.
    """

    def __init__(self, total: int, stream: TextIO | None) -> None:
        self.total, self.stream = total, stream
        self.done = self.bad = 0
        self.start = time.perf_counter()
        self.tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self._last_decile = -1

    def advance(self, rows: list[VideoMeta]) -> None:
        self.done += len(rows)
        self.bad += sum(r.status != OK for r in rows)
        decile = self.done * 10 // max(self.total, 1)
        if self.tty or decile != self._last_decile:
            self._last_decile = decile
            self._write(end="\r" if self.tty else "\n")

    def close(self) -> None:
        if self.tty:
            self._write(end="\n")

    def _write(self, end: str) -> None:
        if self.stream is None:
            return
        rate = self.done / max(time.perf_counter() - self.start, 1e-9)
        self.stream.write(
            f"probing {self.done}/{self.total} files ({self.bad} quarantined, {rate:.1f} files/s){end}"
        )
        self.stream.flush()
