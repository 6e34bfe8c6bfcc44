"""Shared test settings: one torch thread (CI machines have two cores), Agg backend."""

import json
import os
import time

os.environ.setdefault("MPLBACKEND", "Agg")

from collections import Counter  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from fkdlib.evaluation import tar_at_far  # noqa: E402
from fkdlib.evaluation.benchmark import Evaluation  # noqa: E402
from fkdlib.reproduce import reproduce  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture
def smoke_notebook(tmp_path):
    """Run one notebook on the smoke profile into ``tmp_path`` (results/ and figures/) and
    return its results folder; the run must succeed, and the executed notebook must show every
    figure it saved and store no progress bar. Keyword arguments go to ``reproduce``
    (``data=``, ``eval_sets=``, ``overrides=``, another ``profile=``)."""
    def run(name: str, profile: str = "smoke", **options):
        runs = reproduce(profile, only=[name], results_dir=tmp_path / "results",
                         figures_dir=tmp_path / "figures", timeout_s=1800, log=lambda *_: None,
                         **options)
        assert [(r.name, r.status) for r in runs] == [(name, "ok")], runs[0].error
        results = tmp_path / "results" / name
        saved = list((tmp_path / "figures" / name).glob("*.png"))
        assert saved and _figures_shown(results / f"{name}.ipynb") == len(saved)
        return results
    return run


def _figures_shown(executed) -> int:
    """How many PNG figures an executed notebook shows; it must store no progress widget or
    progress-bar text (a viewer would show them stuck at 0%)."""
    outputs = [output for cell in json.loads(executed.read_text(encoding="utf-8"))["cells"]
               for output in cell.get("outputs", [])]
    assert not [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert not [o for o in outputs if "%|" in "".join(o.get("text", []))]
    return sum("image/png" in output.get("data", {}) for output in outputs)


@pytest.fixture(scope="session")
def real_faces(tmp_path_factory):
    """SynthFace at the smoke profile exported in every real layout
    (``fkd synth export``): ``train/``, ``test/``, ``train.rec``, the ``.bin`` files and
    ``pairs.txt``."""
    from fkdlib.data.synthface.export import export_synthface

    root = tmp_path_factory.mktemp("real") / "faces"
    export_synthface(root, "smoke", seed=0)
    return root


@pytest.fixture(scope="session")
def sklearn_lfw_home(tmp_path_factory, real_faces):
    """A scikit-learn data home holding a fake LFW cache (10 folds of 6 + 6 pairs) of the
    exported test faces, in scikit-learn's own layout; point ``SCIKIT_LEARN_DATA`` at it."""
    from fkdlib.data.formats import ImageFolderDataset, write_sklearn_lfw_cache
    from fkdlib.data.formats.images import decode_rgb

    home = tmp_path_factory.mktemp("sklearn")
    test = ImageFolderDataset(real_faces / "test")
    faces: dict = {}
    for path, label in test.samples:
        faces.setdefault(f"Person_{label:03d}", []).append(decode_rgb(path.read_bytes(),
                                                                      str(path)))
    write_sklearn_lfw_cache(home, faces, folds=10, pairs_per_fold=6, seed=0)
    return home


class _Sleeper(torch.nn.Module):
    """A 'model' whose forward takes ``seconds`` per image."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds, self.calls = seconds, []

    def forward(self, x):
        self.calls.append(x.shape[0])
        time.sleep(self.seconds * x.shape[0])
        return x.flatten(1)[:, :2]


@pytest.fixture
def sleeper():
    """A fake network class whose forward sleeps a fixed time per image (latency tests)."""
    return _Sleeper


def assert_same_step(distiller, reference, terms, expected):
    """The distiller's loss terms, gradients and BatchNorm statistics equal, bit for bit, those
    of ``reference`` (a deep copy that computed ``expected`` the straightforward way)."""
    assert terms.keys() == expected.keys()
    for name, value in terms.items():
        assert torch.equal(value, expected[name]), name
    for (name, p), q in zip(distiller.named_parameters(), reference.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        assert p.grad is None or torch.equal(p.grad, q.grad), name
    for (name, a), b in zip(distiller.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), name  # BatchNorm statistics included


def count_head_calls(head):
    """A Counter of a head's forward calls, "labels" or "no labels" (filled as it is called)."""
    calls = Counter()
    head.register_forward_pre_hook(
        lambda module, args: calls.update(["labels" if len(args) > 1 else "no labels"]))
    return calls


def pair_evaluation(name, positive, negative, embeddings=None, protocol="ijb",
                    fars=(1e-5, 1e-4, 1e-3, 1e-2, 1e-1), clip=True, identities=None):
    """An Evaluation holding one protocol of positive then negative pair scores (clipped to
    [-1, 1] unless ``clip`` is False) with its TAR at ``fars``, ``embeddings`` as the test
    pool (default: none) and ``identities``, the (first, second) identities of the pairs
    (default: unknown, each pair its own resampling unit)."""
    scores = np.concatenate([positive, negative])
    scores = np.clip(scores, -1, 1) if clip else scores
    issame = np.r_[np.ones(len(positive), bool), np.zeros(len(negative), bool)]
    tar = {far: float(tar_at_far(scores, issame, far=far)) for far in fars}
    pools = {} if embeddings is None else {"test": embeddings}
    known = {} if identities is None else {protocol: identities}
    return Evaluation(name, {}, {protocol: scores}, {protocol: issame}, {protocol: tar}, pools,
                      identities=known)


@pytest.fixture(autouse=True)
def close_figures():
    """Every test leaves no matplotlib figure open."""
    yield
    plt.close("all")


CLASSES = 3


class TinyFaces(torch.utils.data.Dataset):
    """Twelve random 16 px uint8 images of three identities, in SynthFace's in-memory form."""

    num_classes = CLASSES

    def __init__(self):
        rng = np.random.default_rng(0)
        labels = np.repeat(np.arange(CLASSES), 4)
        self._images = rng.integers(0, 255, size=(len(labels), 3, 16, 16), dtype=np.uint8)
        self.metadata = pd.DataFrame({"identity": labels})

    def __len__(self):
        return len(self._images)

    def images_u8(self):
        return self._images


class TinyU8Data(torch.utils.data.Dataset):
    """Separable toy classes: class k has a bright square at position k."""

    def __init__(self, n_classes=4, per_class=16, size=8, seed=0):
        rng = np.random.default_rng(seed)
        labels = np.repeat(np.arange(n_classes), per_class)
        images = rng.integers(0, 60, size=(len(labels), 3, size, size), dtype=np.uint8)
        for i, k in enumerate(labels):
            images[i, :, k:k + 2, 2:4] = 250
        self._images = images
        self.metadata = pd.DataFrame({"identity": labels})

    def __len__(self):
        return len(self._images)

    def images_u8(self):
        return self._images

    def __getitem__(self, i):
        image = (torch.from_numpy(self._images[i]).float() / 255 - 0.5) / 0.5
        return {"image": image, "identity": int(self.metadata.identity[i])}


class KillAt:
    """Simulates a crash (kill) in the middle of an epoch."""

    def __init__(self, epoch, step):
        self.epoch, self.step = epoch, step

    def on_step_end(self, trainer, epoch, step, losses):
        if (epoch, step) == (self.epoch, self.step):
            raise KeyboardInterrupt
