"""tools/gpu_common.py: the token agreement figures and the interleaved timing loop of the GPU scripts (what
needs neither a GPU nor the official code; the whole scripts run with --tiny against it, see tools/README.md)."""
import pytest
import torch

from scalewise.tools import gpu_common


def test_agreement_figures_per_scale_and_overall():
    ref = [torch.tensor([[[1]]]), torch.tensor([[[1, 2], [3, 4]]])]
    got = [torch.tensor([[[1]]]), torch.tensor([[[1, 2], [0, 4]]])]
    f = gpu_common.agreement_figures(ref, got)
    assert f["agreement_per_scale"] == [1.0, 0.75]
    assert f["token_agreement"] == pytest.approx(4 / 5)
    assert f["first_diverging_scale"] == 1 and f["tokens_equal"] is False
    same = gpu_common.agreement_figures(ref, ref)
    assert same["tokens_equal"] is True and same["first_diverging_scale"] is None


def test_interleaved_runs_round_robin_and_records_out_of_memory():
    order = []

    def ok():
        order.append("a")
        return torch.zeros(1)

    def oom():
        order.append("b")
        raise RuntimeError("CUDA out of memory. Tried to allocate")

    timer = gpu_common.Timer(torch, torch.device("cpu"))
    res = gpu_common.interleaved(timer, {"a": ok, "b": oom}, {}, warmup=1, repeat=3, budget_s=1e9,
                                 deadline=gpu_common.Deadline(1e9), is_oom=lambda e: "out of memory" in str(e))
    assert order == ["a", "b", "a", "a", "a"]  # b failed once (in the warm-up) and was not run again
    assert len(res["a"]["times"]) == 3 and res["a"]["error"] is None
    assert res["b"]["times"] == [] and res["b"]["error"] == "out of memory"
    # any other error is recorded too (the device call keeps its other figures), with the exception named
    res = gpu_common.interleaved(timer, {"c": lambda: (_ for _ in ()).throw(ValueError("bug here"))}, {}, warmup=0,
                                 repeat=2, budget_s=1, deadline=gpu_common.Deadline(1), is_oom=lambda e: False)
    assert res["c"]["error"] == "ValueError: bug here" and res["c"]["times"] == []


def test_missing_figures_keep_the_table_columns():
    assert gpu_common.fmt(None, "9.2f") == "        -" and gpu_common.fmt(1.5, "9.2f") == "     1.50"
    assert gpu_common.fmt(None, ".1f") == "-"
