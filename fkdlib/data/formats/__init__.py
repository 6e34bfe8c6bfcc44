"""Real face-dataset formats, read and written without mxnet.

* :mod:`.recordio`: insightface training sets (``train.rec`` / ``train.idx`` / ``property``).
* :mod:`.verification_bin`: insightface verification sets (``lfw.bin``, ``cfp_fp.bin``,
  ``agedb_30.bin``), through the restricted unpickler of :mod:`.safe_pickle`.
* :mod:`.cifar`: CIFAR-10/100 in the python-pickle distribution (SRRL's tables).
* :mod:`.folders`: one folder per identity, and LFW's ``pairs.txt``.
* :mod:`.sklearn_lfw`: the official LFW pairs through scikit-learn's loader (and a writer of
  its cache layout, for offline tests).
* :mod:`.convert` and ``fkd convert``: conversions between them.
"""

from .cifar import CIFARDataset, find_cifar_folder, python2_pickle, write_cifar
from .convert import (
    ConversionSummary,
    bin_to_folder,
    folder_to_rec,
    lfw_to_sklearn_cache,
    pairs_to_bin,
    rec_to_folder,
)
from .folders import (
    ImageFolderDataset,
    LfwPair,
    lfw_image_path,
    parse_lfw_pairs,
    resolve_lfw_pairs,
)
from .images import IMAGE_EXTENSIONS, decode_rgb
from .recordio import (
    IRHeader,
    RecordIODataset,
    RecordIOFile,
    RecordIOWriter,
    pack_record,
    read_property,
    unpack_record,
    write_identity_records,
)
from .sklearn_lfw import (
    SQUARE_FACE_SLICE,
    LfwPairsSet,
    load_sklearn_lfw_pairs,
    write_sklearn_lfw_cache,
)
from .safe_pickle import ALLOWED_GLOBALS, RestrictedUnpickler, restricted_loads
from .verification_bin import (
    VerificationBin,
    load_verification_bin,
    read_verification_bin,
    save_verification_bin,
)

__all__ = [
    "CIFARDataset",
    "LfwPairsSet",
    "SQUARE_FACE_SLICE",
    "load_sklearn_lfw_pairs",
    "write_sklearn_lfw_cache",
    "find_cifar_folder",
    "python2_pickle",
    "write_cifar",
    "ALLOWED_GLOBALS",
    "IMAGE_EXTENSIONS",
    "ConversionSummary",
    "IRHeader",
    "ImageFolderDataset",
    "LfwPair",
    "RecordIODataset",
    "RecordIOFile",
    "RecordIOWriter",
    "RestrictedUnpickler",
    "VerificationBin",
    "bin_to_folder",
    "decode_rgb",
    "folder_to_rec",
    "lfw_image_path",
    "lfw_to_sklearn_cache",
    "load_verification_bin",
    "pack_record",
    "pairs_to_bin",
    "parse_lfw_pairs",
    "read_property",
    "read_verification_bin",
    "rec_to_folder",
    "resolve_lfw_pairs",
    "restricted_loads",
    "save_verification_bin",
    "unpack_record",
    "write_identity_records",
]
