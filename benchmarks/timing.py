"""Timing for the benchmarks: one clock (CUDA-synchronised, median over repeats, peak GPU memory) and the
interleaved rounds every variant of a comparison is timed in (the project's rule: at least five, interleaved, in one
call). ``gpu_detect.py``, ``masking_sweep.py`` and ``cpu_detect.py`` use them."""

from __future__ import annotations

import statistics
import time

import torch


def log(msg: str) -> None:
    print(msg, flush=True)


def sync(device: torch.device | str | None = None) -> None:
    """Wait for the GPU's queued work (``device``: that one; ``None``: the current one, if there is a GPU)."""
    device = torch.device(device) if device is not None else None
    if (device is None and torch.cuda.is_available()) or (device is not None and device.type == "cuda"):
        torch.cuda.synchronize(device)


class Clock:
    """Wall seconds of a call on ``device``, the GPU's queued work included."""

    def __init__(self, device):
        self.cuda = torch.device(device).type == "cuda"

    def sync(self):
        if self.cuda:
            sync()

    def run(self, fn, repeats=1):
        """Median seconds over ``repeats`` and the peak GPU memory (GiB) of the last run."""
        times, out = [], None
        for _ in range(repeats):
            if self.cuda:
                torch.cuda.reset_peak_memory_stats()
            self.sync()
            t0 = time.perf_counter()
            out = fn()
            self.sync()
            times.append(time.perf_counter() - t0)
        peak = torch.cuda.max_memory_allocated() / 2**30 if self.cuda else float("nan")
        return statistics.median(times), peak, out


def interleaved(variants, repeats, clock, label):
    """Time every variant ``repeats`` times in rounds (A B C ... A B C ...); a variant that raises is dropped (its
    error recorded). Returns {name: {"times": [...], "median", "min", "max", "spread"}} and the last outputs."""
    import traceback

    times = {name: [] for name in variants}
    outs, errors = {}, {}
    for r in range(repeats):
        for name, fn in variants.items():
            if name in errors:
                continue
            try:
                t, _, out = clock.run(fn, 1)
            except Exception as err:  # noqa: BLE001 - one broken variant must not end the run
                errors[name] = f"{type(err).__name__}: {err}"
                log(f"[{label}] {name} failed:\n{traceback.format_exc()}")
                continue
            times[name].append(t)
            outs[name] = out
        log(
            f"[{label}] round {r + 1}/{repeats}: "
            + ", ".join(f"{k} {v[-1]:.3f}" for k, v in times.items() if v)
        )
    stats = {}
    for name, ts in times.items():
        if not ts:
            stats[name] = dict(error=errors.get(name))
            continue
        med = statistics.median(ts)
        stats[name] = dict(times=ts, median=med, min=min(ts), max=max(ts), spread=(max(ts) - min(ts)) / med)
    return stats, outs
