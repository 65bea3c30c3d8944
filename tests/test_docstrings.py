"""Every runnable example in fewjax's docstrings runs and prints what the docstring says (`doctest`)."""
import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import fewjax

MODULES = sorted(m.name for m in pkgutil.walk_packages(fewjax.__path__, "fewjax.")
                 if ">>>" in Path(importlib.util.find_spec(m.name).origin).read_text())

SLOW = {"fewjax.models.resnet12", "fewjax.models.bert", "fewjax.models.conv4", "fewjax.data.augment",
        "fewjax.text.augment", "fewjax.kernels.setfit"}
"""Examples that compile whole networks: 10-80 s each on a 2-core CPU."""


def test_the_examples_are_found():
    assert len(MODULES) > 30 and "fewjax.kernels.protonet" in MODULES and SLOW <= set(MODULES)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in MODULES])
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (printed above)"
