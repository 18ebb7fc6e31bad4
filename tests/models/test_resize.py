"""Issue 13.5: the matrix form of area resizing (used where the backend lacks adaptive average pooling, e.g. MPS
with sizes that do not divide) equals torch's own F.interpolate(mode="area") on the CPU for every resize the
scale schedules make, within bounds derived from the dtype and the window sizes."""
import pytest
import torch
import torch.nn.functional as F

from scalewise.models import SCHEDULES
from scalewise.models.resize import area_resize, area_weights, native_area_supported
from tiny import TINY_PN

SIDES = sorted({(a, b) for pns in (*SCHEDULES.values(), TINY_PN) for a in (pns[-1], *pns) for b in pns if b <= a})


def reference(x: torch.Tensor, size) -> torch.Tensor:
    """Adaptive average pooling from its definition, in float64: cell i averages floor(i n/m) .. ceil((i+1) n/m)."""
    h, w = x.shape[-2:]
    out = torch.empty(*x.shape[:-2], *size, dtype=torch.float64)
    for i in range(size[0]):
        for j in range(size[1]):
            r0, r1 = (i * h) // size[0], -((-(i + 1) * h) // size[0])
            c0, c1 = (j * w) // size[1], -((-(j + 1) * w) // size[1])
            out[..., i, j] = x[..., r0:r1, c0:c1].double().mean((-2, -1))
    return out


def bound(x, size, dtype):
    """Each output averages at most kh x kw inputs; a sum of n terms in precision eps (plus the rounded 1/n
    weights and the final rounding) is off by at most (n + 2) eps max|x| (Higham, Accuracy and Stability, 3.1)."""
    (h, w), (oh, ow) = x.shape[-2:], size
    kh, kw = -(-h // oh) + 1, -(-w // ow) + 1
    eps = torch.finfo(dtype if dtype in (torch.float16, torch.bfloat16) else torch.float32).eps
    return (kh + kw + 4) * eps * float(x.abs().max())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_matrix_form_equals_torch_area_for_every_schedule_resize(dtype):
    gen = torch.Generator().manual_seed(0)
    for a, b in SIDES:
        x = (torch.randn(2, 5, a, a, generator=gen) * 3).to(dtype)
        ours, torchs = area_resize(x, (b, b), matrix=True), F.interpolate(x, size=(b, b), mode="area")
        assert ours.dtype == dtype and ours.shape == torchs.shape == (2, 5, b, b)
        exact = reference(x, (b, b))
        tol = bound(x, (b, b), dtype) if dtype != torch.float64 else 1e-12 * float(x.abs().max())
        assert float((ours.double() - exact).abs().max()) <= tol, (a, b)
        assert float((torchs.double() - exact).abs().max()) <= tol, (a, b)   # torch's op within the same bound


def test_non_square_and_upsampling_sizes():
    x = torch.randn(1, 3, 7, 10, dtype=torch.float64)
    for size in ((3, 4), (7, 3), (10, 13), (1, 1)):
        assert torch.allclose(area_resize(x, size, matrix=True), F.interpolate(x, size=size, mode="area"),
                              rtol=0, atol=1e-12)


def test_weights_are_the_pooling_windows():
    w = area_weights(4, 3, dtype=torch.float64)       # windows [0, 2), [1, 3), [2, 4)
    assert w.tolist() == [[0.5, 0.5, 0, 0], [0, 0.5, 0.5, 0], [0, 0, 0.5, 0.5]]
    assert torch.allclose(area_weights(16, 13, dtype=torch.float64).sum(1), torch.ones(13, dtype=torch.float64))


def test_native_op_is_used_except_where_the_backend_refuses():
    cpu = torch.zeros(1, 1, 16, 16)
    assert native_area_supported(cpu, (13, 13))
    meta_mps = type("T", (), {"device": torch.device("mps"), "shape": (1, 1, 16, 16)})()
    assert not native_area_supported(meta_mps, (13, 13)) and native_area_supported(meta_mps, (8, 8))
    x = torch.randn(2, 32, 16, 16)
    assert torch.equal(area_resize(x, (13, 13)), F.interpolate(x, size=(13, 13), mode="area"))  # bit for bit

