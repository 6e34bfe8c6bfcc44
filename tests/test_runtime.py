import random
import subprocess

import numpy as np
import pytest
import torch

from fkdlib import runtime
from fkdlib.errors import ConfigError


def _draw():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_seed_everything_makes_all_three_generators_repeat():
    runtime.seed_everything(123)
    first = _draw()
    runtime.seed_everything(123)
    assert _draw() == first
    runtime.seed_everything(124)
    assert _draw() != first


def test_negative_seed_is_refused():
    with pytest.raises(ConfigError):
        runtime.seed_everything(-1)


def test_resolve_device():
    assert runtime.resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert runtime.resolve_device("auto").type == expected
    with pytest.raises(ConfigError, match="unknown device"):
        runtime.resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ConfigError, match="CUDA is not available"):
        runtime.resolve_device("cuda")


def test_set_threads_round_trip():
    before = torch.get_num_threads()
    try:
        assert runtime.set_threads(1) == 1
        assert torch.get_num_threads() == 1
        with pytest.raises(ConfigError):
            runtime.set_threads(0)
    finally:
        torch.set_num_threads(before)


def test_provenance_records_code_packages_and_device():
    record = runtime.provenance("cpu", notebook="x")
    assert record["notebook"] == "x"
    assert record["packages"]["torch"] == torch.__version__.split("+")[0] or \
        record["packages"]["torch"].startswith(torch.__version__.split("+")[0])
    assert record["device"].startswith("cpu")
    assert "git_sha" in record and "git_dirty" in record
    # this test runs inside the repository, so the sha is a 40-hex string
    if record["git_sha"] is not None:
        assert len(record["git_sha"]) == 40


def test_git_dirty_ignores_reproduction_outputs(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    for name in ("code.py", "results/table.csv", "figures/plot.svg"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("v1")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    sub = tmp_path / "results"
    assert runtime.git_state(sub)["git_dirty"] is False
    (tmp_path / "results/table.csv").write_text("v2")
    (tmp_path / "figures/plot.svg").unlink()
    assert runtime.git_state(sub)["git_dirty"] is False  # outputs rewritten by a run
    (tmp_path / "code.py").write_text("v2")
    state = runtime.git_state(sub)
    assert state["git_dirty"] is True and len(state["git_sha"]) == 40


def test_determinism_flag_is_set():
    runtime.set_determinism(True)
    assert torch.are_deterministic_algorithms_enabled()
    runtime.set_determinism(False)
    assert not torch.are_deterministic_algorithms_enabled()
