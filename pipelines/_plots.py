"""Matplotlib helpers shared by the run report and the benchmark charts.

Always the Agg backend: reports are written on headless cluster nodes, and a figure is only
ever turned into PNG bytes (embedded as base64 or written to a file), never shown.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np


def figure(width: float = 7.0, height: float = 3.2, ncols: int = 1, nrows: int = 1) -> tuple[Any, Any]:
    """A new (fig, axes) pair on the Agg backend (axes squeezed as ``plt.subplots`` does)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), squeeze=True)
    return fig, axes


def png_bytes(fig: Any, dpi: int = 110) -> bytes:
    """Render ``fig`` to PNG bytes and close it (figures are not kept alive)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...``: an image an HTML page carries inside itself."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` points (shorter at the start, so the length is kept).

    Example: [2, 4, 6, 8], window 2 -> [2, 3, 5, 7].
    """
    values = np.asarray(values, dtype=np.float64)
    if window <= 1 or values.size == 0:
        return values
    csum = np.cumsum(np.r_[0.0, values])
    hi = np.arange(1, values.size + 1)
    lo = np.maximum(hi - window, 0)
    return (csum[hi] - csum[lo]) / (hi - lo)
