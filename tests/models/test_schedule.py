"""models/schedule.py: the token pyramid of a scale schedule, checked on small cases written out by hand and on the
sequence lengths the official files record (tests/data/keys: lvl_1L [1, 680], [1, 2240], [1, 9451])."""
import pytest
import torch

from scalewise.models.schedule import SCHEDULES, Schedule

INF = float("-inf")


def test_small_schedule_by_hand():
    s = Schedule((1, 2, 3))
    assert s.num_scales == 3 and s.lengths == (1, 4, 9)
    assert s.offsets == (0, 1, 5, 14) and s.seq_len == 14
    assert [s.bounds(k) for k in range(3)] == [(0, 1), (1, 5), (5, 14)]
    assert s.levels().tolist() == [0] + [1] * 4 + [2] * 9
    assert s.levels().dtype == torch.int64
    assert s.image_size() == 48 and s.image_size(downsample=8) == 24


def test_two_scale_masks_by_hand():
    """(1, 2): position 0 is scale 0, positions 1-4 scale 1. Rows are queries, columns keys."""
    causal = [[0, INF, INF, INF, INF]] + [[0, 0, 0, 0, 0]] * 4
    diagonal = [[0, INF, INF, INF, INF]] + [[INF, 0, 0, 0, 0]] * 4
    s = Schedule((1, 2))
    for mask, expected in ((s.attention_mask(causal=True), causal), (s.attention_mask(causal=False), diagonal)):
        assert mask.dtype == torch.float32 and mask.tolist() == expected


def test_trained_schedules_have_the_recorded_lengths():
    assert {px: Schedule(p).seq_len for px, p in SCHEDULES.items()} == {256: 680, 512: 2240, 1024: 9451}
    assert {px: Schedule(p).image_size() for px, p in SCHEDULES.items()} == {256: 256, 512: 512, 1024: 1024}


def test_levels_give_back_their_schedule():
    assert Schedule.from_levels(Schedule((1, 2, 3)).levels()[None]) == Schedule((1, 2, 3))
    assert Schedule.from_levels(torch.tensor([0, 2, 2, 2, 2])) is None  # level 1 has no position
    assert Schedule.from_levels(torch.tensor([-1, 0])) is None


@pytest.mark.parametrize("bad", [(), (1, 0), (1, 2.5), [1, -2]])
def test_bad_patch_nums_are_named(bad):
    with pytest.raises(ValueError, match="patch_nums"):
        Schedule(bad)


def test_scale_out_of_range():
    with pytest.raises(IndexError, match="scale 3 is out of range.*0..2"):
        Schedule((1, 2, 3)).bounds(3)
    with pytest.raises(IndexError):
        Schedule((1, 2, 3)).bounds(-1)
