"""Train a retrieval-head model organism (``retmask_interp.organism.train``; its docstring lists the files written).

python scripts/train_organism.py --config retmask_interp/organism/configs/concentrated.json --out DIR --seed 0
python scripts/train_organism.py --config ... --out /tmp/o --tiny          # CPU smoke test, seconds
"""

from __future__ import annotations

import logging
import sys

from retmask_interp.core.io import InputError
from retmask_interp.organism.train import main
from retmask_interp.workflows.organism_check import training_check

if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S", stream=sys.stdout
    )
    try:
        sys.exit(main(check=training_check))
    except InputError as err:
        sys.exit(f"train_organism: {err}")
