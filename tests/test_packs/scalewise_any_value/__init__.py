"""Test-only ComfyUI pack: a node whose output links into any input, as many community packs' "any type" nodes do.

tests/integration/test_linked_inputs.py drives combo inputs (which no core primitive can feed) and wrongly typed
values through it: ComfyUI accepts the link because the output type compares equal to every input type.
"""
import json


class AnyType(str):
    """A socket type ComfyUI's link check takes for any type (validate_node_input compares with `!=`)."""

    def __ne__(self, other):
        return False


class AnyValue:
    """Outputs the JSON value typed in `value_json` (a string, number, boolean, null ...)."""

    CATEGORY = "testing/scalewise"
    RETURN_TYPES = (AnyType("*"),)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value_json": ("STRING", {"default": "null"})}}

    def run(self, value_json):
        return (json.loads(value_json),)


NODE_CLASS_MAPPINGS = {"ScalewiseTestAnyValue": AnyValue}
