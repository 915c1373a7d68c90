"""RetMask on SmolLM2-135M-Instruct (issue 13), from the prompt set to the report, as one resumable command:
``retmask study retmask`` (this wrapper passes its arguments on)::

    python studies/smollm2_retmask/smollm2_retmask.py --heads studies/smollm2_retmask/heads_2026-11-28.json \\
        --out runs/smollm2_retmask --report-dir studies/smollm2_retmask --device cuda

``--preset tiny`` is the CPU proof (16 prompts, 32 new tokens, one lr, 2 seeds, lengths 512/1024, 3 examples per
cell); ``--preset full`` (default) is the issue's protocol. Any option given overrides the preset. Stages and
their files: ``retmask_interp/workflows/studies/retmask/``; GPU staging: studies/smollm2_retmask/RUNBOOK.md.
A finished stage is skipped; a stage whose settings changed is refused with the setting's name.
"""

import sys

from retmask_interp.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["study", "retmask", *sys.argv[1:]]))
