"""parse_number_list: the list inputs' parser (custom_cfgs, custom_betas, keep_ratios, strengths)."""
import pytest
from scalewise.guidance.schedules import parse_number_list


@pytest.mark.parametrize("text, expected", [
    ("3, 3, 2, 1", (3.0, 3.0, 2.0, 1.0)),
    ("3\n3\n2\n1", (3.0, 3.0, 2.0, 1.0)),            # a multiline text node
    ("3\n3\n2\n1\n", (3.0, 3.0, 2.0, 1.0)),          # its trailing line break
    ("3;2 ; 1", (3.0, 2.0, 1.0)),
    ("3,\n2,\n1,", (3.0, 2.0, 1.0)),                 # comma and line break together: one separator; a trailing one
    ("3\n\n2", (3.0, 2.0)),                          # a blank line is no entry
    (" 1e-1, +.5, 2. ", (0.1, 0.5, 2.0)),
    ("", ()), ("  \n ", ()),
])
def test_accepted_lists(text, expected):
    assert parse_number_list(text, "custom_cfgs", 0.0, 30.0) == expected


@pytest.mark.parametrize("text, message", [
    ("3,,3", "custom_cfgs: entry 2 is empty"),          # not dropped: it would shift scale 3's cfg to scale 2
    ("3, ,3", "custom_cfgs: entry 2 is empty"),
    (",3", "custom_cfgs: entry 1 is empty"),
    ("3,\n,3", "custom_cfgs: entry 2 is empty"),
    ("nan, 3", r"custom_cfgs: entry 1 is nan, not a finite number \(allowed 0.0..30.0\)"),
    ("3, -inf", r"custom_cfgs: entry 2 is -inf, not a finite number \(allowed 0.0..30.0\)"),
    ("1e10", r"custom_cfgs: entry 1 is 1e10, out of range \(allowed 0.0..30.0\)"),
    ("3, 1e400", r"custom_cfgs: entry 2 is 1e400, not a finite number"),
    ("2, -0.5", r"custom_cfgs: entry 2 is -0.5, out of range \(allowed 0.0..30.0\)"),
    ("1_000", r"custom_cfgs: entry 1 is '1_000', not a number: .*\(allowed 0.0..30.0\)"),
    ("0x10", "custom_cfgs: entry 1 is '0x10', not a number"),
    ("3 3", "custom_cfgs: entry 1 is '3 3', not a number"),   # spaces separate only where `spaces` is set
    ("\u0663", "custom_cfgs: entry 1 is '\u0663', not a number"),   # a non-ASCII digit, which float() accepts
])
def test_refused_lists_name_the_input_the_entry_and_the_range(text, message):
    with pytest.raises(ValueError, match=message):
        parse_number_list(text, "custom_cfgs", 0.0, 30.0)


def test_spaces_and_an_open_low_end():
    assert parse_number_list("1 2,3\n4", "strengths", 0.0, 30.0, spaces=True) == (1.0, 2.0, 3.0, 4.0)
    with pytest.raises(ValueError, match="strengths: entry 2 is empty"):
        parse_number_list("1,,2", "strengths", 0.0, 30.0, spaces=True)
    assert parse_number_list("1, 0.25", "keep_ratios", 0.0, 1.0, low_open=True) == (1.0, 0.25)
    with pytest.raises(ValueError, match=r"keep_ratios: entry 1 is 0, out of range \(allowed above 0.0 up to 1.0\)"):
        parse_number_list("0", "keep_ratios", 0.0, 1.0, low_open=True)
