"""The SmolLM2 RetMask study's final runs side by side on one GPU, inside one call's time (issue 13's last session).

Starts ``smollm2_retmask.py --only CONDITION:SEED`` processes on the shared run directory, ``--parallel`` at a time
(two fit an H200 at evaluation batch 100; three ran out of memory), and starts a run only when the call has the time
it takes (``--alone`` / ``--shared`` seconds, measured: about 210 s alone, 285 s two at a time), so that no run is
cut by the end of the call; a run still going at ``--seconds`` is stopped (it resumes, trained again, next call).
Runs already evaluated are skipped. Logs: ``OUT/logs/CONDITION_SEED.log``. The report stage is left to a run of
``smollm2_retmask.py`` without ``--only``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from retmask_interp.workflows.studies.retmask import run_name

STUDY = [
    sys.executable,
    "studies/smollm2_retmask/smollm2_retmask.py",
    "--heads",
    "studies/smollm2_retmask/heads_2026-11-28.json",
    "--conditions",
    "retmask",
    "random",
    "--eval-batch-size",
    "100",
    "--prune-weights",
    "--until",
    "eval",
]
ALL = "retmask:0,retmask:1,retmask:2,random:0,random:1,random:2"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, required=True, help="time this call may use")
    p.add_argument("--units", default="", help=f"CONDITION:SEED list (default {ALL})")
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--alone", type=float, default=235.0, help="time a run needs alone")
    p.add_argument("--shared", type=float, default=330.0, help="time a run needs beside another")
    p.add_argument("--out", default="/root/run")
    p.add_argument("--model", default="/root/stage/SmolLM2-135M-Instruct.Q4_1.gguf")
    p.add_argument("--device", default="cuda")
    a = p.parse_args(argv)
    out = Path(a.out)
    lr = json.loads((out / "lr_choice.json").read_text())["chosen_lr"]

    def done(unit: str) -> bool:
        cond, seed = unit.split(":")
        return (out / "stages" / "eval" / f"{run_name(cond, lr, int(seed))}.json").exists()

    queue = [u for u in (a.units or ALL).split(",") if u and not done(u)]
    cmd = STUDY + ["--model", a.model, "--device", a.device, "--out", str(out)]
    (out / "logs").mkdir(exist_ok=True)
    start = time.time()

    def say(msg: str) -> None:
        print(f"{time.time() - start:6.0f}s {msg}", flush=True)

    say(f"queue {queue}, {a.parallel} at a time, {a.seconds:.0f} s")
    running: dict[str, tuple[subprocess.Popen, float]] = {}
    while queue or running:
        for unit, (proc, t) in list(running.items()):
            if proc.poll() is not None:
                say(f"{unit}: exit {proc.returncode} after {time.time() - t:.0f} s, evaluated: {done(unit)}")
                del running[unit]
        left = a.seconds - (time.time() - start)
        if left < 5:
            for unit, (proc, t) in running.items():
                proc.terminate()
                say(f"{unit}: stopped after {time.time() - t:.0f} s (resumes next call)")
            for proc, _ in running.values():
                proc.wait(30)
            break
        need = a.shared if running else a.alone
        if queue and len(running) < a.parallel and left > need:
            unit = queue.pop(0)
            log = open(out / "logs" / f"{unit.replace(':', '_')}.log", "a")  # noqa: SIM115 - the child's log
            running[unit] = (
                subprocess.Popen(cmd + ["--only", unit], stdout=log, stderr=subprocess.STDOUT),
                time.time(),
            )
            say(f"{unit}: started ({left:.0f} s left)")
            continue
        if queue and not running:
            say(f"not enough time for {queue[0]} ({left:.0f} s left)")
            break
        time.sleep(2)
    say(f"left for the next call: {queue}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
