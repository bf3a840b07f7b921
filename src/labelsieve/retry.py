"""The one backoff rule for retries: a module's restarts, a remote model's retried requests."""

from __future__ import annotations

__all__ = ["backoff"]


def backoff(attempt: int, cap: float, first: float = 0.25) -> float:
    """Seconds to wait before retry `attempt` (0 for the first): `first`, doubling each time, at most `cap`."""
    return min(cap, first * 2.0**attempt)
