"""SkinnyLinear (models/vary_qwen.py): the same linear map as nn.Linear, through W @ x^T for 2-16 rows."""

import torch

from vary_cli.models.vary_qwen import SkinnyLinear, skinny_linears


def test_skinny_linear_computes_what_nn_linear_computes():
    torch.manual_seed(0)
    for bias in (True, False):
        plain = torch.nn.Linear(64, 300, bias=bias)
        skinny = torch.nn.Linear(64, 300, bias=bias)
        skinny.load_state_dict(plain.state_dict())
        skinny.__class__ = SkinnyLinear
        for shape in [(1, 1, 64), (4, 1, 64), (8, 1, 64), (16, 64), (3, 40, 64)]:
            x = torch.randn(shape)
            with torch.inference_mode():
                torch.testing.assert_close(skinny(x), plain(x), rtol=1e-5, atol=1e-5)
        x = torch.randn(4, 1, 64, requires_grad=True)
        skinny(x).sum().backward()  # training keeps nn.Linear's path and its gradients
        assert x.grad is not None and skinny.weight.grad is not None


def test_the_llm_linears_are_skinny_and_keep_their_keys():
    block = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Sequential(torch.nn.Linear(4, 2)))
    keys = list(block.state_dict())
    skinny_linears(block)
    assert all(type(m) is SkinnyLinear for m in block.modules() if isinstance(m, torch.nn.Linear))
    assert list(block.state_dict()) == keys
