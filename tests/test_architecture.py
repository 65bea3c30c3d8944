"""The parts import one way (pyproject.toml's import-linter contracts), and docs/architecture.md's example method
trains, evaluates and loads after adding exactly the file and registry line the doc names."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--config", str(REPO / "pyproject.toml")], cwd=REPO, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "broken" not in result.stdout.split("Contracts:")[-1].split("\n")[0].replace("0 broken", "")


def test_the_documented_example_method_plugs_in_with_one_registry_line(image_root, tmp_path, monkeypatch):
    import fewjax
    import fewjax.methods as methods
    from fewjax.train import train_and_evaluate
    from tests.conftest import tiny_config

    doc = (REPO / "docs" / "architecture.md").read_text()
    source = re.search(r"```python\n# fewjax/methods/protonet_l1.py\n(.*?)```", doc, re.S).group(1)
    module = type(sys)("protonet_l1")
    exec(compile(source, "protonet_l1.py", "exec"), module.__dict__)
    monkeypatch.setitem(methods.METHODS, "protonet_l1", module.build)  # the registry line
    record = train_and_evaluate(tiny_config(image_root, "protonet_l1"), tmp_path, progress=False)
    assert record["method"] == "protonet_l1" and 0.0 <= record["accuracy"] <= 1.0
    run = fewjax.load(tmp_path)
    x = np.zeros((3, 28, 28, 3), np.float32) + np.arange(3)[:, None, None, None]
    assert run.predict((x, [0, 1, 2]), x).tolist() == [0, 1, 2]
