"""The DVC wiring as committed: a fresh clone pulls the data; a broken remote gives one clear error."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from gtalign.data import RAW_FILES, DataPullError, load_raw, pull_data

SHARED = REPO_ROOT.parent / "shared"


def fresh_clone(parent: Path, *, with_shared: bool) -> Path:
    """A new git repo holding only the committed DVC wiring (.dvc/config, data.dvc), under `parent/main`.

    With `with_shared`, `parent/shared` links to the real shared folder, so the relative remote URL in .dvc/config
    (../../shared/gtalign-data/dvc-store) resolves exactly as it does for a real checkout.
    """
    repo = parent / "main"
    repo.mkdir(parents=True)
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True, env=env)
    (repo / ".dvc").mkdir()
    shutil.copy(REPO_ROOT / ".dvc" / "config", repo / ".dvc" / "config")
    shutil.copy(REPO_ROOT / "data.dvc", repo / "data.dvc")
    if with_shared:
        (parent / "shared").symlink_to(SHARED, target_is_directory=True)
    return repo


def test_fresh_clone_pulls_data(tmp_path: Path) -> None:
    assert (SHARED / "gtalign-data" / "dvc-store").is_dir(), f"the shared DVC store is missing under {SHARED}"
    repo = fresh_clone(tmp_path, with_shared=True)
    data = pull_data(repo)
    assert sorted(p.relative_to(data).as_posix() for p in data.rglob("*.parquet")) == sorted(
        f.relpath for f in RAW_FILES
    )
    assert len(load_raw(data)) == 11624


def test_missing_remote_directory_is_explained(tmp_path: Path) -> None:
    repo = fresh_clone(tmp_path, with_shared=False)
    with pytest.raises(DataPullError) as err:
        pull_data(repo)
    message = str(err.value)
    assert "`dvc pull` failed" in message
    assert f"points to {tmp_path / 'shared' / 'gtalign-data' / 'dvc-store'}, which does not exist" in message
    assert "dvc remote modify --local gtalign url" in message and "make data" in message


def test_local_override_of_remote(tmp_path: Path) -> None:
    repo = fresh_clone(tmp_path, with_shared=False)
    store = SHARED / "gtalign-data" / "dvc-store"
    (repo / ".dvc" / "config.local").write_text(f"['remote \"gtalign\"']\n    url = {store}\n")
    assert (pull_data(repo) / "wildguard" / "train.parquet").is_file()


def test_no_remote_configured(tmp_path: Path) -> None:
    repo = fresh_clone(tmp_path, with_shared=False)
    (repo / ".dvc" / "config").write_text("")
    with pytest.raises(DataPullError, match="No DVC remote is configured"):
        pull_data(repo)


def test_unwired_repo(tmp_path: Path) -> None:
    with pytest.raises(DataPullError, match="dvc init"):
        pull_data(tmp_path)
