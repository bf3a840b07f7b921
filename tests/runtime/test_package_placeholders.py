"""`${packages.<type>.<name>}` in a machine config resolves against a local packages folder in viam-server's layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labelsieve.errors import ConfigError
from labelsieve.runtime.config import load_config


def _config(tmp: Path, placeholder: str, version: str = "3") -> Path:
    raw = {"packages": [{"name": "det", "package": "org-1/det", "type": "ml_model", "version": version}],
           "components": [{"name": "c", "api": "rdk:component:camera", "model": "a:b:c",
                           "attributes": {"model_path": f"{placeholder}/model.onnx", "other": placeholder}}]}
    (tmp / "machine.json").write_text(json.dumps(raw))
    return tmp / "machine.json"


def test_packages_resolve_in_viam_servers_layout(tmp_path: Path) -> None:
    folder = tmp_path / "packages" / "data" / "ml_model" / "org-1-det-3"
    folder.mkdir(parents=True)
    for placeholder in ("${packages.ml_model.det}", "${packages.det}"):
        (resource,) = load_config(_config(tmp_path, placeholder), packages_dir=tmp_path / "packages").resources
        assert resource.attributes["model_path"] == f"{folder}/model.onnx" and resource.attributes["other"] == str(folder)
    (resource,) = load_config(_config(tmp_path, "${packages.det}", version="latest"), packages_dir=tmp_path / "packages").resources
    assert resource.attributes["other"] == str(folder)


@pytest.mark.parametrize(("placeholder", "message"), [
    ("${packages.ml_model.det}", "package 'det' .* is not in"),
    ("${packages.module.det}", "names a module but 'det' is a ml_model"),
    ("${packages.ml_model.other}", "no package named 'other'"),
])
def test_a_missing_package_is_a_config_error(tmp_path: Path, placeholder: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(_config(tmp_path, placeholder), packages_dir=tmp_path / "packages")
