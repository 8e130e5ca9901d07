"""ImageNet test protocols (Sec. 3.4): center crop, 10-crop, fully-convolutional multi-scale, ensembles.

Each protocol gives softmax scores per val image (`val_scores`); top-1/top-5 error come
from them the same way, and an ensemble (Table 5) averages several models' scores.
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from resbench.host import vision as _vision  # noqa: F401  (before torchvision: see resbench/host/vision.py)
import torchvision.transforms.v2.functional as TF
from torch import nn

from resbench.data.imagenet import ImageFolderData, read_image
from resbench.data.imagenet_views import Views, normalize, test_loader
from resbench.paper.tiers import IMAGENET_TESTS

SCALES = (224, 256, 384, 480, 640)  # shorter sides of the multi-scale test (Sec. 3.4)
# every finished run is tested once with each: Fig. 4 reads center, Tables 2 and 3 10crop, Table 4 multiscale
TESTS = IMAGENET_TESTS


@torch.no_grad()
def crop_scores(model: nn.Module, views: torch.Tensor) -> torch.Tensor:
    """(B, 3, h, w) -> softmax (B, classes); (B, V, 3, h, w) -> softmax averaged over the V views."""
    if views.dim() == 4:
        return model(views).softmax(1)
    b, v = views.shape[:2]
    return model(views.flatten(0, 1)).softmax(1).view(b, v, -1).mean(1)


@torch.no_grad()
def dense_scores(model: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """Fully convolutional: the FC layer as a 1x1 convolution over the whole feature map.

    (B, 3, H, W) -> class scores (B, classes), averaged over the score map's positions.
    Because the FC is linear, at 224x224 this equals the ordinary forward pass.
    """
    fmap = model.features(image)
    score_map = F.conv2d(fmap, model.fc.weight[:, :, None, None], model.fc.bias)
    return score_map.mean((2, 3))


@torch.no_grad()
def multiscale_scores(model: nn.Module, img: torch.Tensor, scales: Iterable[int] = SCALES) -> torch.Tensor:
    """uint8 (3, H, W) -> softmax (classes,) averaged over scales and horizontal flips."""
    device = next(model.parameters()).device
    scores = []
    for s in scales:
        x = normalize(TF.resize(img, s, antialias=True)).to(device)[None]
        for view in (x, x.flip(-1)):
            scores.append(dense_scores(model, view).softmax(1)[0])
    return torch.stack(scores).mean(0)


def ensemble_scores(per_model: list[torch.Tensor]) -> torch.Tensor:
    """Table 5: the average of several models' softmax scores, (B, classes) each."""
    return torch.stack(per_model).mean(0)


def topk_wrong(scores: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[int, int]:
    """Number of images whose label is not among the top k scores, for each k."""
    top = scores.topk(max(ks), dim=1).indices
    hit = top == labels[:, None]
    return {k: int((~hit[:, :k].any(1)).sum()) for k in ks}


@torch.no_grad()
def val_scores(model: nn.Module, data: ImageFolderData, views: Views, engine, mode: str,
               limit: int | None = None, workers: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """(softmax scores (N, classes), labels (N,)) of the val images under a protocol:
    center, 10crop or multiscale."""
    was_training = model.training
    model.eval()
    scores, labels = [], []
    with engine.autocast():
        if mode == "multiscale":  # the paper's scales are for test_size 256; small test views shrink them
            scales = [round(s * views.test_size / 256) for s in SCALES]
            for path, label in (data.val[:limit] if limit else data.val):
                scores.append(multiscale_scores(model, read_image(path), scales)[None].float().cpu())
                labels.append(torch.tensor([label]))
        else:
            for x, y in test_loader(data, views, mode, limit=limit, workers=workers):
                scores.append(crop_scores(model, x.to(engine.device)).float().cpu())
                labels.append(y)
    model.train(was_training)
    return torch.cat(scores), torch.cat(labels)


def errors(scores: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Top-1 and top-5 error (%)."""
    wrong = topk_wrong(scores, labels)
    return {"top1_err": 100.0 * wrong[1] / len(labels), "top5_err": 100.0 * wrong[5] / len(labels)}


def evaluate(model: nn.Module, data: ImageFolderData, views: Views, engine, mode: str,
             limit: int | None = None, workers: int = 4) -> dict[str, float]:
    return errors(*val_scores(model, data, views, engine, mode, limit, workers))
