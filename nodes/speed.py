"""Token Pruning (FastVAR): MODEL -> MODEL, a speed policy attached like ComfyUI's model patches.

The policy lives in the patched MODEL's `model_options` (its ModelPatcher clone; the weights are shared, the
unpatched MODEL stays exact); the sampling nodes drive `sampling_model(model)` (models/pruning.py `with_pruning`).
"""
from __future__ import annotations

from comfy_api.latest import io

from ..guidance.schedules import LIST_SEPARATORS, parse_number_list
from ..models.pruning import PRESETS, TokenPruning, with_pruning
from .common import CATEGORY, ModelType, ScalewiseNode, checked_inputs
from .features import aliases, expert

OPTION = "scalewise_token_pruning"  # key of the policy in ModelPatcher.model_options
CUSTOM = "custom"


def sampling_model(model):
    """The network a sampling node drives for a MODEL (a ModelPatcher): its `.model`, with the token-pruning
    policy of its model_options attached when the Token Pruning node set one."""
    return with_pruning(model.model, getattr(model, "model_options", {}).get(OPTION))


def parse_ratios(text: str) -> tuple[float, ...]:
    """'0.5, 0.25' -> (0.5, 0.25) (separators: guidance.schedules.parse_number_list). ValueError naming
    keep_ratios, the entry and the range for an empty entry or one that is not a number in (0, 1]."""
    ratios = parse_number_list(text, "keep_ratios", 0.0, 1.0, low_open=True)
    try:
        return TokenPruning(ratios).keep
    except ValueError as e:
        raise ValueError(f"keep_ratios: {e}") from None


def policy_of(preset: str, keep_ratios: str, skip_last: int) -> TokenPruning:
    """The node's policy: a preset, or with 'custom' the keep_ratios and skip_last widgets."""
    if preset != CUSTOM:
        return PRESETS[preset]
    return TokenPruning(parse_ratios(keep_ratios), skip_last)


class TokenPruningNode(ScalewiseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ScalewiseTokenPruning",
            display_name="Token Pruning (FastVAR)",
            category=CATEGORY,
            **aliases("FastVAR", "token pruning", "speed", "faster", "pivotal tokens", "cached token pruning"),
            description=(
                "Faster sampling at the largest scales (FastVAR's cached token pruning): only the pivotal tokens "
                "(those farthest from the scale's mean) go through each block, the others reuse the last unpruned "
                "scale's cached output. Images change slightly; guiders, editing and per-image seeds work as "
                "without it. fastvar: the last two scales keep 1/2 and 1/4 of their tokens (FastVAR's HART "
                "setting; Switti 1024 has HART's schedule). fastvar-infinity: the 4th- and 3rd-last keep 0.6 and "
                "0.5, the last two are skipped (FastVAR's Infinity setting). Off = do not use this node."),
            inputs=[
                ModelType.Input("model", tooltip="The model to sample faster (from a loader); the loader's own "
                                                 "output stays exact."),
                io.Combo.Input("preset", options=[*PRESETS, CUSTOM], default="fastvar",
                               tooltip="fastvar: keep 0.5, 0.25 of the last two scales. fastvar-infinity: keep "
                                       "0.6, 0.5 of the 4th- and 3rd-last, skip the last two. custom: keep_ratios "
                                       "and skip_last below."),
                io.String.Input("keep_ratios", default="0.5, 0.25",
                                tooltip="custom only: the share of tokens each of the last scales keeps, coarse to "
                                        f"fine, separated by {LIST_SEPARATORS}, each in (0, 1] (1 = exact), e.g. "
                                        "'0.5, 0.25'. Other presets ignore this field.",
                                **expert()),
                io.Int.Input("skip_last", default=0, min=0, max=8,
                             tooltip="custom only: the last n scales keep no token (every block output comes from "
                                     "the cache; tokens are still drawn).",
                             **expert()),
            ],
            outputs=[ModelType.Output(display_name="model")],
        )

    # ComfyUI reports a failed validate_inputs once per input it declares (execution.py validate_inputs): only
    # the field checked and the widget deciding whether it is used; skip_last is left to ComfyUI's own range check.
    @classmethod
    def validate_inputs(cls, preset=None, keep_ratios=None):
        return cls.known_problem(preset=preset, keep_ratios=keep_ratios)

    @classmethod
    def check_values(cls, values):
        if values.get("preset") == CUSTOM and values.get("keep_ratios") is not None:
            try:
                parse_ratios(values["keep_ratios"])
            except ValueError as e:
                return str(e)
        return None

    @classmethod
    @checked_inputs
    def execute(cls, model, preset, keep_ratios, skip_last) -> io.NodeOutput:
        policy = policy_of(preset, keep_ratios, skip_last)
        try:
            policy.ratios(len(model.model.scale_shapes))
        except ValueError as e:
            raise ValueError(f"{e} (this model has {len(model.model.scale_shapes)} scales)") from None
        patched = model.clone()
        patched.model_options[OPTION] = policy
        return io.NodeOutput(patched)
