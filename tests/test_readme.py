"""The README's Python examples run as written (in order, in one namespace)."""
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.skipif(not README.exists(), reason="README.md is not beside tests/")
def test_readme_examples_run(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)          # tape.save("f.wgt") writes here
    namespace = {}
    exec(compile("import numpy as np\nimport wengert as wg\n" + "\n".join(blocks),
                 str(README), "exec"), namespace)
    assert (tmp_path / "f.wgt").exists()
    assert "v[1]  = log(v[-1])" in capsys.readouterr().out
