"""Guider nodes: each returns an immutable guider; the optional `base` input stacks them."""
from __future__ import annotations

from comfy_api.latest import io

from ..guidance import CFG, IGG, SSG, SoftCFG
from ..guidance.igg import OPERANDS, WINDOWS
from ..guidance.cfg import CFG_RANGE, CFG_SCHEDULES
from ..guidance.schedules import LIST_SEPARATORS, SCHEDULE_NAMES, fmt_range, parse_number_list
from ..guidance.softcfg import CONFIDENCES, NORMALIZATIONS
from ..guidance.ssg import BETA_SCHEDULES, INTERPOLATIONS, PRIOR_SOURCES
from .common import GuiderType, ScalewiseNode, checked_inputs
from .features import aliases, expert

GUIDER_CATEGORY = "sampling/scalewise/guiders"
SCHEDULE_TIP = ("How the strength grows over scales: linear = VAR's ramp (0 at the first scale, full at the last), "
                "constant = the same everywhere, cosine = slow start, fast finish (shape set by power).")
START_TIP = "First scale (0 = coarsest) that is guided; earlier scales use the conditional prediction only."
END_TIP = ("Scale where guidance stops: 0 = never, -3 = the last three scales unguided (faster: the unconditional "
           "branch is skipped there), 8 = scales 8 and up unguided.")


def _base_input():
    return GuiderType.Input("base", optional=True,
                            tooltip="Optional guider underneath: their effects combine (see the README's stacking "
                                    "rules).")


def _window_inputs():
    return [io.Int.Input("start_scale", default=0, min=0, max=63, tooltip=START_TIP),
            io.Int.Input("end_scale", default=0, min=-63, max=63, tooltip=END_TIP)]


class CFGGuider(ScalewiseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ScalewiseCFGGuider",
            display_name="Scale-wise CFG Guider",
            category=GUIDER_CATEGORY,
            **aliases("CFG", "classifier-free guidance", "guidance", "guider", "VAR", "Switti"),
            description=("Classifier-free guidance on the token logits: pushes each scale's prediction away from the "
                         "unconditional one, l_u + (1 + cfg x schedule)(l_c - l_u). VAR demo: cfg 4, FID protocol: "
                         "1.5; Switti: 6. Infinity counts from 1 as its own code does, l_u + (1 + (cfg - 1) x "
                         "schedule)(l_c - l_u): its published cfg 3 with the constant schedule."),
            inputs=[
                io.Float.Input("cfg", default=4.0, min=CFG_RANGE[0], max=CFG_RANGE[1], step=0.05,
                               tooltip="Guidance strength in the model's own convention: the push is 1 + cfg x "
                                       "schedule; 0 = no guidance. A ComfyUI-style CFG of c is cfg = c - 1 with the "
                                       "constant schedule. Typical 1.5-5. Infinity: as in its code, 1 = no "
                                       "guidance, the push is 1 + (cfg - 1) x schedule (published: 3, constant); "
                                       "below 1 weakens the prompt (0 = the unconditional prediction)."),
                io.Combo.Input("schedule", options=list(CFG_SCHEDULES), default="linear",
                               tooltip=SCHEDULE_TIP + " custom = one cfg per scale (custom_cfgs)."),
                *_window_inputs(),
                io.Float.Input("power", default=1.0, min=0.1, max=10.0, step=0.05,
                               tooltip="Shape of the cosine schedule: above 1 keeps guidance low for longer.", **expert()),
                _base_input(),
                io.String.Input("custom_cfgs", default="", optional=True,
                                tooltip="For the custom schedule: one cfg per scale, coarse to fine, separated by "
                                        f"{LIST_SEPARATORS}, each in {fmt_range(*CFG_RANGE)} in the model's "
                                        "convention (Infinity's cfg_list, e.g. '3, 3, 3, 2, 2, 1, 1'; below 1 "
                                        "weakens the prompt); scales past the list are unguided. cfg is then "
                                        "unused; other schedules ignore this field.", **expert()),
            ],
            outputs=[GuiderType.Output(display_name="guider")],
        )

    # ComfyUI reports a failed validate_inputs once per input it declares (execution.py validate_inputs): it
    # declares the field checked and the widget deciding whether it is used, nothing else.
    @classmethod
    def validate_inputs(cls, schedule=None, custom_cfgs=""):
        return cls.known_problem(schedule=schedule, custom_cfgs=custom_cfgs)

    @classmethod
    def check_values(cls, values):
        if values.get("schedule") == "custom" and values.get("custom_cfgs") is not None:
            try:
                _custom_cfgs(values["custom_cfgs"])
            except ValueError as e:
                return str(e)
        return None

    @classmethod
    @checked_inputs
    def execute(cls, cfg, schedule, start_scale, end_scale, power, base=None, custom_cfgs="") -> io.NodeOutput:
        values = _custom_cfgs(custom_cfgs) if schedule == "custom" else ()  # unused by the other schedules
        return io.NodeOutput(CFG(cfg=cfg, schedule=schedule, start_scale=start_scale, end_scale=end_scale,
                                 power=power, base=base, custom_cfgs=values))


