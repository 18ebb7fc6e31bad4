"""Issue 13.1: every widget input of every node of the pack works when it is driven by a link, through the real
server. ComfyUI checks min/max/options only for values typed into widgets: a linked value reaches validate_inputs
as None and the node unchecked, so each node checks the real value when it runs, naming the input.

Links come from ComfyUI's core primitive nodes (PrimitiveInt/Float/String/Boolean) and, for combos and wrongly typed
values, from tests/test_packs/scalewise_any_value (an "any type" output, as community packs offer).
"""
from __future__ import annotations

import copy
import json
import math

import pytest

from scalewise.models.shapes import BUILTIN_NAME

from .test_infinity_text_nodes import text_graph as infinity_text_graph
from .test_reliability import ALLOWED_ERRORS, VAR, SW, outcome, output_images
from .test_token_pruning import pruning_graph
from .test_var_clip_nodes import var_clip_graph

PRIMITIVES = {"INT": "PrimitiveInt", "FLOAT": "PrimitiveFloat", "STRING": "PrimitiveString",
              "BOOLEAN": "PrimitiveBoolean"}
ANY = "ScalewiseTestAnyValue"


def widget_specs(info: dict) -> dict[str, tuple[str, dict]]:
    """input name -> (INT | FLOAT | STRING | BOOLEAN | COMBO, options) of a node's object_info."""
    out = {}
    for group in ("required", "optional"):
        for name, spec in info["input"].get(group, {}).items():
            kind, opts = spec[0], (spec[1] if len(spec) > 1 else {})
            if isinstance(kind, list):
                kind, opts = "COMBO", {**opts, "options": kind}
            if kind in (*PRIMITIVES, "COMBO"):
                out[name] = (kind, opts)
    return out


def pack_widgets(comfy) -> dict[str, dict]:
    """The widget inputs of the pack's own nodes (those of the module that registers ScalewiseSampler: the test-only
    packs in tests/test_packs register other Scalewise* ids)."""
    info = comfy.object_info()
    module = info["ScalewiseSampler"]["python_module"]
    return {ct: widget_specs(i) for ct, i in info.items() if i.get("python_module") == module}


def linked(comfy, prompt, only=None, value=None, via=None):
    """The prompt with every widget input of the pack's nodes (or only the (class_type, input) `only`, then
    carrying `value`) fed by a link from a primitive node (or `via` = ANY). Returns (prompt, linked pairs)."""
    widgets = pack_widgets(comfy)
    out, done = copy.deepcopy(prompt), []
    for node in list(out.values()):
        ct = node["class_type"]
        for name, (_, opts) in widgets.get(ct, {}).items():
            current = node["inputs"].get(name, opts.get("default"))  # optional inputs too, at their default
            if isinstance(current, list) or only not in (None, (ct, name)):
                continue
            carried = current if only is None else value
            kind = widgets[ct][name][0]
            source = f"link{len(done)}"
            if (via or PRIMITIVES.get(kind, ANY)) == ANY:
                out[source] = {"class_type": ANY, "inputs": {"value_json": json.dumps(carried)}}
            else:
                out[source] = {"class_type": PRIMITIVES[kind], "inputs": {"value": carried}}
            node["inputs"][name] = [source, 0]
            done.append((ct, name))
    return out, done


def comparison_graph(comfy, node: str):
    """Compare Guiders (CFG and IGG rows) or Guidance Sweep (CFG at two strengths) on the built-in model."""
    g = comfy.graph_builder()
    model = g.node("ScalewiseVARLoader", var_name=BUILTIN_NAME, vae_name=BUILTIN_NAME, dtype="fp32")
    cond = g.node("ScalewiseImageNetClass", class_name="tiny-shapes 5: star", class_id=-1, batch_classes="")
    cfg = g.node("ScalewiseCFGGuider", cfg=3.0, schedule="constant", start_scale=0, end_scale=0, power=1.0)
    settings = dict(model=model.out(0), conditioning=cond.out(0), seed=4, images_per_row=2, top_k=0, top_p=0.8,
                    more_smooth=False, preview="off", smooth_start_scale=0, last_scale_temperature=1.0)
    if node == "ScalewiseCompareGuiders":
        igg = g.node("ScalewiseIGGGuider", scale=3.0, schedule="constant", window="global", window_size=3,
                     operand="raw_logits", start_scale=0, end_scale=0)
        out = g.node(node, **settings, guider_1=cfg.out(0), guider_2=igg.out(0))
    else:
        out = g.node(node, **settings, guider=cfg.out(0), strengths="1, 3")
    g.node("SaveImage", images=out.out(0), filename_prefix="linked_comparison")
    return g.finalize()


