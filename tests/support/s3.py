"""A real S3-protocol server on 127.0.0.1 (moto's server mode, as a subprocess), for sync and fleet-deploy tests.

fsspec/s3fs reach it the way a user points them at MinIO or another S3-compatible store: `AWS_ENDPOINT_URL` and keys in
the environment, so the code under test takes no test-only argument.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from s3fs import S3FileSystem

__all__ = ["S3_ENV", "s3_server"]

S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def s3_server(bucket: str = "labelsieve-test") -> Iterator[dict[str, str]]:
    """Start moto, create `bucket`, and yield the environment that points fsspec at it (also set in os.environ), plus
    `BUCKET` and the server's `PID` (a test may freeze it with SIGSTOP; it is continued before it is stopped)."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {**S3_ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    S3FileSystem.clear_instance_cache()  # fsspec reuses filesystems across calls: one made for an earlier server is stale
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        import fsspec

        fsspec.filesystem("s3", skip_instance_cache=True).mkdir(bucket)
        yield {**env, "BUCKET": bucket, "PID": str(proc.pid)}
    finally:
        S3FileSystem.clear_instance_cache()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        proc.wait(10)