class IGGGuider(ScalewiseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ScalewiseIGGGuider",
            display_name="Scale-wise IGG Guider",
            category=GUIDER_CATEGORY,
            **aliases("IGG", "information-grounding guidance", "guidance", "guider", "CFG", "VAR", "Switti"),
            description=("Information-Grounding Guidance (Nguyen et al. 2025, arXiv 2509.23876): each token's "
                         "guidance is replaced by an attention-weighted mix of the guidance of related tokens, so "
                         "weakly guided tokens borrow from the informative ones. Use a scale about 0.1-0.6 above "
                         "the CFG you would use (paper: 1.85 for VAR-d30, 2.1 for d36). Stacked on a CFG guider, "
                         "both terms add (the paper's mixed scheme)."),
            inputs=[
                io.Float.Input("scale", default=4.0, min=0.0, max=30.0, step=0.05,
                               tooltip="IGG strength, same convention as cfg (push = 1 + scale x schedule). "
                                       "Typical 1.5-5."),
                io.Combo.Input("schedule", options=list(SCHEDULE_NAMES), default="linear", tooltip=SCHEDULE_TIP),
                io.Combo.Input("window", options=[*WINDOWS, "custom"], default="global",
                               tooltip="Which tokens share guidance: global = the whole scale (paper default), "
                                       "auto = a square neighbourhood of side sqrt(tokens), custom = window_size."),
                io.Int.Input("window_size", default=3, min=1, max=127,
                             tooltip="Side of the square neighbourhood when window is custom; 1 = plain CFG.",
                             **expert()),
                io.Combo.Input("operand", options=list(OPERANDS), default="raw_logits",
                               tooltip="raw_logits = the paper's method; centered removes per-token offsets first "
                                       "(experimental).", **expert()),
                *_window_inputs(),
                _base_input(),
            ],
            outputs=[GuiderType.Output(display_name="guider")],
        )

    @classmethod
    @checked_inputs
    def execute(cls, scale, schedule, window, window_size, operand, start_scale, end_scale, base=None):
        win = window_size if window == "custom" else window
        return io.NodeOutput(IGG(scale=scale, schedule=schedule, window=win, operand=operand, start_scale=start_scale,
                                 end_scale=end_scale, base=base))


class SoftCFGGuider(ScalewiseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ScalewiseSoftCFGGuider",
            display_name="Scale-wise SoftCFG Guider",
            category=GUIDER_CATEGORY,
            **aliases("SoftCFG", "soft CFG", "guidance", "guider", "CFG", "VAR", "Switti"),
            description=("SoftCFG (Xu et al., ICLR 2026, arXiv 2510.00996), adapted to scale-wise models: the "
                         "unconditional branch forgets the tokens the model was already sure of, which keeps "
                         "guidance from fading. Modifies the CFG or IGG guider connected to base. Experimental on "
                         "VAR (unmeasured by the authors); not available for non-autoregressive Switti."),
            inputs=[
                GuiderType.Input("base", tooltip="The CFG or IGG guider whose unconditional branch is softened."),
                io.Float.Input("strength", default=1.0, min=0.0, max=5.0, step=0.05,
                               tooltip="How strongly confident tokens are faded from the unconditional branch; "
                                       "0 = plain CFG, 1 = paper default."),
                io.Combo.Input("normalization", options=list(NORMALIZATIONS), default="global",
                               tooltip="Step-Normalization: global = one token's worth of change spread over all "
                                       "earlier tokens (paper), per_scale = one per scale, none = raw (unstable).",
                               **expert()),
                io.Combo.Input("confidence", options=list(CONFIDENCES), default="max",
                               tooltip="Confidence of a token: max = its most likely code (paper), sampled = the "
                                       "probability of the code actually drawn.", **expert()),
                io.Float.Input("floor", default=0.05, min=0.0, max=1.0, step=0.01,
                               tooltip="Smallest weight a token keeps in the unconditional branch.", **expert()),
            ],
            outputs=[GuiderType.Output(display_name="guider")],
            is_experimental=True,
        )

    @classmethod
    @checked_inputs
    def execute(cls, base, strength, normalization, confidence, floor):
        return io.NodeOutput(SoftCFG(strength=strength, normalization=normalization, confidence=confidence,
                                     floor=floor, base=base))


