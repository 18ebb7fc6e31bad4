import pytest

from scalewise.guidance import CFG, IGG, SSG, SoftCFG


@pytest.mark.parametrize("guider,field", [(CFG(1.5, "constant"), "cfg"), (IGG(1.85, window="auto"), "scale"),
                                          (SoftCFG(1.0, base=CFG(2.0)), "strength"),
                                          (SSG(0.1, "linear_increase", base=IGG(3.0)), "beta")])
def test_with_strength_changes_only_the_strength_of_the_top(guider, field):
    assert guider.strength_field == field
    again = guider.with_strength(1.25)
    assert type(again) is type(guider) and getattr(again, field) == 1.25 and again.guidance_strength == 1.25
    assert again.base is guider.base                      # the stack below is shared, unchanged
    others = {k: v for k, v in vars(guider).items() if k != field}
    assert {k: v for k, v in vars(again).items() if k != field} == others
    assert getattr(guider, field) != 1.25                  # immutable: the original is untouched


@pytest.mark.parametrize("guider, low, high", [(CFG(), 0.0, 30.0), (IGG(), 0.0, 30.0),
                                               (SoftCFG(base=CFG()), 0.0, 5.0), (SSG(), 0.0, 2.0)])
def test_strength_range_is_the_widget_range(guider, low, high):
    # the guider nodes' widgets (nodes/guiders.py) declare these ranges; the library accepts exactly them
    assert guider.strength_range == (low, high)
    assert guider.with_strength(low).guidance_strength == low and guider.with_strength(high).guidance_strength == high
    for outside in (low - 0.01, high + 0.01):
        with pytest.raises(ValueError, match=rf"must be in \[{low}, {high}\]"):
            guider.with_strength(outside)


def test_with_strength_checks_the_range():
    with pytest.raises(ValueError, match="cfg must be"):
        CFG().with_strength(1000)
    with pytest.raises(ValueError, match="softcfg strength"):
        SoftCFG(base=CFG()).with_strength(-1)


def test_custom_ssg_schedule_has_no_single_strength():
    with pytest.raises(ValueError, match="custom beta schedule"):
        SSG(schedule="custom", custom_betas=(0.0, 0.1)).with_strength(0.2)
