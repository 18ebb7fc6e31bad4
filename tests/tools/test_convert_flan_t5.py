"""tools/convert_flan_t5.py: the Hugging Face download (full encoder-decoder, sharded) in, the encoder alone out as
one fp16 .safetensors file that reads back to the same tensors; other files are refused."""
import os
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from scalewise.models import CheckpointError
from scalewise.models.flan_t5 import infer_t5_config, read_t5_encoder
from tiny_t5 import TINY_T5, tiny_t5_encoder, write_download
from scalewise.tools.convert_flan_t5 import convert

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tools",
                      "convert_flan_t5.py")


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_download_becomes_the_encoder_alone_in_fp16(tmp_path, fmt):
    encoder = tiny_t5_encoder(seed=5)
    write_download(tmp_path / "flan-t5-tiny", encoder, fmt, tie=fmt == "bin")
    out = tmp_path / "flan_t5_tiny_encoder_fp16.safetensors"
    proc = subprocess.run([sys.executable, SCRIPT, str(tmp_path / "flan-t5-tiny"), str(out)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "d_model 64, 3 layers, 4 heads" in proc.stdout and "note: " in proc.stdout  # tiny: not flan-t5-xl sizes
    with safe_open(str(out), framework="pt") as f:
        assert sorted(f.keys()) == sorted(encoder)  # no decoder, no lm_head, no tied copy
        for k in encoder:
            t = f.get_tensor(k)
            assert t.dtype == torch.float16 and torch.equal(t, encoder[k].half()), k
    back = read_t5_encoder(str(out))
    assert infer_t5_config(str(out), back) == TINY_T5
    # what the node reads from the download in fp16 is what it reads from the converted file
    direct = read_t5_encoder(str(tmp_path / "flan-t5-tiny"), torch.float16)
    assert all(torch.equal(direct[k], back[k]) for k in encoder)


def test_other_files_and_targets_are_refused(tmp_path):
    save_file({"text_model.encoder.layers.0.mlp.fc1.weight": torch.zeros(2, 2)}, str(tmp_path / "clip.safetensors"))
    with pytest.raises(CheckpointError, match="no T5 encoder tensors"):
        convert(str(tmp_path / "clip.safetensors"), str(tmp_path / "out.safetensors"))
    with pytest.raises(ValueError, match="must be a .safetensors file"):
        convert(str(tmp_path / "clip.safetensors"), str(tmp_path / "out.pth"))
    with pytest.raises(ValueError, match="the target is the source"):
        convert(str(tmp_path / "clip.safetensors"), str(tmp_path / "clip.safetensors"))
    assert not (tmp_path / "out.safetensors").exists()
