"""Errors of per-file media problems.

Everything a single file can do wrong raises :class:`CorruptMediaError` (or a subclass)
naming the file and the reason. The skip policy of the pipeline catches exactly these,
counts them and quarantines the video; any other exception is a bug and propagates.
"""

from __future__ import annotations


class CorruptMediaError(Exception):
    """A media file cannot be read as asked.

    Args:
        uri: the file, as the manifest names it.
        reason: what is wrong, in words a person can act on.
    """

    kind = "corrupt"

    def __init__(self, uri: str, reason: str) -> None:
        super().__init__(f"{uri}: {reason}")
        self.uri = uri
        self.reason = reason

    def __reduce__(self):  # keep uri/reason across Ray's pickling
        return (type(self), (self.uri, self.reason))


class UnsupportedCodecError(CorruptMediaError):
    """The backend has no decoder (or no motion-vector export) for this codec."""

    kind = "unsupported_codec"


class NoAudioError(CorruptMediaError):
    """Audio was asked of a file without an audio stream (reader policy ``no_audio="error"``)."""

    kind = "no_audio"


class TooManyPixelsError(CorruptMediaError):
    """The stream declares more pixels per frame than the configured bound."""

    kind = "too_many_pixels"


class DecodeTimeoutError(CorruptMediaError):
    """A decode did not finish within the per-sample watchdog timeout."""

    kind = "timeout"


class UnsafePathError(ValueError):
    """A path escapes the dataset root or uses a scheme that is not allowed.

    Raised before any I/O, so it is a ValueError (a bad argument), not a media error.
    """
