"""Viam's `.capture` files: the format (`format.py`), shared by the runtime's data manager (writer), sync and the
dataset builder (readers). Neither of those imports the other; both import this."""

from labelsieve.capture.format import (
    CaptureFile,
    CorruptCaptureError,
    capture_dir_for,
    capture_file_name,
    decode_provenance,
    encode_provenance,
    read_capture,
    write_capture,
)

__all__ = ["CaptureFile", "CorruptCaptureError", "capture_dir_for", "capture_file_name", "decode_provenance",
           "encode_provenance", "read_capture", "write_capture"]
