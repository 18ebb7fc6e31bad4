import math

import numpy as np
import pytest
import torch

from scalewise.guidance.balance import Balance, balance_point, line_chart, parse_strengths, render_balance_plot


def test_parse_strengths():
    assert parse_strengths("1, 2, 3, 4, 6") == (1.0, 2.0, 3.0, 4.0, 6.0)
    assert parse_strengths(" 6;1.5  0.25,") == (0.25, 1.5, 6.0)
    assert parse_strengths("1e0, -0.5") == (-0.5, 1.0)
    assert parse_strengths("3\n1\n2\n") == (1.0, 2.0, 3.0)   # a multiline text node


@pytest.mark.parametrize("text,fragment", [("", "empty"), (" , ;", "empty"), ("1, two, 3", "entry 2 is 'two', not a number"),
                                           ("1, nan", "entry 2 is nan, not a finite"), ("1,,2", "entry 2 is empty"),
                                           ("1, 1_000", "entry 2 is '1_000', not a number"), ("inf", "not a finite"),
                                           ("1, 2, 1.0", "1 appears twice")])
def test_parse_strengths_errors_name_the_input(text, fragment):
    with pytest.raises(ValueError) as info:
        parse_strengths(text, name="strengths")
    assert str(info.value).startswith("strengths:") and fragment in str(info.value)


def test_crossing_is_interpolated():
    # E - D = 0.4, 0.2, -0.2 -> zero halfway between 2 and 4
    assert balance_point([1, 2, 4], [0.9, 0.7, 0.5], [0.5, 0.5, 0.7]) == Balance(3.0, "crossing", 0.0)
    # the order of the points does not matter; a point exactly on E = D is the crossing
    assert balance_point([4, 1, 2], [0.5, 0.9, 0.6], [0.5, 0.1, 0.3]) == Balance(4.0, "crossing", 0.0)
    assert balance_point([1, 2], [0.4, 0.9], [0.4, 0.1]) == Balance(1.0, "crossing", 0.0)
    # first sign change wins
    b = balance_point([0, 1, 2, 3], [1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5])
    assert b.kind == "crossing" and b.strength == pytest.approx(0.5)


def test_closest_approach_without_crossing():
    # the tiny-shapes benchmark shape: E ~ 0.993, D rising slowly, never meet
    b = balance_point([1, 2, 3, 4, 6], [0.993] * 5, [0.029, 0.030, 0.030, 0.031, 0.035])
    assert b.kind == "closest" and b.strength == 6.0 and b.gap == pytest.approx(0.993 - 0.035)


def test_nan_points_are_skipped():
    b = balance_point([1, 2, 3], [math.nan, 0.8, 0.2], [0.5, 0.6, 0.6])
    assert b.kind == "crossing" and b.strength == pytest.approx(2 + 0.2 / 0.6)
    assert balance_point([1, 2], [math.nan, 0.5], [0.1, math.nan]) is None


def test_plot_marks_the_balance():
    xs, even, div = (1.0, 2.0, 4.0), [0.9, 0.7, 0.5], [0.5, 0.5, 0.7]
    without = render_balance_plot(xs, even, div, None)
    marked = render_balance_plot(xs, even, div, balance_point(xs, even, div))
    assert marked.shape == (1, 440, 720, 3) and marked.dtype == torch.float32
    assert 0 <= marked.min() and marked.max() <= 1
    changed = (marked != without).any(-1)[0]
    # the balance line is vertical: its pixels span most of the plot's height at one x
    columns = changed[:340].sum(0)
    assert columns.max() > 100
    evenness_only = render_balance_plot(xs, even, None, None, size=(400, 300))
    assert evenness_only.shape == (1, 300, 400, 3)


def _pixels_of(image, colour) -> int:
    return int((np.asarray(image) == np.array(colour)).all(-1).sum())


def test_line_chart_fits_its_axis_to_the_values_when_asked():
    red = (255, 0, 0)
    series = [("a", [(0, 100.0), (1, 300.0), (2, math.nan)], red)]
    fitted = line_chart(series, y_range=None, size=(400, 300))
    fixed = line_chart(series, y_range=(0.0, 1.0), size=(400, 300))
    assert fitted.size == (400, 300)
    # on a 0-1 axis the points lie off the canvas: only the legend's square (15 x 11 px) is red; fitted, the line
    # (3 px wide, about 300 px long) and its dots are drawn too
    assert _pixels_of(fixed, red) == 15 * 11 and _pixels_of(fitted, red) > 15 * 11 + 3 * 250


def test_line_chart_legend_holds_every_series():
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255), (255, 128, 0)]
    series = [(f"s{i}", [(0, 0.1 * i)], c) for i, c in enumerate(colours)]
    chart = line_chart(series, marker=(0.0, "marker", (128, 128, 255)), size=(400, 380))
    width, height = chart.size
    bottom = chart.crop((0, height - 100, width, height))  # the legend: four rows under the axes
    assert all(_pixels_of(bottom, c) >= 14 * 10 for c in colours + [(128, 128, 255)])
