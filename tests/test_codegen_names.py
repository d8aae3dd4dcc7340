"""Generated torch modules: which symbols are inputs, and which class names are accepted."""

import importlib.util

import pytest
import torch

import numeric
import symact


def test_a_parameter_named_v_gives_a_single_input_module():
    # was: v taken for the gate, so the module split its input in half and dropped half of it
    act = symact.activation("x*sigmoid(v*x)", v=1.5)
    x = torch.tensor([[1.0, -2.0, 3.0, 0.5]], dtype=torch.float64)
    reference = x * torch.sigmoid(1.5 * x)
    torch.testing.assert_close(numeric.torch_module(act)(x), reference, rtol=1e-14, atol=1e-15)
    trained = numeric.torch_module(act, trainable=("v",))
    torch.testing.assert_close(trained(x), reference, rtol=1e-14, atol=1e-15)
    param = next(trained.parameters())
    trained(x).sum().backward()
    beta = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    (x * torch.sigmoid(beta * x)).sum().backward()
    torch.testing.assert_close(param.grad.double(), beta.grad, rtol=1e-6, atol=1e-7)