class SSGGuider(ScalewiseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ScalewiseSSGGuider",
            display_name="Scale-wise SSG Guider",
            category=GUIDER_CATEGORY,
            **aliases("SSG", "scaled spatial guidance", "guidance", "guider", "detail", "VAR", "Switti"),
            description=("Scaled Spatial Guidance (Shin et al., ICLR 2026, arXiv 2602.05534): each scale is pushed "
                         "towards what is new compared with the previous, coarser scale (detail), using a "
                         "frequency-domain prior. Works on top of any guider or alone. Reconstructed from the paper "
                         "(official code unreleased): experimental; the paper's beta values are unpublished."),
            inputs=[
                io.Float.Input("beta", default=0.1, min=SSG.strength_range[0], max=SSG.strength_range[1], step=0.01,
                               tooltip="Strength of the push towards new detail; 0 = off. Try 0.05-0.3."),
                io.Combo.Input("schedule", options=list(BETA_SCHEDULES), default="constant",
                               tooltip="beta over scales: constant, linear_decay (strong early), linear_increase "
                                       "(strong late), or custom (custom_betas)."),
                io.String.Input("custom_betas", default="",
                                tooltip="For the custom schedule: one beta per scale, separated by "
                                        f"{LIST_SEPARATORS}, each in {fmt_range(*SSG.strength_range)}, e.g. "
                                        "'0, 0.2, 0.2, 0.1'; missing scales get 0.", **expert()),
                io.Boolean.Input("dse_rescale", default=True,
                                 tooltip="Keep the coarse scale's brightness when building the prior (recommended).",
                                 **expert()),
                io.Combo.Input("interpolation", options=list(INTERPOLATIONS), default="bilinear",
                               tooltip="Upsampling used inside the prior before its frequencies are corrected.",
                               **expert()),
                io.Combo.Input("prior_source", options=list(PRIOR_SOURCES), default="guided_pre_ssg",
                               tooltip="Which previous-scale logits form the prior: the guided ones before SSG "
                                       "(default), after SSG, or the conditional ones.", **expert()),
                _base_input(),
            ],
            outputs=[GuiderType.Output(display_name="guider")],
            is_experimental=True,
        )

    @classmethod
    def validate_inputs(cls, custom_betas=None):
        return cls.known_problem(custom_betas=custom_betas)

    @classmethod
    def check_values(cls, values):
        if values["custom_betas"] is not None:
            try:
                _custom_betas(values["custom_betas"])
            except ValueError as e:
                return str(e)
        return None

    @classmethod
    @checked_inputs
    def execute(cls, beta, schedule, custom_betas, dse_rescale, interpolation, prior_source, base=None):
        return io.NodeOutput(SSG(beta=beta, schedule=schedule, custom_betas=_custom_betas(custom_betas),
                                 dse_rescale=dse_rescale, interpolation=interpolation, prior_source=prior_source,
                                 base=base))


def _custom_cfgs(text: str) -> tuple[float, ...]:
    """The CFG node's custom_cfgs: at least one cfg, each in CFG_RANGE (guidance.schedules.parse_number_list);
    ValueError naming custom_cfgs, the entry and the range."""
    values = parse_number_list(text, "custom_cfgs", *CFG_RANGE)
    if not values:
        raise ValueError("custom_cfgs: the custom schedule needs one cfg per scale, e.g. '3, 3, 3, 2, 1' (allowed "
                         f"{fmt_range(*CFG_RANGE)})")
    return values


def _custom_betas(text: str) -> tuple[float, ...]:
    """The SSG node's custom_betas, each in SSG.strength_range (the beta widget's); () for a blank field."""
    return parse_number_list(text, "custom_betas", *SSG.strength_range)
