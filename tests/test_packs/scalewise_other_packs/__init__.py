"""Test-only ComfyUI pack: IMAGE and MASK tensors in the layouts other packs really output, where no core node makes
them (tests/integration/test_real_graphs.py). Each option reproduces one pack's output layout from a core IMAGE/MASK:

- "mask [B, 1, H, W]": segmenters that keep the channel axis (BiRefNet_ll before its PR #4, several rembg nodes);
- "mask [B, H, W, 1]": masks made from an IMAGE channel without dropping the channel axis;
- "image grey [B, H, W, 1]": one-channel images (depth and edge maps of preprocessor packs);
- "image grey+alpha [B, H, W, 2]": a grey image with its alpha kept;
- "image 0..255": an image converted from uint8 without the division by 255 (a common bug in packs' loaders).
"""
import torch

OPTIONS = ["mask [B, 1, H, W]", "mask [B, H, W, 1]", "image grey [B, H, W, 1]", "image grey+alpha [B, H, W, 2]",
           "image 0..255"]


class OtherPackOutput:
    CATEGORY = "testing/scalewise"
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "mask": ("MASK",), "layout": (OPTIONS,)}}

    def run(self, image, mask, layout):
        mask = mask.reshape(-1, mask.shape[-2], mask.shape[-1])
        grey = image[..., :3].mean(-1, keepdim=True)
        if layout == "mask [B, 1, H, W]":
            return image, mask[:, None]
        if layout == "mask [B, H, W, 1]":
            return image, mask[..., None]
        if layout == "image 0..255":
            return image[..., :3] * 255, mask
        if layout == "image grey [B, H, W, 1]":
            return grey, mask
        alpha = 1.0 - mask[..., None].expand_as(grey) if mask.shape[-2:] == grey.shape[1:3] else torch.ones_like(grey)
        return torch.cat((grey, alpha), -1), mask


NODE_CLASS_MAPPINGS = {"ScalewiseTestOtherPackOutput": OtherPackOutput}
