"""The head explorer in a real browser: JupyterLab under headless Chromium (Playwright drives the system chromium),
a click on a heatmap cell, and the view follows (selected head, masked answer, attention view).

Skips where Playwright, JupyterLab or /usr/bin/chromium is missing. ``RETMASK_SCREENSHOTS=DIR`` also writes the
screenshot the docs use (``docs/images/explorer.png``)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[2]
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

CELL = """\
import numpy as np
import retmask_interp as rmi
from retmask_interp.data.niah import NIAHConfig

rm = rmi.load_model("organism", device="cpu")
grid = NIAHConfig(lengths=[300], depths=[50]).build(rm.tokenizer)[:1]
m = np.zeros((6, 8)); m[4, 1], m[5, 2], m[4, 6] = 0.9, 0.8, 0.5
heads = rmi.HeadScores.from_matrix(m, model=rm.name)
rmi.explore(rm, heads, grid, max_new_tokens=8)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, timeout: float) -> None:
    end = time.time() + timeout
    while time.time() < end:
        try:
            urllib.request.urlopen(url, timeout=2)  # noqa: S310  (localhost)
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer in {timeout:.0f} s")


@pytest.mark.slow
def test_explorer_click_in_jupyterlab(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    pytest.importorskip("jupyterlab")
    pytest.importorskip("anywidget")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is absent (scripts/setup.sh installs Debian's chromium)")
    nb = {
        "cells": [
            {"cell_type": "code", "metadata": {}, "source": CELL, "outputs": [], "execution_count": None}
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (tmp_path / "explore.ipynb").write_text(json.dumps(nb))
    port, token = _free_port(), "retmask-test"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    env["JUPYTER_RUNTIME_DIR"] = str(tmp_path / "runtime")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}", "--allow-root",
         "--LabApp.expose_app_in_browser=True", "--ServerApp.disable_check_xsrf=True"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=(tmp_path / "server.log").open("w"),
    )  # fmt: skip
    try:
        _wait_http(f"http://127.0.0.1:{port}/api/status?token={token}", 90)
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1500})
            page.goto(f"http://127.0.0.1:{port}/lab/tree/explore.ipynb?token={token}")
            page.wait_for_function(
                "window.jupyterapp && document.querySelector('.jp-Notebook')", timeout=120_000
            )
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            time.sleep(3)  # the kernel starts
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            cell = page.wait_for_selector(
                '.retmask-explorer rect.head-cell[data-head="4-1"]', timeout=240_000
            )
            status = page.locator(".retmask-explorer .selected-heads")
            assert "none" in status.inner_text()
            cell.click()  # the cell of head 4-1
            page.wait_for_function(
                "document.querySelector('.retmask-explorer .selected-heads').innerText.includes('4-1')",
                timeout=120_000,
            )
            page.wait_for_selector(".retmask-explorer iframe.attention-view", timeout=60_000)
            answers = page.locator(".retmask-explorer table.answers").inner_text()
            assert "unmasked" in answers and "4-1 masked" in answers
            outlined = page.locator('.retmask-explorer rect.head-cell[data-head="4-1"]').get_attribute(
                "stroke"
            )
            assert outlined == "#ff2d2d"  # the grid marks the selected head
            shots = os.environ.get("RETMASK_SCREENSHOTS")
            if shots:
                time.sleep(3)  # the attention view draws
                page.locator(".retmask-explorer").screenshot(path=str(Path(shots) / "explorer.png"))
            browser.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(tmp_path / "runtime", ignore_errors=True)
