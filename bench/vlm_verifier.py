"""VLM verifier costs: endpoint concurrency, one forward vs generate() on a SmolVLM-256M-sized model, and the cache.

    .venv/bin/python bench/vlm_verifier.py [--quick]

(a) 32 crops against a local stand-in endpoint that takes 200 ms per request: max_concurrency 8 vs 1 (goal >= 6x).
(b) The transformers backend on the HuggingFaceTB/SmolVLM-256M-Instruct architecture with random weights (cost does not
    depend on the weights): one forward vs generate() of a short answer, and encoder tile 512 / 384 / 256 px.
(c) A cache hit (goal < 1 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from support import FakeOpenAI

from labelsieve.verify import Verifier

QUESTION = "Is this person wearing glasses on their face?"


def crops(n: int, size: int = 224) -> list[Image.Image]:
    return [Image.new("RGB", (size, size), (200, i % 256, (i * 7) % 256)) for i in range(n)]


def timed(fn, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def openai_verifier(base_url: str, **attrs: object) -> Verifier:
    return Verifier.from_attributes({"base_url": base_url, "model": "fake-vlm", **attrs}, "bench")


def bench_concurrency(n: int) -> None:
    with FakeOpenAI(delay=0.2) as server:
        walls = {}
        for concurrency in (1, 8):
            batch = crops(n)
            walls[concurrency] = timed(lambda: openai_verifier(server.base_url, max_concurrency=concurrency)
                                       .verify_sync(batch, QUESTION), 1)
    print(f"(a) {n} crops, 200 ms endpoint: concurrency 1 {walls[1]:.2f} s | concurrency 8 {walls[8]:.2f} s | "
          f"speed-up {walls[1] / walls[8]:.1f}x (goal >= 6x)")


def smolvlm_256m(path: Path) -> Path:
    """The Idefics3 configuration of HuggingFaceTB/SmolVLM-256M-Instruct, random weights, a tiny tokenizer."""
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessor, Idefics3Processor

    from labelsieve.demo.tiny_vlms import CHAT_TEMPLATE, tiny_tokenizer

    tok = tiny_tokenizer(extra_special_tokens={"image_token": "<image>", "fake_image_token": "<fake_token_around_image>",
                                               "global_image_token": "<global-img>",
                                               "end_of_utterance_token": "<end_of_utterance>"})
    config = Idefics3Config(
        vision_config={"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
                           "image_size": 512, "patch_size": 16},
        text_config={"model_type": "llama", "vocab_size": 49280, "hidden_size": 576, "intermediate_size": 1536,
                         "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
                         "max_position_embeddings": 8192, "rope_theta": 100000.0, "tie_word_embeddings": True},
        image_token_id=tok.convert_tokens_to_ids("<image>"), scale_factor=4,
    )
    Idefics3ForConditionalGeneration(config).save_pretrained(path)
    Idefics3Processor(Idefics3ImageProcessor(size={"longest_edge": 512}, max_image_size={"longest_edge": 512}),
                      tok, image_seq_len=64, chat_template=CHAT_TEMPLATE).save_pretrained(path)
    return path


def bench_transformers(repeats: int, device: str) -> None:
    """Forward and generate() are timed alternately on one loaded model, so a busy machine skews both alike."""
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        path = smolvlm_256m(Path(tmp) / "smolvlm-256m")
        crop = crops(1, 640)[0]
        forward: dict[int, list[float]] = {512: [], 384: [], 256: []}
        generate: list[float] = []
        for size in forward:
            v = Verifier.from_attributes({"backend": "transformers", "model": str(path), "imgsz": size,
                                          "cache_size": 0, "device": device}, "bench")
            v.verify_sync([crop], QUESTION)  # load + warm-up
            b = v.backend.start().result()  # type: ignore[attr-defined]  # the loaded model (a LoadedVlm)
            inputs = b.processor(images=[crop], text=b._prompt(QUESTION), return_tensors="pt").to(device)
            for _ in range(repeats):
                forward[size].append(timed(lambda: v.verify_sync([crop], QUESTION), 1))
                if size == 512:
                    with torch.inference_mode():
                        generate.append(timed(lambda: b.model.generate(**inputs, max_new_tokens=4, min_new_tokens=4,
                                                                       do_sample=False), 1))
            asyncio.run(v.close())
    f = {size: statistics.median(t) for size, t in forward.items()}
    gen = statistics.median(generate)
    where = torch.cuda.get_device_name() if device == "cuda" else f"CPU x{torch.get_num_threads()} threads"
    print(f"(b) SmolVLM-256M arch, {where}: one forward @512 {f[512] * 1e3:.0f} ms | "
          f"generate(4 tokens) @512 {gen * 1e3:.0f} ms | generate/forward {gen / f[512]:.2f}x")
    print(f"    encoder tile: 512 px {f[512] * 1e3:.0f} ms | 384 px {f[384] * 1e3:.0f} ms ({f[512] / f[384]:.2f}x faster) | "
          f"256 px {f[256] * 1e3:.0f} ms ({f[512] / f[256]:.2f}x faster)")


def bench_cache(n: int) -> None:
    with FakeOpenAI() as server:
        v = openai_verifier(server.base_url)
        crop = crops(1)[0]

        async def hits() -> float:
            await v.verify([crop], QUESTION)
            started = time.perf_counter()
            for _ in range(n):
                await v.verify([crop], QUESTION)
            return (time.perf_counter() - started) / n

        per_hit = asyncio.run(hits())
    print(f"(c) cache hit, 224x224 crop: {per_hit * 1e3:.3f} ms per verify (goal < 1 ms); "
          f"endpoint calls {v.backend_calls} for {n + 1} verifies")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer crops and repeats (about a minute on 2 cores)")
    parser.add_argument("--parts", default="concurrency,cache,transformers", help="which of (a), (b), (c) to run")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="for the transformers part")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if "concurrency" in parts:
        bench_concurrency(16 if args.quick else 32)
    if "cache" in parts:
        bench_cache(200 if args.quick else 2000)
    if "transformers" in parts:
        bench_transformers(1 if args.quick else 3, args.device)


if __name__ == "__main__":
    main()
