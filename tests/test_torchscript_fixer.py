"""A TorchScript fixer arm (hi4dfix.torchscript_fixer): nv-tlabs/Fixer's published contract on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hi4dfix.torchscript_fixer import TorchScriptContract, TorchScriptFixer, TorchScriptFixerError

FIXER_SIZE = (512, 288)  # W x H: the smallest of Fixer's exported sizes


class TinyFixer(torch.nn.Module):
    """[-1, 1] in, [-1, 1] out, same shape: the input plus a learned-looking residual."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
        torch.nn.init.zeros_(self.conv.weight)
        torch.nn.init.constant_(self.conv.bias, 0.1)  # brightens by 0.05 in [0, 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[2] == 288 and x.shape[3] == 512
        return (x + self.conv(x)).clamp(-1, 1)


class Shrinking(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, ::2, ::2]


@pytest.fixture()
def scripted(tmp_path):
    path = tmp_path / "tiny_fixer_jit.pt"
    torch.jit.script(TinyFixer()).save(str(path))
    return path


def _contract(**changes):
    return TorchScriptContract(**{"resolution": FIXER_SIZE, "dtype": "float32", **changes})


@pytest.mark.parametrize("fit", ["pad", "stretch"])
def test_a_scripted_fixer_runs_under_the_contract_and_gives_images_back_at_their_size(scripted, fit):
    fixer = TorchScriptFixer(scripted, _contract(fit=fit), "cpu", "fixer")
    rng = np.random.default_rng(0)
    image = rng.uniform(0.2, 0.8, (64, 48, 3)).astype(np.float32)  # a portrait render, like Hi4D's
    (out,) = fixer([image], refs=[image])  # the reference is ignored: such a model has none
    assert out.shape == image.shape and out.dtype == np.float32
    # the residual brightens by 0.05; resizing there and back blurs, so compare means
    assert abs(float(out.mean() - image.mean()) - 0.05) < 0.01


def test_pad_keeps_the_aspect_ratio_and_crops_the_padding_off(tmp_path):
    path = tmp_path / "identity.pt"
    torch.jit.script(torch.nn.Identity()).save(str(path))
    image = np.zeros((64, 48, 3), np.float32)
    image[:, :24] = 1.0  # left half white: a squeezed or padded-and-uncropped image would move the edge
    (out,) = TorchScriptFixer(path, _contract(fit="pad"), "cpu", "identity")([image])
    assert np.abs(out - image).mean() < 0.05


def test_bad_contracts_and_files_are_refused_naming_the_arm_and_setting(scripted, tmp_path):
    with pytest.raises(TorchScriptFixerError, match=r"arm fixer.resolution 500x288 \(W x H\) is not one the model"):
        TorchScriptFixer(scripted, _contract(resolution=(500, 288)), "cpu", "fixer")
    with pytest.raises(TorchScriptFixerError, match=r"arm fixer.imports: module\(s\) no_such_module_xyz are not"):
        TorchScriptFixer(scripted, _contract(imports=("no_such_module_xyz",)), "cpu", "fixer")
    with pytest.raises(TorchScriptFixerError, match="arm fixer.dtype 'int8'"):
        _contract(dtype="int8").check("arm fixer")
    not_a_model = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(3)}, not_a_model)
    with pytest.raises(TorchScriptFixerError, match=rf"arm fixer: {not_a_model} is not a TorchScript model"):
        TorchScriptFixer(not_a_model, _contract(), "cpu", "fixer")
    with pytest.raises(TorchScriptFixerError, match="does not exist"):
        TorchScriptFixer(tmp_path / "missing.pt", _contract(), "cpu", "fixer")
    shrinking = tmp_path / "shrinking.pt"
    torch.jit.script(Shrinking()).save(str(shrinking))
    fixer = TorchScriptFixer(shrinking, _contract(), "cpu", "fixer")
    with pytest.raises(TorchScriptFixerError, match=r"returned \(1, 3, 144, 256\) for an input of \(1, 3, 288, 512\)"):
        fixer([np.zeros((32, 32, 3), np.float32)])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_scripted_fixer_runs_in_bf16_on_the_gpu(scripted):
    fixer = TorchScriptFixer(scripted, _contract(dtype="bfloat16"), "cuda", "fixer")
    image = np.full((96, 72, 3), 0.5, np.float32)
    (out,) = fixer([image])
    assert out.shape == image.shape and abs(float(out.mean()) - 0.55) < 0.02
