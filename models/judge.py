"""The judge of the built-in models: a small CNN that classifies an image, segments its object (foreground mask for
the divergence metric) and gives features for a Fréchet distance. Each built-in model (models/shapes,
models/scenes) ships its own trained weights for this network; training is tools/shapes/train.py."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoint import read_state_dict


def _conv(cin, cout, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(8, cout), nn.SiLU())


class Judge(nn.Module):
    """The judge CNN: classifies an image of a built-in model's dataset, segments its object and gives 4w-d features
    (Frechet distance)."""
    def __init__(self, num_classes: int = 10, width: int = 32):
        super().__init__()
        w = width
        self.stem = _conv(3, w, 2)
        self.down = nn.Sequential(_conv(w, 2 * w, 2), _conv(2 * w, 2 * w, 1), _conv(2 * w, 4 * w, 2),
                                  _conv(4 * w, 4 * w, 1))
        self.mask_head = nn.Conv2d(4 * w, 1, 1)
        self.classifier = nn.Linear(4 * w, num_classes)

    def forward(self, images: torch.Tensor):
        """images [B, 3, H, W] in [0, 1] -> (class logits [B, C], mask logits [B, H, W], features [B, 4w])."""
        h = self.down(self.stem(images * 2 - 1))
        features = h.mean((2, 3))
        mask = F.interpolate(self.mask_head(h), size=images.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(features), mask[:, 0], features


def load_judge(path, num_classes: int, device="cpu") -> Judge:
    """The judge network of `num_classes` classes with the weights of the safetensors file `path` (fp32, eval mode,
    on `device`). Raises CheckpointError naming the file when it cannot be read (models/checkpoint.py)."""
    judge = Judge(num_classes)
    judge.load_state_dict(read_state_dict(path, torch.float32))
    return judge.eval().to(device)


@torch.no_grad()
def judge_images(judge: Judge, images: torch.Tensor, chunk: int = 500) -> dict:
    """Predicted labels, masks (float 0/1 at image size) and features of images [N, 3, H, W] in [0, 1]."""
    labels, masks, feats = [], [], []
    for part in images.split(chunk):
        logits, mask, f = judge(part.float())
        labels.append(logits.argmax(1))
        masks.append((mask > 0).float())
        feats.append(f.double())
    return {"labels": torch.cat(labels), "masks": torch.cat(masks), "features": torch.cat(feats)}


def _sqrtm_psd(m: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh((m + m.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets [N, D]:
    |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)."""
    a, b = a.double().cpu().numpy(), b.double().cpu().numpy()
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _sqrtm_psd(s_a)
    cross = _sqrtm_psd(root_a @ s_b @ root_a)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(cross))
