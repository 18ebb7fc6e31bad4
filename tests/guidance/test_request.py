"""The request values of guidance/request.py check themselves when built: the draw's temperatures (real numbers in
[0.001, 100], so that the logits stay finite) and an edit's image and mask batches against the generation's."""

import pytest
import torch

from scalewise.guidance import CFG, Draw, Edit, Generation, sample
from scalewise.guidance.request import MIN_TEMPERATURE
from tiny import tiny_model


@pytest.mark.parametrize("field", ["temperature", "last_scale_temperature"])
@pytest.mark.parametrize("value", ["0.5", True, float("nan"), float("inf"), 0, -1.0, 1e-45, 0.0009, 100.5])
def test_temperatures_must_be_real_numbers_in_range(field, value):
    with pytest.raises(ValueError, match=rf"^{field} must be a number in \[0.001, 100\] \(.* = off\), got "):
        Draw(**{field: value})


@pytest.mark.parametrize("value", [MIN_TEMPERATURE, 0.5, 1, 100])
def test_temperatures_in_range_are_kept(value):
    assert Draw(temperature=value, last_scale_temperature=value).temperature == value


def test_the_lowest_temperature_keeps_the_logits_finite():
    """tau = 0.001 multiplies float32 logits by 1000 before guidance (CFG's weight 5 on top): finite logits, a
    finite image (below the bound, tau = 1e-45 made 1 / tau = inf and the draw failed on NaN probabilities)."""
    model = tiny_model()
    out = sample(model, CFG(4.0), Generation([1, 2], seed=3, draw=Draw(temperature=MIN_TEMPERATURE)))
    assert bool(torch.isfinite(out.images).all())
    assert torch.isinf(torch.tensor(1 / 1e-45, dtype=torch.float32))  # what tau = 1e-45 multiplied the logits by


def test_an_edit_batch_mismatch_names_the_image_and_the_mask_batches():
    model = tiny_model()
    side = model.image_size
    image, mask = torch.rand(3, 3, side, side), torch.ones(3, side, side)
    with pytest.raises(ValueError, match="image batch 3 and mask batch 3 do not match the batch of 2 images"):
        sample(model, CFG(2.0), Generation([1, 2], edit=Edit(image, mask=mask)))
    with pytest.raises(ValueError, match=r"mask batch 3 does not match the batch of 2 images \(image batch 1\)"):
        sample(model, CFG(2.0), Generation([1, 2], edit=Edit(image[:1], mask=mask)))
