import pytest

from scalewise.guidance import CFG, IGG, SSG, SoftCFG


@pytest.mark.parametrize("guider,field", [(CFG(1.5, "constant"), "cfg"), (IGG(1.85, window="auto"), "scale"),
                                          (SoftCFG(1.0, base=CFG(2.0)), "strength"),
                                          (SSG(0.1, "linear_increase", base=IGG(3.0)), "beta")])
def test_with_strength_changes_only_the_strength_of_the_top(guider, field):
    assert guider.strength_field == field
    again = guider.with_strength(2.5)
    assert type(again) is type(guider) and getattr(again, field) == 2.5 and again.guidance_strength == 2.5
    assert again.base is guider.base                      # the stack below is shared, unchanged
    others = {k: v for k, v in vars(guider).items() if k != field}
    assert {k: v for k, v in vars(again).items() if k != field} == others
    assert getattr(guider, field) != 2.5                  # immutable: the original is untouched


def test_with_strength_checks_the_range():
    with pytest.raises(ValueError, match="cfg must be"):
        CFG().with_strength(1000)
    with pytest.raises(ValueError, match="softcfg strength"):
        SoftCFG(base=CFG()).with_strength(-1)


def test_custom_ssg_schedule_has_no_single_strength():
    with pytest.raises(ValueError, match="custom beta schedule"):
        SSG(schedule="custom", custom_betas=(0.0, 0.1)).with_strength(0.2)
