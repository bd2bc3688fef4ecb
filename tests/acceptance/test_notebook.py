"""The quick-start notebook runs top to bottom and shows what it says it shows."""

from __future__ import annotations

import os

import pytest
from helpers import REPO

NOTEBOOK = REPO / "examples" / "quickstart.ipynb"


@pytest.mark.slow
def test_quickstart_notebook_runs(tmp_path, toy_cache, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # the kernel is a child process: it finds the package (and the toy cache) from the env
    root = str(NOTEBOOK.parent.parent)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    )
    client = nbclient.NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    # the summary of the grid it ran, and one image: the ASR curve
    assert "EPL along aligned" in text
    assert "points: 9/9" in text
    assert any("image/png" in o.get("data", {}) for o in outputs)
    # the last cell's EPL table has the run's row
    last = nb.cells[-1].outputs[-1]["data"]["text/plain"]
    assert "aligned" in last
