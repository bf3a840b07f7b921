"""What the embedded runtime adds to a call: GetImages of a 640x480 JPEG, measured side by side in one run.

    direct      client -> module socket                     (no runtime)
    parent      client -> runtime (unix socket) -> module   (one hop: what a dependent module pays)
    tcp         RobotClient over TCP -> runtime -> module   (one hop: what an SDK client pays)

Goal: the runtime adds at most 1 ms p50 per hop. Usage: python bench/runtime_overhead.py [--calls 500]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
from grpclib.client import Channel
from PIL import Image
from viam.components.camera import Camera
from viam.components.camera.client import CameraClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support import Machine, camera, connect, module


async def timed(camera: Camera, calls: int) -> list[float]:
    for _ in range(20):  # warm up connections and caches
        await camera.get_images()
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        await camera.get_images()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


async def measure(address: str, module_socket: str, parent_socket: str, calls: int, rounds: int) -> dict[str, list[float]]:
    direct, parent = Channel(path=module_socket), Channel(path=parent_socket)
    robot = await connect(address)
    cameras = {"direct": CameraClient("cam", direct), "parent": CameraClient("cam", parent), "tcp": Camera.from_robot(robot, "cam")}
    results: dict[str, list[float]] = {k: [] for k in cameras}
    try:
        for _ in range(rounds):  # interleave paths so machine noise hits all of them alike
            for name, camera in cameras.items():
                results[name] += await timed(camera, calls // rounds)
    finally:
        await robot.close()
        direct.close()
        parent.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        frames = Path(tmp) / "frames"
        frames.mkdir()
        rng = np.random.default_rng(0)  # a textured frame compresses like a camera's (~50 KB), not like a flat colour
        noise = rng.integers(0, 255, (480 // 8, 640 // 8, 3), dtype=np.uint8)
        Image.fromarray(noise).resize((640, 480), Image.BILINEAR).save(frames / "frame.jpg", quality=90)
        config = {"modules": [module("media-camera")], "components": [camera("cam", source=str(frames))]}
        with Machine(config, Path(tmp), args=("--no-watch", "--log-level", "warning")) as machine:
            module_socket = next(a for a in psutil.Process(machine.module_pid("media_camera/main.py")).cmdline()
                                 if a.endswith(".sock"))
            parent_socket = module_socket.replace(".sock", ".parent.sock")
            size = (frames / "frame.jpg").stat().st_size
            results = asyncio.run(measure(machine.address, module_socket, parent_socket, args.calls, args.rounds))

    def pct(values: list[float], q: float) -> float:
        return float(np.percentile(values, q))

    base = statistics.median(results["direct"])
    print(f"GetImages, 640x480 JPEG ({size / 1000:.0f} KB), {args.calls} calls per path, {psutil.cpu_count()} cores")
    print(f"{'path':<8}{'p50 ms':>9}{'p95 ms':>9}{'x direct':>10}{'added p50 ms':>14}")
    for name, values in results.items():
        p50 = statistics.median(values)
        print(f"{name:<8}{p50:>9.3f}{pct(values, 95):>9.3f}{p50 / base:>10.2f}{p50 - base:>14.3f}")
    worst = max(statistics.median(results[k]) for k in ("parent", "tcp")) - base
    print(f"runtime adds {worst:.3f} ms p50 per hop (goal <= 1 ms): {'OK' if worst <= 1.0 else 'OVER GOAL'}")


if __name__ == "__main__":
    main()
