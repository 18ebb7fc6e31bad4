"""The list inputs (CFG custom_cfgs, Token Pruning keep_ratios, Guidance Sweep strengths) and validate_inputs'
reports in the real server: empty entries and non-numbers are refused at validation naming the input, the entry
and the range; line breaks separate entries; an unused field is not checked; a refused list is reported on the
inputs the check reads (ComfyUI repeats a validate_inputs failure for every input the signature declares; loaders
declare all their combos, which ComfyUI 0.3.75 does not check itself); missing and oddly typed loader inputs."""
import json

import pytest

from scalewise.models.shapes import BUILTIN_NAME

from .test_infinity_nodes import loader_graph
from .test_reliability import outcome
from .test_token_pruning import pruning_graph


def cfg_graph(comfy, schedule="custom", custom_cfgs="3, 3"):
    g = comfy.graph_builder()
    model = g.node("ScalewiseVARLoader", var_name=BUILTIN_NAME, vae_name=BUILTIN_NAME, dtype="fp32")
    cond = g.node("ScalewiseImageNetClass", class_name="tiny-shapes 5: star", class_id=-1, batch_classes="")
    cfg = g.node("ScalewiseCFGGuider", cfg=3.0, schedule=schedule, start_scale=0, end_scale=0, power=1.0,
                 custom_cfgs=custom_cfgs)
    sampler = g.node("ScalewiseSampler", model=model.out(0), conditioning=cond.out(0), guider=cfg.out(0),
                     seed=7, batch_size=1, top_k=0, top_p=0.9, more_smooth=False, preview="off",
                     smooth_start_scale=0, last_scale_temperature=1.0)
    g.node("PreviewImage", images=sampler.out(0))
    return g.finalize()


def node_errors(result, class_type):
    """[(input_name, details)] of the 400 body's errors for the node of `class_type`."""
    nodes = [n for n in (result.entry.get("node_errors") or {}).values() if n["class_type"] == class_type]
    assert len(nodes) == 1, result.message
    return [(e["extra_info"]["input_name"], e["details"]) for e in nodes[0]["errors"]]


@pytest.mark.parametrize("text, message", [
    ("3,,3", "custom_cfgs: entry 2 is empty"),
    ("nan, 3", "custom_cfgs: entry 1 is nan, not a finite number (allowed 0.0..30.0)"),
    ("3, inf", "custom_cfgs: entry 2 is inf, not a finite number (allowed 0.0..30.0)"),
    ("1e10", "custom_cfgs: entry 1 is 1e10, out of range (allowed 0.0..30.0)"),
    ("31", "custom_cfgs: entry 1 is 31, out of range (allowed 0.0..30.0)"),
    ("1_000", "custom_cfgs: entry 1 is '1_000', not a number"),
])
def test_bad_custom_cfgs_are_refused_at_validation(pack_loaded, text, message):
    result = outcome(pack_loaded, cfg_graph(pack_loaded, custom_cfgs=text))
    assert result.kind == "rejected" and message in result.message, result.message
    errors = node_errors(result, "ScalewiseCFGGuider")
    # reported on the field and on the schedule that makes it used, on nothing else (cfg, power, windows)
    assert {name for name, _ in errors} == {"schedule", "custom_cfgs"}, errors
    assert len(errors) == 2 and all(message in details for _, details in errors)


def test_custom_cfgs_from_a_multiline_text_node_and_an_unused_field(pack_loaded):
    assert outcome(pack_loaded, cfg_graph(pack_loaded, custom_cfgs="3\n3\n2\n1\n")).kind == "success"
    assert outcome(pack_loaded, cfg_graph(pack_loaded, custom_cfgs="3;\n2,")).kind == "success"
    # not the custom schedule: custom_cfgs is unused and not checked, as Token Pruning's keep_ratios
    assert outcome(pack_loaded, cfg_graph(pack_loaded, schedule="linear", custom_cfgs="nan, ,x")).kind == "success"
    empty = outcome(pack_loaded, cfg_graph(pack_loaded, custom_cfgs=""))
    assert empty.kind == "rejected" and "custom_cfgs: the custom schedule needs one cfg per scale" in empty.message


def test_keep_ratios_problems_are_reported_on_the_inputs_checked(pack_loaded):
    zero = outcome(pack_loaded, pruning_graph(pack_loaded, preset="custom", keep_ratios="0")[0])
    assert zero.kind == "rejected"
    errors = node_errors(zero, "ScalewiseTokenPruning")
    assert {name for name, _ in errors} == {"preset", "keep_ratios"}, errors   # skip_last: not involved
    assert all("keep_ratios: entry 1 is 0, out of range (allowed above 0.0 up to 1.0)" in d for _, d in errors)
    gap = outcome(pack_loaded, pruning_graph(pack_loaded, preset="custom", keep_ratios="0.5,,0.25")[0])
    assert gap.kind == "rejected" and "keep_ratios: entry 2 is empty" in gap.message
    lines = outcome(pack_loaded, pruning_graph(pack_loaded, preset="custom", keep_ratios="0.5\n0.25")[0])
    assert lines.kind == "success", lines.message
    unused = outcome(pack_loaded, pruning_graph(pack_loaded, preset="fastvar", keep_ratios="0")[0])
    assert unused.kind == "success", unused.message


def test_a_missing_model_file_is_refused_before_loading_with_one_message(pack_loaded):
    prompt, _ = loader_graph(pack_loaded, infinity="missing_infinity.pth", vae="missing_vae.pth")
    result = outcome(pack_loaded, prompt)
    assert result.kind == "rejected"
    errors = node_errors(result, "ScalewiseInfinityLoader")
    # ComfyUI lists a failed validate_inputs on each input it declares; the loader declares its combos, which
    # ComfyUI 0.3.75 does not check itself (a V3 combo), so the one problem appears on each of them
    assert {name for name, _ in errors} == {"infinity_name", "vae_name", "resolution", "dtype"}, errors
    assert all("infinity_name: 'missing_infinity.pth' is not in models/infinity" in d for _, d in errors)


def test_a_missing_or_odd_loader_input_is_named(pack_loaded):
    """A missing combo gets ComfyUI's own "Required input is missing" (validate_inputs' parameters default to
    None), and a combo value of another type (a list, a dict) is named with the input."""
    prompt, _ = loader_graph(pack_loaded)
    loader = next(k for k, v in prompt.items() if v["class_type"] == "ScalewiseInfinityLoader")
    missing = json.loads(json.dumps(prompt))
    del missing[loader]["inputs"]["dtype"]
    result = outcome(pack_loaded, missing)
    assert result.kind == "rejected" and "Required input is missing" in result.message, result.message[:2000]
    assert "validate_inputs() missing" not in result.message
    for value in (["256×256 (1:1, 0.06M)"], {"a": 1}):
        odd = json.loads(json.dumps(prompt))
        odd[loader]["inputs"]["resolution"] = value
        result = outcome(pack_loaded, odd)
        assert result.kind == "rejected", result.message[:2000]
        assert "resolution: expected one of its 60 options, got" in result.message, result.message[:2000]
