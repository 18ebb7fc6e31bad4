"""What each guider costs over unguided sampling, counted on the rows the model really computes: the
unconditional rows run only where a term is active, except where an autoregressive model's KV cache needs them
(guidance/stack.py `GuidanceRun.uncond_scales`)."""
import pytest

from scalewise.guidance import CFG, IGG, SSG, Draw, Generation, SoftCFG, sample
from tiny import random_text, tiny_model, tiny_switti

PN = (1, 2, 3, 4, 6)


class Counting:
    """The model, recording the rows of every forward_scale call."""

    def __init__(self, model):
        self.model, self.rows = model, []

    def __getattr__(self, name):
        return getattr(self.model, name)

    def forward_scale(self, state, k, latent, value_weights=None):
        self.rows.append(state.rows)
        return self.model.forward_scale(state, k, latent, value_weights)


def rows_per_scale(model, guider, cond):
    counting = Counting(model)
    sample(counting, guider, Generation(cond, seed=0, draw=Draw(top_k=20)))
    return counting.rows


@pytest.mark.parametrize("guider", [CFG(3.0, "constant", start_scale=2, end_scale=4),
                                    IGG(2.0, "constant", start_scale=2, end_scale=4)])
def test_non_autoregressive_switti_runs_the_uncond_rows_on_the_guided_scales_only(guider):
    """Scales 2 and 3 guided: 2B rows there, B elsewhere, before the window as after it."""
    assert rows_per_scale(tiny_switti(patch_nums=PN), guider, random_text(2)) == [2, 2, 4, 4, 2]


def test_autoregressive_models_keep_the_uncond_cache_up_to_the_last_guided_scale():
    guider = CFG(3.0, "constant", start_scale=2, end_scale=4)
    assert rows_per_scale(tiny_switti(patch_nums=PN, autoregressive=True), guider, random_text(2)) == [4, 4, 4, 4, 2]
    assert rows_per_scale(tiny_model(patch_nums=PN), guider, [1, 2]) == [4, 4, 4, 4, 2]


@pytest.mark.parametrize("name", ["var", "switti"])
def test_ssg_alone_costs_no_rows_and_softcfg_those_of_its_base(name):
    model, cond = (tiny_model(patch_nums=PN), [1, 2]) if name == "var" else (tiny_switti(patch_nums=PN), random_text(2))
    assert rows_per_scale(model, SSG(0.4), cond) == [2] * len(PN)  # post-processing of l_c only
    assert rows_per_scale(model, None, cond) == [2] * len(PN)
    if name == "var":  # SoftCFG weights the cached uncond values: the rows of its CFG base, no more
        assert rows_per_scale(model, SoftCFG(1.0, base=CFG(2.0)), cond) == rows_per_scale(model, CFG(2.0), cond)
