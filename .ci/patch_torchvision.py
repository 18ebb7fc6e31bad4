"""Make the registry's CUDA build of torchvision importable on CPU-only torch.

torchvision tolerates failing to load its CUDA-linked _C.so, but two unguarded
`register_fake` decorators in _meta_registrations.py then raise
"operator torchvision::nms does not exist" on import. Guard them with
`_has_ops()`; transforms etc. work, the C++ ops (nms, roi_align) stay unavailable.
Idempotent: a second run changes nothing. Must run with the target venv's python.
"""
import importlib.util
import pathlib
import re
import sys

spec = importlib.util.find_spec("torchvision")
if spec is None:
    sys.exit("patch_torchvision: torchvision is not installed in " + sys.prefix)
path = pathlib.Path(spec.origin).parent / "_meta_registrations.py"
src = path.read_text()
pattern = r'^@torch\.library\.register_fake\("torchvision::(q?nms)"\)$'
guarded = (r'@(torch.library.register_fake("torchvision::\1") '
           r'if torchvision.extension._has_ops() else (lambda f: f))')
new, count = re.subn(pattern, guarded, src, flags=re.M)
if count:
    path.write_text(new)
    print(f"patch_torchvision: guarded {count} decorator(s) in {path}")
elif "_has_ops() else (lambda f: f)" in src:
    print("patch_torchvision: already patched")
else:  # a different torchvision layout: say so instead of failing later at import
    sys.exit(f"patch_torchvision: pattern not found in {path}")
