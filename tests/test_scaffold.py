"""`incbench new-method`: the template is a valid method that passes the contract."""

import pytest

from incbench.config import ConfigError
from incbench.method import get
from incbench.protocol import run_protocol
from incbench.scaffold import new_method
from tests.conftest import small_setup


def test_template_is_a_working_method(small_project, tmp_path):
    import shutil

    root = tmp_path / "p"
    shutil.copytree(small_project, root)
    path = new_method("my_method", root)
    assert path == root / "methods" / "my_method.py"
    spec = get("my_method", root)
    assert spec.version == "1" and spec.description.startswith("my_method:")
    result = run_protocol(*small_setup(root, "my_method"))
    assert result.summary["status"] == "ok"


@pytest.mark.parametrize("name", ["My-Method", "1x", "fine tune"])
def test_bad_names(tmp_path, name):
    (tmp_path / "methods").mkdir()
    with pytest.raises(ConfigError, match="use lower-case letters"):
        new_method(name, tmp_path)


def test_existing_file_is_not_overwritten(tmp_path):
    (tmp_path / "methods").mkdir()
    (tmp_path / "methods" / "ewc.py").write_text("keep")
    with pytest.raises(ConfigError, match="already exists"):
        new_method("ewc", tmp_path)
    assert (tmp_path / "methods" / "ewc.py").read_text() == "keep"