BUILDS = {"var+igg+ssg": lambda c: VAR(c, guider="ssg"), "var+softcfg": lambda c: VAR(c, guider="softcfg"),
          "switti": lambda c: SW(c), "compare": lambda c: comparison_graph(c, "ScalewiseCompareGuiders"),
          "sweep": lambda c: comparison_graph(c, "ScalewiseGuidanceSweep"),
          "var-clip": lambda c: var_clip_graph(c, guider="cfg")[0],
          "infinity": lambda c: infinity_text_graph(c, negative="blurry", sink="infinity")[0],
          "pruning": lambda c: pruning_graph(c, preset="custom", keep_ratios="0.5", skip_last=1)[0]}


def test_every_widget_input_works_linked(pack_loaded):
    """Each graph once with typed values and once with every pack widget linked: the same images."""
    comfy = pack_loaded
    covered = set()
    for name, build in BUILDS.items():
        prompt = build(comfy)
        plain = outcome(comfy, prompt)
        assert plain.kind == "success", f"{name}: {plain.message}"
        wired, done = linked(comfy, prompt)
        got = outcome(comfy, wired)
        assert got.kind == "success", f"{name} with linked inputs {done}: {got.message}"
        assert output_images(comfy, got.entry) == output_images(comfy, plain.entry), name
        covered |= set(done)
    every = {(ct, name) for ct, specs in pack_widgets(comfy).items() for name in specs}
    assert every - covered == set(), "widget inputs no test drives by a link"


def builtin_graph(comfy, class_id):
    g = comfy.graph_builder()
    model = g.node("ScalewiseVARLoader", var_name=BUILTIN_NAME, vae_name=BUILTIN_NAME, dtype="fp32")
    if class_id is None:
        ids = g.node("PrimitiveInt", value=5).out(0)
    else:
        ids = class_id
    cond = g.node("ScalewiseImageNetClass", class_name="207: golden retriever", class_id=ids, batch_classes="")
    cfg = g.node("ScalewiseCFGGuider", cfg=3.0, schedule="constant", start_scale=0, end_scale=0, power=1.0)
    sampler = g.node("ScalewiseSampler", model=model.out(0), conditioning=cond.out(0), guider=cfg.out(0), seed=3,
                     batch_size=1, top_k=0, top_p=0.8, more_smooth=False, preview="off", smooth_start_scale=0,
                     last_scale_temperature=1.0)
    g.node("SaveImage", images=sampler.out(0), filename_prefix="linked_class")
    return g.finalize()


def test_primitive_int_drives_class_id(pack_loaded):
    """The issue's example: a core PrimitiveInt (5 = star) into Class (VAR)'s class_id with the built-in model."""
    comfy = pack_loaded
    typed = outcome(comfy, builtin_graph(comfy, 5))
    wired = outcome(comfy, builtin_graph(comfy, None))
    assert typed.kind == wired.kind == "success", wired.message
    assert output_images(comfy, wired.entry) == output_images(comfy, typed.entry)


