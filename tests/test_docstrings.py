"""Every example in the package's docstrings runs and prints what it says."""
import doctest
import importlib

import pytest

MODULES = ["wengert", "wengert.tape", "wengert.recording", "wengert._numpy_api",
           "wengert.functions", "wengert.transforms", "wengert.display", "wengert._traces",
           "wengert.sparsity",
           "wengert.optimize", "wengert._io", "wengert.testing", "wengert.__main__"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
