"""The studies' tests recompute committed results from their files: no model hub, no network."""

from __future__ import annotations

import os
import warnings

warnings.filterwarnings("ignore", category=FutureWarning)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
