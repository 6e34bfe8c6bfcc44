"""Embedding extraction (insightface flip test) and pair gathering."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from fkdlib.errors import ConfigError, DataFormatError
from fkdlib.evaluation.embed import extract_embeddings, pair_embeddings


def tiny_model(seed=0):
    torch.manual_seed(seed)
    # Dropout and BatchNorm behave differently in train mode, so the output reveals the mode.
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 6, 8), nn.BatchNorm1d(8),
                         nn.Dropout(0.5), nn.Linear(8, 5))


def images(count=10, seed=1):
    return torch.rand(count, 3, 4, 6, generator=torch.Generator().manual_seed(seed)) * 2 - 1


class DictDataset(Dataset):
    """Items like SynthFace's, with extra fields that the default collate could not stack."""

    def __init__(self, data):
        self.data = data

    def __len__(self):
        return self.data.shape[0]

    def __getitem__(self, index):
        return {"image": self.data[index], "identity": index % 3,
                "landmarks": torch.zeros(index + 1, 2), "name": f"img{index}"}


def expected_embeddings(model, x, flip):
    model.eval()
    with torch.no_grad():
        out = model(x) + (model(torch.flip(x, dims=[3])) if flip else 0)
    return F.normalize(out, dim=1)


@pytest.mark.parametrize("flip", [True, False])
def test_flip_test_and_normalisation(flip):
    model, x = tiny_model(), images()
    model.train()
    got = extract_embeddings(model, x, batch_size=4, flip=flip)
    expected = expected_embeddings(tiny_model(), x, flip)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got.norm(dim=1), torch.ones(10))
    assert model.training, "the training mode must be restored"
    assert got.dtype == torch.float32 and not got.requires_grad


def test_flip_changes_the_embedding_of_an_asymmetric_model():
    model, x = tiny_model(), images()
    with_flip = extract_embeddings(model, x, flip=True)
    without = extract_embeddings(model, x, flip=False)
    assert (with_flip - without).abs().max() > 1e-3


def test_dataset_of_dicts_equals_tensor_input_for_any_batch_size():
    model, x = tiny_model(), images(count=11)
    from_tensor = extract_embeddings(model, x, batch_size=128)
    from_dataset = extract_embeddings(model, DictDataset(x), batch_size=3)
    torch.testing.assert_close(from_dataset, from_tensor)


def test_progress_bar_is_silent_off_a_terminal(capsys):
    model, x = tiny_model(), images(count=4)
    extract_embeddings(model, x)
    assert capsys.readouterr().err == ""
    extract_embeddings(model, x, progress=True)
    assert "embedding" in capsys.readouterr().err


def test_bad_inputs():
    model = tiny_model()
    with pytest.raises(DataFormatError, match=r"\(N, 3, H, W\), got shape \(2, 4, 6\)"):
        extract_embeddings(model, torch.zeros(2, 4, 6))
    with pytest.raises(ConfigError, match="batch_size"):
        extract_embeddings(model, images(), batch_size=0)

    class NoImage(DictDataset):
        def __getitem__(self, index):
            return {"pixels": self.data[index]}

    with pytest.raises(DataFormatError, match=r"'image' tensor .*found \['pixels'\]"):
        extract_embeddings(model, NoImage(images()))
    with pytest.raises(DataFormatError, match=r"must return a \(20, D\) embedding tensor"):
        extract_embeddings(nn.Identity(), images())
    broken = tiny_model()
    with torch.no_grad():
        broken[-1].bias.fill_(float("nan"))
    with pytest.raises(DataFormatError, match="non-finite embeddings for 10 of 10"):
        extract_embeddings(broken, images())
    assert broken.training


def test_pair_embeddings_gathers_rows_in_pair_order():
    emb = torch.arange(12.0).reshape(6, 2)
    rows = np.array([4, 0, 2, 2, 5, 1])
    paired = pair_embeddings(emb, rows)
    torch.testing.assert_close(paired, emb[[4, 0, 2, 2, 5, 1]])
    np.testing.assert_array_equal(pair_embeddings(emb.numpy(), rows), emb.numpy()[rows])
    with pytest.raises(DataFormatError, match="even length"):
        pair_embeddings(emb, rows[:-1])
    with pytest.raises(DataFormatError, match="only 6 embeddings"):
        pair_embeddings(emb, np.array([0, 6]))
