"""Face backbones, built by name: ``create_model("iresnet50", input_size=112)``.

Importing this package registers every built-in model; :func:`list_models` names them.
"""

from . import cifar, fan, fan_face, iresnet, mobilefacenet, vargfacenet  # noqa: F401  (imported to register models)
from .layers import FaceBackbone
from .registry import create_model, list_models, register_model

__all__ = ["FaceBackbone", "create_model", "list_models", "register_model"]
