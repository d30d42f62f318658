"""The buffer plan: where each intermediate tensor of an entry point lives in the workspace.

Params, their gradients and the optimizer state each sit in one float slab laid out by
`lower`. Everything else an entry point computes lives in one workspace of
`fixed + per_example * N` bytes, allocated once per batch size by the caller: no kernel
allocates. The workspace has two regions: buffers of fixed size first, then buffers whose
size grows with N, placed at `fixed + offset * N`, so one plan is valid for every N.
Within each region, buffers whose lifetimes (first write .. last read, in step order) do
not overlap share bytes; placement is first-fit in order of definition."""
from __future__ import annotations

from dataclasses import dataclass

from .kernel import Lin

FIXED_ALIGN = 64           # bytes: a cache line
PER_EXAMPLE_ALIGN = 32     # bytes per example: offset*N stays 32-byte aligned for every N


@dataclass
class Interval:
    key: object            # what the caller allocates for (a value's storage root, a scratch)
    size: Lin              # bytes: a*N (per example) or b (fixed), never both
    start: int             # step that first writes it
    end: int               # last step that reads it (inclusive)
    offset: Lin = Lin()    # filled by plan(): byte offset into the workspace


@dataclass(frozen=True)
class WorkspacePlan:
    fixed: int             # bytes of the fixed region
    per_example: int       # bytes per example of the batch region

    def bytes(self, n: int) -> int:
        return self.fixed + self.per_example * n

    def __str__(self) -> str:
        return f"{self.fixed} + {self.per_example}*N bytes"


def _round(x: int, a: int) -> int:
    return -(-x // a) * a


def _first_fit(items: list[tuple[int, int, int, int]]) -> tuple[dict[int, int], int]:
    """items: (index, size, start, end) in order of start; returns offsets and the region size."""
    placed: list[tuple[int, int, int]] = []      # (offset, size, end)
    offsets, top = {}, 0
    for idx, size, start, end in items:
        placed = [p for p in placed if p[2] >= start]          # free what died before `start`
        off = 0
        for p_off, p_size, _ in sorted(placed):
            if off + size <= p_off:
                break
            off = max(off, p_off + p_size)
        placed.append((off, size, end))
        offsets[idx] = off
        top = max(top, off + size)
    return offsets, top


def plan(intervals: list[Interval]) -> WorkspacePlan:
    """Assign `offset` to every interval; returns the workspace size."""
    fixed, batch = [], []
    for i, iv in enumerate(intervals):
        if iv.size.a and iv.size.b:
            raise ValueError(f"buffer size {iv.size} mixes fixed and per-example bytes")
        if iv.size.a:
            batch.append((i, _round(iv.size.a, PER_EXAMPLE_ALIGN), iv.start, iv.end))
        else:
            fixed.append((i, _round(max(iv.size.b, 1), FIXED_ALIGN), iv.start, iv.end))
    order = lambda items: sorted(items, key=lambda t: (t[2], t[0]))
    f_off, f_top = _first_fit(order(fixed))
    b_off, b_top = _first_fit(order(batch))
    for i, off in f_off.items():
        intervals[i].offset = Lin(0, off)
    for i, off in b_off.items():
        intervals[i].offset = Lin(off, f_top)
    return WorkspacePlan(f_top, b_top)


def totals(memory: dict, batch_sizes=(1, 32)) -> dict[int, int]:
    """Bytes a model needs (slabs + workspace) at each batch size, from a manifest's memory dict."""
    slabs = memory["params_bytes"] + memory["grads_bytes"] + memory["optimizer_bytes"] + memory.get("state_bytes", 0)
    ws = memory["workspace"]
    return {n: slabs + ws["fixed_bytes"] + ws["per_example_bytes"] * n for n in batch_sizes}
