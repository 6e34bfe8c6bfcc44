"""data/rebuild_lfw.sh: fetches LFW's images and pairs.txt from two git repositories (here
local stand-ins in the same layout) and installs them as scikit-learn's cache."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fkdlib.data.formats import write_sklearn_lfw_cache
from fkdlib.data.formats.sklearn_lfw import load_sklearn_lfw_pairs
from test_formats_fixtures import face_like_image

SCRIPT = Path(__file__).resolve().parents[1] / "data" / "rebuild_lfw.sh"
pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, env=env,
                          capture_output=True, text=True).stdout.strip()


def _repo(path: Path) -> str:
    _git(path, "init", "--quiet")
    _git(path, "config", "uploadpack.allowFilter", "true")
    _git(path, "add", "-A")
    _git(path, "commit", "--quiet", "-m", "data")
    return _git(path, "rev-parse", "HEAD")


def test_rebuild_lfw_installs_the_repositories_lfw(tmp_path):
    faces = {f"Person_{k}": [face_like_image(7 * k + i, 48, 40) for i in range(3)]
             for k in range(5)}
    source = write_sklearn_lfw_cache(tmp_path / "source", faces, folds=2, pairs_per_fold=3)
    images = tmp_path / "images"
    shutil.copytree(source / "lfw_home" / "lfw_funneled", images / "data" / "lfw-deepfunneled")
    (images / "README.md").write_text("not LFW\n")  # outside the sparse checkout
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    shutil.copy(source / "lfw_home" / "pairs.txt", pairs / "pairs.txt")
    env = {**os.environ, "LFW_IMAGES_REPO": f"file://{images}", "LFW_PAIRS_REPO": f"file://{pairs}",
           "LFW_IMAGES_COMMIT": _repo(images), "LFW_PAIRS_COMMIT": _repo(pairs),
           "FKD": f"{sys.executable} -m fkdlib.cli"}
    done = subprocess.run(["sh", str(SCRIPT), str(tmp_path / "home")], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"export SCIKIT_LEARN_DATA={tmp_path / 'home'}" in done.stdout
    ours = load_sklearn_lfw_pairs(16, data_home=tmp_path / "home", download=False)
    theirs = load_sklearn_lfw_pairs(16, data_home=source, download=False)
    assert torch.equal(ours.images, theirs.images)
    assert ours.identities.tolist() == theirs.identities.tolist()
