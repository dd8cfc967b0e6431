"""Opening media safely: local paths and ``pyarrow.fs`` filesystems, with FFmpeg fenced in.

FFmpeg may only read the file it was given: the protocol whitelist allows local files
(and the in-memory reads PyAV does for ``pyarrow.fs`` streams), and the demuxers are limited
to real containers, so a crafted playlist (HLS, concat, ...) inside a "video" cannot make
FFmpeg open other files or the network.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import av

from workers.errors import CorruptMediaError

REMOTE_SCHEMES = ("s3", "gs", "gcs", "hdfs", "abfs", "az")
ALLOWED_SCHEMES = ("", "file", *REMOTE_SCHEMES)
PROTOCOL_WHITELIST = "file,pipe"
# Demuxers of containers that hold media, not references to other media.
FORMAT_WHITELIST = (
    "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpeg,mpegts,mpegvideo,h264,hevc,"
    "m4v,flv,ogg,wav,mp3,aac,flac,ivf,obu,av1,mjpeg,rawvideo,asf,nut,mxf,gif,image2pipe"
)


def scheme_of(uri: str) -> str:
    scheme = urlparse(uri).scheme
    return "" if len(scheme) == 1 else scheme  # "C:\\..." is a path, not a scheme


def open_container(uri: str, **options: Any) -> av.container.InputContainer:
    """Open ``uri`` for demuxing with PyAV.

    Args:
        uri: a local path, ``file://`` URI or a ``pyarrow.fs`` URI.
        options: extra FFmpeg format options.
    Raises:
        CorruptMediaError: the file is missing or FFmpeg cannot demux it.
        ValueError: the scheme is not allowed.
    """
    scheme = scheme_of(uri)
    if scheme not in ALLOWED_SCHEMES:
        raise ValueError(f"{uri}: scheme {scheme!r} is not allowed; allowed: {ALLOWED_SCHEMES}")
    opts = {"protocol_whitelist": PROTOCOL_WHITELIST, "format_whitelist": FORMAT_WHITELIST}
    opts.update({k: str(v) for k, v in options.items()})
    try:
        if scheme in REMOTE_SCHEMES:
            import pyarrow.fs as pafs

            fs, path = pafs.FileSystem.from_uri(uri)
            return av.open(fs.open_input_file(path), options=opts)
        path = urlparse(uri).path if scheme == "file" else uri
        return av.open(path, options=opts)
    except FileNotFoundError as e:
        raise CorruptMediaError(uri, "file not found") from e
    except (av.FFmpegError, OSError) as e:
        raise CorruptMediaError(uri, _reason(e)) from e


def _reason(e: Exception) -> str:
    """FFmpeg's words for the failure, without the repeated file name."""
    msg = getattr(e, "strerror", None) or str(e)
    return str(msg).split(": '", 1)[0].strip() or type(e).__name__