def _bad_cases():
    """(class_type, input, bad value, graph, fragments the error must hold, `via`)."""
    var, igg, ssg, soft, sw = (lambda c: VAR(c)), (lambda c: VAR(c, guider="igg")), BUILDS["var+igg+ssg"], \
        BUILDS["var+softcfg"], BUILDS["switti"]
    return [
        ("ScalewiseImageNetClass", "class_id", 1001, var, ["class_id", "1001", "max of 1000"], None),
        ("ScalewiseImageNetClass", "class_id", -2, var, ["class_id", "-2", "min of -1"], None),
        ("ScalewiseImageNetClass", "batch_classes", "3, 5000", var, ["batch_classes", "5000", "0..1000"], None),
        ("ScalewiseImageNetClass", "class_name", "golden retriever", var,
         ["class_name", "golden retriever", "207: golden retriever"], ANY),
        ("ScalewiseVARLoader", "var_name", "var_d99.pth", var, ["var_name", "var_d99.pth", "models/var"], ANY),
        ("ScalewiseVARLoader", "dtype", "fp8", var, ["dtype", "fp8"], ANY),
        ("ScalewiseSwittiLoader", "switti_name", "Nope/model.safetensors", sw,
         ["switti_name", "Nope/model.safetensors", "models/switti"], ANY),
        ("ScalewiseSampler", "top_k", 5000, var, ["top_k", "5000", "max of 4096"], None),
        ("ScalewiseSampler", "top_k", -1, var, ["top_k", "-1", "min of 0"], None),
        ("ScalewiseSampler", "batch_size", 0, var, ["batch_size", "0", "min of 1"], None),
        ("ScalewiseSampler", "seed", -5, var, ["seed", "-5", "min of 0"], None),
        ("ScalewiseSampler", "top_p", 1.5, var, ["top_p", "1.5", "max of 1"], None),
        ("ScalewiseSampler", "top_p", math.nan, var, ["top_p", "nan", "finite"], None),
        ("ScalewiseSampler", "last_scale_temperature", 0.0, var, ["last_scale_temperature", "min of 0.01"], None),
        ("ScalewiseSampler", "smooth_start_scale", 64, var, ["smooth_start_scale", "64", "max of 63"], None),
        ("ScalewiseSampler", "more_smooth", "yes", var, ["more_smooth", "'yes'", "true/false"], ANY),
        ("ScalewiseSampler", "preview", "sometimes", var, ["preview", "'sometimes'", "every scale"], ANY),
        ("ScalewiseSampler", "top_k", "50", var, ["top_k", "'50'", "integer"], ANY),
        ("ScalewiseCFGGuider", "cfg", 31.0, var, ["cfg", "31.0", "max of 30"], None),
        ("ScalewiseCFGGuider", "cfg", math.inf, var, ["cfg", "inf", "finite"], ANY),
        ("ScalewiseCFGGuider", "end_scale", -64, var, ["end_scale", "-64", "min of -63"], None),
        ("ScalewiseCFGGuider", "schedule", "square", var, ["schedule", "'square'", "linear"], ANY),
        ("ScalewiseIGGGuider", "window_size", 0, igg, ["window_size", "0", "min of 1"], None),
        ("ScalewiseIGGGuider", "scale", -1.0, igg, ["scale", "-1.0", "min of 0"], None),
        ("ScalewiseSSGGuider", "beta", 2.5, ssg, ["beta", "2.5", "max of 2"], None),
        ("ScalewiseSSGGuider", "custom_betas", "0, high", ssg, ["custom_betas", "entry 2 is 'high', not a number", "allowed 0.0..2.0"], None),
        ("ScalewiseSSGGuider", "dse_rescale", 1, ssg, ["dse_rescale", "true/false"], ANY),
        ("ScalewiseSoftCFGGuider", "floor", 1.5, soft, ["floor", "1.5", "max of 1"], None),
        ("ScalewiseGuidanceHeatmap", "overlay_alpha", -0.5, var, ["overlay_alpha", "-0.5", "min of 0"], None),
        ("ScalewiseSwittiTextEncode", "positive", 7, sw, ["positive", "7", "text"], ANY),
        ("ScalewiseInfinityTextEncode", "negative", 7, BUILDS["infinity"], ["negative", "7", "text"], ANY),
        ("ScalewiseInfinityTextEncoderLoader", "text_encoder_name", "nope.safetensors", BUILDS["infinity"],
         ["text_encoder_name", "nope.safetensors", "models/text_encoders"], ANY),
        ("ScalewiseCompareGuiders", "images_per_row", 0, BUILDS["compare"], ["images_per_row", "0", "min of 1"],
         None),
        ("ScalewiseGuidanceSweep", "strengths", "1, x", BUILDS["sweep"], ["strengths", "entry 2 is 'x', not a number"],
         None),
    ]


@pytest.mark.parametrize("case", _bad_cases(), ids=lambda c: f"{c[0]}.{c[1]}={c[2]!r}")
def test_bad_value_through_a_link_is_named(pack_loaded, case):
    """A bad value on a link fails in its node, naming the input, the value and the bound; typed into the widget
    the same value is refused at validation with the same facts."""
    comfy = pack_loaded
    class_type, name, value, build, says, via = case
    wired, done = linked(comfy, build(comfy), only=(class_type, name), value=value, via=via)
    assert done, f"{class_type}.{name} is not in the graph"
    got = outcome(comfy, wired)
    assert got.kind == "error" and got.node == class_type, f"{got.kind} {got.node}: {got.message[:1500]}"
    assert got.exception_type.split(".")[-1] in ALLOWED_ERRORS, got.exception_type
    for fragment in says:
        assert fragment in got.message, f"{fragment!r} not in {got.message!r}"
    if via is None and not (isinstance(value, float) and not math.isfinite(value)):
        prompt = build(comfy)
        if class_type == "ScalewiseGuidanceHeatmap":  # an output node: ComfyUI runs the other outputs without it
            prompt = {k: n for k, n in prompt.items() if n["class_type"] != "SaveImage"}
        for node in prompt.values():
            if node["class_type"] == class_type:
                node["inputs"][name] = value
        typed = outcome(comfy, prompt)
        assert typed.kind == "rejected", f"typed {name}={value!r}: {typed.kind} {typed.message[:500]}"
        for fragment in says[:2]:
            assert fragment in typed.message, f"typed: {fragment!r} not in {typed.message!r}"
