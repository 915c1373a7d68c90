"""Notebook runs (nbmake): one retry for a notebook whose kernel stops answering.

Once, in a fresh clone, nbclient waited forever on an idle kernel after a notebook's cells had run (the same
notebooks then passed in 2 minutes). A notebook takes at most about a minute here, so a hang is cut at the nbmake
timeout (pyproject) and the notebook is run once more; a notebook that fails twice fails the run.
"""

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if str(item.fspath).endswith(".ipynb"):
            item.add_marker(pytest.mark.flaky(reruns=1))
