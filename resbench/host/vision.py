"""torchvision, importable next to a CPU-only build of torch.

PyPI carries no CPU build of torchvision: its wheels link their compiled ops (`_C.so`,
`image.so`) against torch's CUDA libraries, which a CPU-only torch (the build this project's
machines keep on disk) lacks. torchvision is made to work without its compiled ops (every
op checks `extension._has_ops()`), except that its `_meta_registrations` registers fake
kernels for `torchvision::nms` and `qnms` unconditionally, and that fails when the ops were
never defined. Defining those two schemas first lets torchvision import; the Python parts
resbench uses (transforms, the folder reader, VGG) then work, and only the compiled ones
(JPEG decoding with `torchvision.io`, nms) stay unavailable: `has_image_ops()` says which.

Import this module before torchvision. With a CUDA build of torch it changes nothing.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

_SCHEMAS = {"nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
            "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"}
_stand_in = None  # the library holding the schemas must stay alive


def _ops_load() -> bool:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return True  # not installed: let `import torchvision` say so
    try:
        torch.ops.load_library(str(Path(spec.submodule_search_locations[0]) / "_C.so"))
        return True
    except OSError:
        return False


if not _ops_load() and not hasattr(torch.ops.torchvision, "nms"):
    _stand_in = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS.values():
        _stand_in.define(schema)


def has_image_ops() -> bool:
    """Whether torchvision.io can decode JPEGs here (its compiled extension loaded; not with a CPU-only torch)."""
    from torchvision.io.image import _has_image_ops

    return _has_image_ops()
