"""CPU time and memory of a process tree, read from ``/proc`` (Linux).

The benchmark runs each system in its own child process (a *runner*); everything that system
starts (DataLoader workers, Ray's GCS, raylet and actors, pool processes) descends from it.
A :class:`TreeSampler` thread in the driver, outside every measured tree, samples each
runner's tree every ``interval_s``: per process its CPU seconds (user + system) and its PSS
(proportional set size: shared pages are split among the processes that map them, so summing
PSS over a tree does not count forked copy-on-write pages or Ray's shared-memory object
store once per process, as summing RSS would).

CPU over a window [t0, t1] is the per-process CPU interpolated at t0 and t1, summed; a process
that exits inside the window keeps the CPU of its last sample (at most ``interval_s`` of its
work is lost).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Self

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process we can see."""
    out: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:  # exited while we looked
            continue
        # The command name (field 2) may hold spaces and parentheses: split after the last ")".
        out[int(name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def tree(root: int) -> list[int]:
    """``root`` and all its descendants that are alive now."""
    children: dict[int, list[int]] = defaultdict(list)
    for pid, ppid in _parents().items():
        children[ppid].append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of one process (its own threads), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After the command: state(0) ppid(1) ... utime(11) stime(12).
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def pss_bytes(pid: int) -> int | None:
    """Proportional set size of one process, None if it is gone or unreadable."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def rss_bytes(pid: int) -> int | None:
    """Resident set size of one process (shared pages counted in full), None if it is gone."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except OSError:
        return None


def process_name(pid: int) -> str:
    """A short name for a process: Ray's process title (``ray::MapWorker(...)``), else the
    Python script or the executable it runs."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return "?"
    if not args:
        return "?"
    if not args[0].startswith("/") and " " in args[0]:  # a title set by the process itself
        name = args[0].split(" ")[0]
    else:
        script = next((a for a in args[1:] if a.endswith(".py")), None)
        name = os.path.basename(script or args[0])
    # One name per role: an actor's title gains ".method" while it runs one; the dashboard
    # runs as a head process plus one process per module.
    name = re.sub(r"\)\.\w+$", ")", name)
    if name.startswith("ray-dashboard") or name == "dashboard.py":
        return "dashboard"
    return "ray worker (starting)" if name == "default_worker.py" else name


@dataclass
class Series:
    """One process's samples: times, cumulative CPU seconds."""

    t: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def at(self, when: float) -> float:
        """CPU seconds at ``when``: linear between samples, 0 before the first (the process
        was not yet born or not yet seen), the last value after the last (it exited)."""
        if not self.t or when < self.t[0]:
            return 0.0
        for i in range(1, len(self.t)):
            if when <= self.t[i]:
                f = (when - self.t[i - 1]) / max(self.t[i] - self.t[i - 1], 1e-9)
                return self.cpu[i - 1] + f * (self.cpu[i] - self.cpu[i - 1])
        return self.cpu[-1]


class TreeSampler:
    """Samples the CPU and PSS of ``root``'s process tree in a background thread.

    Use: ``with TreeSampler(pid) as s: ...`` then ``s.cpu_between(t0, t1)`` and
    ``s.peak_memory(t0, t1)`` with ``time.monotonic()`` times (shared by all processes).
    """

    def __init__(self, root: int, interval_s: float = 0.25) -> None:
        self.root, self.interval_s = root, interval_s
        self.series: dict[int, Series] = defaultdict(Series)
        self.names: dict[int, str] = {}
        self.memory: list[tuple[float, int, int]] = []  # (time, PSS, RSS) summed over the tree
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-sampler", daemon=True)

    def __enter__(self) -> Self:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def sample(self) -> None:
        """Read every process of the tree once."""
        pss = rss = 0
        for pid in tree(self.root):
            now, cpu = time.monotonic(), cpu_seconds(pid)
            if cpu is None:
                continue
            # Read every time: a Ray worker takes its actor's title only once it hosts one.
            name = "driver" if pid == self.root else process_name(pid)
            if name != "?" or pid not in self.names:  # "?": it exited meanwhile
                self.names[pid] = name
            s = self.series[pid]
            s.t.append(now)
            s.cpu.append(cpu)
            pss += pss_bytes(pid) or 0
            rss += rss_bytes(pid) or 0
        self.memory.append((time.monotonic(), pss, rss))

    def cpu_between(self, t0: float, t1: float) -> float:
        """CPU seconds the tree spent in [t0, t1]."""
        return sum(max(s.at(t1) - s.at(t0), 0.0) for s in self.series.values())

    def cpu_by_name(self, t0: float, t1: float) -> dict[str, float]:
        """CPU seconds in [t0, t1] per process name (processes of one name summed)."""
        out: dict[str, float] = defaultdict(float)
        for pid, s in self.series.items():
            out[self.names.get(pid, "?")] += max(s.at(t1) - s.at(t0), 0.0)
        return dict(out)

    def peak_memory(self, t0: float = float("-inf"), t1: float = float("inf")) -> tuple[int, int]:
        """The largest tree PSS and tree RSS sampled in [t0, t1] (bytes). A window shorter
        than the sampling interval holds no sample: then the samples on either side of it."""
        inside = [(p, r) for t, p, r in self.memory if t0 <= t <= t1]
        if not inside:
            before = [(t, p, r) for t, p, r in self.memory if t < t0][-1:]
            after = [(t, p, r) for t, p, r in self.memory if t > t1][:1]
            inside = [(p, r) for _, p, r in before + after]
        return max((p for p, _ in inside), default=0), max((r for _, r in inside), default=0)
