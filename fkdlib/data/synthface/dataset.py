"""SynthFace as a :class:`torch.utils.data.Dataset`, with metadata and an on-disk cache.

Samples are ordered identity-major: sample ``n`` is image ``n % images_per_identity`` of
identity label ``n // images_per_identity``. Labels run from 0 to ``num_identities - 1``;
global identity ids are ``SPLIT_IDENTITY_BASE[split] + identity_offset + label``, so the
train, val and test splits own disjoint ranges of a million ids each, and ``identity_offset``
draws a second disjoint set from a split (unlabelled data, distractors).

``metadata`` is computed from the first draws of each sample's random streams, without
rendering. Pixels are rendered on first use (``images_u8()`` or indexing), all at once, in
chunks (spread over ``torch.get_num_threads()`` workers, forked processes on Linux), with a
progress bar where someone watches (:mod:`fkdlib.progress`). Call ``images_u8()`` before
handing the dataset to a multi-worker ``DataLoader`` so that workers share the rendered arrays.

Cache format
------------
``<cache_dir>/synthface-<key>.npz`` holds ``images`` (N, 3, H, W) uint8, ``landmarks68``
(N, 68, 2) float32, ``visible68`` (N, 68) bool and ``landmarks5`` (N, 5, 2) float32, written
with ``np.savez`` (no pickles). ``<key>`` is the SHA-256 of the JSON of everything that
determines the arrays (renderer and sampler versions, split, sizes, resolution, seed,
difficulty, framing, identity offset). The sidecar ``synthface-<key>.json`` records that
configuration, the file's size and its SHA-256; both files are written atomically, the sidecar
last. On load the size, checksum, array names, shapes and dtypes are verified; a missing
sidecar, a truncated or altered file or a configuration mismatch is reported with a warning
and the entry is rendered and written again, never used.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ...errors import ConfigError
from ...io import atomic_open, atomic_write_json, sha256_file
from ...progress import progress
from . import params as P
from . import render as R

METADATA_COLUMNS = ("identity", "global_identity", "index", "yaw", "pitch", "roll", "age",
                    "age_group", "gender", "skin_tone", "pitch_bin", "yaw_bin", "cohort")
ATTRIBUTE_KEYS = ("age_group", "gender", "skin_tone", "pitch_bin", "yaw_bin", "cohort", "yaw",
                  "pitch", "roll")
ARRAY_NAMES = ("images", "landmarks68", "visible68", "landmarks5")


def _positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(
            f"SynthFace {name} must be an integer >= {minimum}, got {value!r}"
        )
    return int(value)


class SynthFace(torch.utils.data.Dataset):
    """Procedural faces with identities, attributes and landmarks (see the package docs).

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``; each owns its identities.
        num_identities: identities in this dataset (labels 0..num_identities-1).
        images_per_identity: images of each identity.
        resolution: square image size in pixels, 16 to 128.
        seed: base seed; every sample is a pure function of (seed, split, identity, index).
        difficulty: nuisance preset, ``"easy"``, ``"medium"`` or ``"hard"``.
        aligned: ArcFace five-point alignment (True) or unaligned crops with scale and shift
            jitter (False).
        cache_dir: folder for rendered arrays.
        use_cache: read and write the cache; False always renders and writes nothing.
        identity_offset: skip this many identities of the split, to draw a disjoint set.
        variant: ``"standard"``, or a renderer ablation of :data:`~.params.VARIANTS`
            (``"hair_fixed"``, ``"half_geometry"``, ``"flat_shading"``).

    Items are dicts: ``image`` float32 (3, H, W) in [-1, 1] computed as
    (u8 / 255 - 0.5) / 0.5, ``identity`` (label), ``global_identity``, ``attributes`` (dict of
    ``ATTRIBUTE_KEYS``), ``landmarks68`` (68, 2) pixels, ``visible68`` (68,) bool and
    ``landmarks5`` (5, 2).
    """

    def __init__(self, split: str, num_identities: int, images_per_identity: int,
                 resolution: int, seed: int = 0, difficulty: str = "medium",
                 aligned: bool = True, cache_dir: str | Path = "data/cache",
                 use_cache: bool = True, identity_offset: int = 0, variant: str = "standard"):
        P.split_code(split)
        self.split = split
        self.num_identities = _positive_int("num_identities", num_identities)
        self.images_per_identity = _positive_int("images_per_identity", images_per_identity)
        self.resolution = R.check_resolution(resolution)
        self.seed = _positive_int("seed", seed, minimum=0)
        self.difficulty = P.get_difficulty(difficulty).name
        self.aligned = bool(aligned)
        self.variant = P.get_variant(variant).name
        self.identity_offset = _positive_int("identity_offset", identity_offset, minimum=0)
        if self.identity_offset + self.num_identities > P.IDENTITIES_PER_SPLIT:
            raise ConfigError(
                f"SynthFace split {split!r} holds {P.IDENTITIES_PER_SPLIT} identities, but "
                f"identity_offset={self.identity_offset} + num_identities="
                f"{self.num_identities} goes beyond it; use fewer identities or a smaller "
                "offset"
            )
        self.cache_dir = Path(cache_dir)
        self.use_cache = bool(use_cache)
        self._metadata: pd.DataFrame | None = None
        self._arrays: dict[str, np.ndarray] | None = None

    # -- identities and configuration ------------------------------------------------------

    @property
    def num_classes(self) -> int:
        """Number of identity labels."""
        return self.num_identities

    def global_identity(self, label: int) -> int:
        """Global identity id of a label."""
        return P.SPLIT_IDENTITY_BASE[self.split] + self.identity_offset + int(label)

    def config(self) -> dict[str, Any]:
        """Everything that determines the rendered arrays (the cache key's content)."""
        return {
            "renderer_version": R.RENDERER_VERSION, "params_version": P.PARAMS_VERSION,
            "split": self.split, "num_identities": self.num_identities,
            "images_per_identity": self.images_per_identity, "resolution": self.resolution,
            "seed": self.seed, "difficulty": self.difficulty, "aligned": self.aligned,
            "identity_offset": self.identity_offset, "variant": self.variant,
        }

    def cache_key(self) -> str:
        """SHA-256 of the configuration."""
        text = json.dumps(self.config(), sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def cache_paths(self) -> tuple[Path, Path]:
        """(data file, checksum sidecar) of this dataset's cache entry."""
        stem = f"synthface-{self.cache_key()[:24]}"
        return self.cache_dir / f"{stem}.npz", self.cache_dir / f"{stem}.json"

    def __len__(self) -> int:
        return self.num_identities * self.images_per_identity

    # -- metadata (no rendering) -------------------------------------------------------------

    @property
    def metadata(self) -> pd.DataFrame:
        """One row per sample in dataset order; columns ``METADATA_COLUMNS``."""
        if self._metadata is None:
            self._metadata = self._build_metadata()
        return self._metadata

    def _build_metadata(self) -> pd.DataFrame:
        n_img = self.images_per_identity
        labels = np.repeat(np.arange(self.num_identities), n_img)
        index = np.tile(np.arange(n_img), self.num_identities)
        globals_ = np.array([self.global_identity(k) for k in range(self.num_identities)])
        attributes = np.array([P.sample_identity_attributes(self.seed, g) for g in globals_],
                              dtype=np.float64).reshape(-1, 3)
        pose = np.array([P.sample_pose_and_drift(self.seed, self.split, g, i, self.difficulty)
                         for g in globals_ for i in range(n_img)],
                        dtype=np.float64).reshape(-1, 4)
        base_age = np.repeat(attributes[:, 0], n_img)
        gender = np.repeat(attributes[:, 1], n_img).astype(np.int64)
        skin = np.repeat(attributes[:, 2], n_img).astype(np.int64)
        yaw, pitch, roll, drift = pose.T
        age = P.image_age(base_age, drift)
        age_group = np.asarray(P.age_group_of(age), dtype=np.int64).reshape(-1)
        pitch_bin = np.asarray(P.pose_bin(pitch), dtype=np.int64).reshape(-1)
        yaw_bin = np.asarray(P.pose_bin(yaw), dtype=np.int64).reshape(-1)
        return pd.DataFrame({
            "identity": labels, "global_identity": np.repeat(globals_, n_img), "index": index,
            "yaw": yaw, "pitch": pitch, "roll": roll, "age": age, "age_group": age_group,
            "gender": gender, "skin_tone": skin, "pitch_bin": pitch_bin, "yaw_bin": yaw_bin,
            "cohort": P.cohort_of(age_group, gender, skin, pitch_bin, yaw_bin),
        }, columns=list(METADATA_COLUMNS))

    # -- pixels --------------------------------------------------------------------------------

    def images_u8(self) -> np.ndarray:
        """All images as one uint8 array (N, 3, H, W), rendered or read from the cache once.

        The array is the dataset's own storage: copy it before writing to it.
        """
        return self._rendered()["images"]

    def landmarks68(self) -> np.ndarray:
        """All 68 landmarks as one float array (N, 68, 2) in pixels, pixel centres at integers
        (the dataset's own storage: copy it before writing to it)."""
        return self._rendered()["landmarks68"]

    def _rendered(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            self._arrays = self._load_or_render()
        return self._arrays

    def _load_or_render(self) -> dict[str, np.ndarray]:
        if self.use_cache:
            arrays = self._read_cache()
            if arrays is not None:
                return arrays
        arrays = self._render_all()
        if self.use_cache:
            self._write_cache(arrays)
        return arrays

    def _render_all(self) -> dict[str, np.ndarray]:
        n_img = self.images_per_identity
        # Groups of several chunks: the renderer splits a group across its workers (kept for
        # the whole build), and the progress bar moves once per group.
        group = R.default_chunk_size(self.resolution) * 4
        parts: dict[str, list[np.ndarray]] = {name: [] for name in ARRAY_NAMES}
        keys = [(label, i) for label in range(self.num_identities) for i in range(n_img)]
        with R.kept_workers(), progress(total=len(keys),
                                        desc=f"SynthFace {self.split} {self.resolution}px",
                                        unit="img") as bar:
            for start in range(0, len(keys), group):
                batch = keys[start:start + group]
                ids, nuisances = [], []
                identities: dict[int, P.IdentityParams] = {}
                for label, i in batch:
                    g = self.global_identity(label)
                    if g not in identities:
                        identities[g] = P.sample_identity(self.seed, g, self.variant)
                    ids.append(identities[g])
                    nuisances.append(P.sample_nuisance(self.seed, self.split, g, i,
                                                       self.difficulty, self.variant))
                out = R.render(ids, nuisances, self.resolution, self.aligned)
                parts["images"].append(out.images.numpy())
                parts["landmarks68"].append(out.landmarks68.numpy())
                parts["visible68"].append(out.visible68.numpy())
                parts["landmarks5"].append(out.landmarks5.numpy())
                bar.update(len(batch))
        return {name: np.concatenate(values) for name, values in parts.items()}

    def _expected_shapes(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        n, r = len(self), self.resolution
        return {"images": ((n, 3, r, r), np.dtype(np.uint8)),
                "landmarks68": ((n, 68, 2), np.dtype(np.float32)),
                "visible68": ((n, 68), np.dtype(np.bool_)),
                "landmarks5": ((n, 5, 2), np.dtype(np.float32))}

    def _read_cache(self) -> dict[str, np.ndarray] | None:
        data_path, sidecar_path = self.cache_paths()
        if not data_path.exists() and not sidecar_path.exists():
            return None
        try:
            return self._verified_arrays(data_path, sidecar_path)
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as error:
            warnings.warn(
                f"SynthFace cache entry {data_path} is unusable ({error}); rendering the "
                "dataset again and rewriting the entry", RuntimeWarning, stacklevel=3,
            )
            return None

    def _verified_arrays(self, data_path: Path, sidecar_path: Path) -> dict[str, np.ndarray]:
        if not sidecar_path.exists():
            raise ValueError(f"the checksum sidecar {sidecar_path.name} is missing, so the "
                             "entry may be partial")
        if not data_path.exists():
            raise ValueError(f"the data file is missing although {sidecar_path.name} exists")
        sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
        if sidecar.get("config") != self.config():
            raise ValueError("the sidecar describes a different configuration")
        size = data_path.stat().st_size
        if size != sidecar.get("bytes"):
            raise ValueError(f"the file has {size} bytes, the sidecar expects "
                             f"{sidecar.get('bytes')} (truncated or overwritten)")
        digest = sha256_file(data_path)
        if digest != sidecar.get("sha256"):
            raise ValueError(f"SHA-256 {digest[:12]}... does not match the sidecar's "
                             f"{str(sidecar.get('sha256'))[:12]}... (the file was altered)")
        with np.load(data_path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in ARRAY_NAMES}
        for name, (shape, dtype) in self._expected_shapes().items():
            if arrays[name].shape != shape or arrays[name].dtype != dtype:
                raise ValueError(f"array {name!r} has shape {arrays[name].shape} and dtype "
                                 f"{arrays[name].dtype}, expected {shape} {dtype}")
        return arrays

    def _write_cache(self, arrays: dict[str, np.ndarray]) -> None:
        data_path, sidecar_path = self.cache_paths()
        with atomic_open(data_path, "wb") as handle:
            np.savez(handle, **arrays)
        atomic_write_json(sidecar_path, {
            "format": "fkdlib SynthFace cache: numpy .npz of " + ", ".join(ARRAY_NAMES),
            "config": self.config(), "bytes": data_path.stat().st_size,
            "sha256": sha256_file(data_path),
        })

    # -- items ---------------------------------------------------------------------------------

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self)
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"SynthFace indices are integers, got {type(index).__name__}")
        if not -n <= index < n:
            raise IndexError(f"SynthFace index {index} is out of range for {n} samples")
        index = int(index) % n
        arrays = self._rendered()
        row = self.metadata.iloc[index]
        image = torch.from_numpy(arrays["images"][index]).to(torch.float32)
        return {
            "image": (image / 255.0 - 0.5) / 0.5,
            "identity": int(row["identity"]),
            "global_identity": int(row["global_identity"]),
            "attributes": {key: (float(row[key]) if key in ("yaw", "pitch", "roll")
                                 else int(row[key])) for key in ATTRIBUTE_KEYS},
            "landmarks68": torch.from_numpy(arrays["landmarks68"][index].copy()),
            "visible68": torch.from_numpy(arrays["visible68"][index].copy()),
            "landmarks5": torch.from_numpy(arrays["landmarks5"][index].copy()),
        }

    def __repr__(self) -> str:
        return (f"SynthFace(split={self.split!r}, num_identities={self.num_identities}, "
                f"images_per_identity={self.images_per_identity}, "
                f"resolution={self.resolution}, seed={self.seed}, "
                f"difficulty={self.difficulty!r}, aligned={self.aligned}, "
                f"identity_offset={self.identity_offset})")
