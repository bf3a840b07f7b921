"""A seeded train/val split that keeps one scene on one side.

Consecutive frames of a camera are nearly the same picture; split frame by frame, val would hold near-copies of train
frames and its score would measure memory, not generalization. So frames are first joined into groups, and whole groups
are split:

- consecutive frames of one stream less than `gap_s` apart whose hashes differ in at most `SCENE_BITS` bits (one scene,
  slowly changing), and
- any two frames whose hashes differ in at most `DUPLICATE_BITS` bits (the same view captured again later).

Groups are ordered by a seeded hash of their content and val takes groups until it holds `val_fraction` of the frames: the
same seed and frames give the same split, and a frame keeps its side when later versions add other frames.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import defaultdict
from collections.abc import Sequence

from labelsieve.dataset.frames import CapturedFrame

__all__ = ["DUPLICATE_BITS", "SCENE_BITS", "group_frames", "split_groups"]

SCENE_BITS = 20
DUPLICATE_BITS = 4
_BANDS = ((0, 13), (13, 26), (26, 39), (39, 52), (52, 64))  # 5 bands: <= 4 differing bits leave one band equal


class _Groups:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def join(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)


def _distance(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def group_frames(frames: Sequence[CapturedFrame], gap_s: float) -> list[list[int]]:
    """Indices of `frames`, joined into scenes and near-duplicates."""
    groups = _Groups(len(frames))
    by_stream: dict[str, list[int]] = defaultdict(list)
    for i, frame in enumerate(frames):
        by_stream[frame.stream].append(i)
    for members in by_stream.values():
        members.sort(key=lambda i: frames[i].time)
        for a, b in itertools.pairwise(members):
            if frames[b].time - frames[a].time <= gap_s and _distance(frames[a].dhash, frames[b].dhash) <= SCENE_BITS:
                groups.join(a, b)
    first: dict[int, int] = {}  # identical hashes (a static camera) join at once; only distinct ones are compared
    for i, frame in enumerate(frames):
        groups.join(i, first.setdefault(frame.dhash, i))
    for lo, hi in _BANDS:  # near-duplicates anywhere share at least one band exactly: compare only within a band's bucket
        buckets: dict[int, list[int]] = defaultdict(list)
        for h, i in first.items():
            buckets[(h >> lo) & ((1 << (hi - lo)) - 1)].append(i)
        for members in buckets.values():
            for x, a in enumerate(members):
                for b in members[x + 1 :]:
                    if groups.find(a) != groups.find(b) and _distance(frames[a].dhash, frames[b].dhash) <= DUPLICATE_BITS:
                        groups.join(a, b)
    joined: dict[int, list[int]] = defaultdict(list)
    for i in range(len(frames)):
        joined[groups.find(i)].append(i)
    return list(joined.values())


def split_groups(frames: Sequence[CapturedFrame], groups: list[list[int]], val_fraction: float, seed: int) -> list[str]:
    """"train" or "val" for each frame. With two groups or more, each side gets at least one when val_fraction > 0."""
    def rank(group: list[int]) -> str:
        return hashlib.sha256(f"{seed}:{min(frames[i].digest for i in group)}".encode()).hexdigest()

    sides = ["train"] * len(frames)
    want = val_fraction * len(frames)
    taken = 0
    ordered = sorted(groups, key=rank)
    for group in ordered[:-1] if len(ordered) > 1 else []:  # the last group always trains
        if taken >= want or (taken and taken + len(group) > want + len(group) / 2):
            continue
        for i in group:
            sides[i] = "val"
        taken += len(group)
    return sides
