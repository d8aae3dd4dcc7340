"""Generated torch modules: which symbols are inputs, and which class names are accepted."""

import importlib.util

import pytest
import sympy
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


@pytest.mark.parametrize("class_name, problem", [
    ("my-class", "not a Python identifier"), ("1abc", "not a Python identifier"), ("", "not a Python identifier"),
    ("class", "keyword"), ("None", "keyword"),
    ("torch", "would replace 'torch'"), ("F", "would replace 'F'"), ("_blockwise", "would replace '_blockwise'"),
    ("_forward", "would replace '_forward'"), ("float", "builtin"), ("ValueError", "builtin"),
    ("__builtins__", "dunder"), ("\uff27elu", "read by Python as 'Gelu'"),
])
def test_unusable_class_names_are_refused(class_name, problem, tmp_path):
    # were: a raw SyntaxError, or a file written that failed on import or when called
    with pytest.raises(symact.DomainError, match="choose another name") as err:
        numeric.torch_module("gelu", class_name=class_name)
    assert problem in str(err.value)
    with pytest.raises(symact.DomainError):
        numeric.export_module("gelu", tmp_path / "m.py", class_name=class_name)
    assert not (tmp_path / "m.py").exists()


@pytest.mark.parametrize("class_name", ["gelu", "_Private", "Torch", "MyGELU2", "match"])
def test_usable_class_names_give_a_working_exported_module(class_name, tmp_path):
    path = numeric.export_module("gelu", tmp_path / "m.py", class_name=class_name)
    spec = importlib.util.spec_from_file_location("m", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    x = torch.linspace(-4, 4, 33, dtype=torch.float64)
    torch.testing.assert_close(getattr(module, class_name)()(x), torch.nn.functional.gelu(x), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ['a"""b', "back\\slash", "a\\N", '""""', "two\nlines"])
def test_any_activation_name_gives_valid_source(name):
    # a name is free text shown in the docstrings; '"""' or '\N' in it were a SyntaxError
    module = numeric.torch_module("tanh", name=name, class_name="T")
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)
    torch.testing.assert_close(module(x), torch.tanh(x), rtol=1e-14, atol=1e-15)
    assert name in type(module).__doc__


@pytest.mark.parametrize("pname", ["float", "super", "forward", "to", "half", "training", "apply", "formula",
                                   "activation", "extra_repr", "_blockwise", "_forward", "_ndtr", "_parameters"])
def test_parameter_names_the_generated_code_uses_are_renamed_not_broken(pname, tmp_path):
    # were: "'float' object is not callable", "attribute 'forward' already exists", and a parameter
    # named training that module.eval() then failed to set
    act = symact.activation(f"x*sigmoid({pname}*x)", **{pname: 1.5})
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)
    module = numeric.torch_module(act, trainable=(pname,)).double()
    names = [n for n, _ in module.named_parameters()]
    assert names == [f"p_{pname}"]
    y = module(x)
    torch.testing.assert_close(y, x * torch.sigmoid(1.5 * x), rtol=1e-14, atol=1e-15)
    y.sum().backward()
    beta = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    (x * torch.sigmoid(beta * x)).sum().backward()
    torch.testing.assert_close(module.get_parameter(names[0]).grad, beta.grad, rtol=1e-12, atol=1e-14)
    assert module.eval().training is False and module.train().training is True
    assert f"p_{pname}=1.5" in repr(module)
    assert f"p_{pname} = 1.5 (trainable nn.Parameter; {pname} in phi)" in numeric.generated_source(act, (pname,))
    # the exported file too, with the constructor keyword of the same name
    path = numeric.export_module(act, tmp_path / "m.py", class_name="M", trainable=(pname,))
    spec = importlib.util.spec_from_file_location("m", path)
    exported = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exported)
    fresh = exported.M(**{f"p_{pname}": 0.5}).double()
    torch.testing.assert_close(fresh(x), x * torch.sigmoid(0.5 * x), rtol=1e-14, atol=1e-15)


def test_parameter_names_that_need_no_renaming_keep_their_name():
    act = symact.activation("x*sigmoid(max*x) + tensor*T", max=1.5, tensor=0.25, T=2.0)
    module = numeric.torch_module(act, trainable=("max", "tensor", "T"))
    assert [n for n, _ in module.named_parameters()] == ["max", "tensor", "T"]


def test_every_builtin_the_generated_code_calls_is_a_taken_parameter_name():
    # guards the list of builtins in codegen against template changes: a parameter of that name would shadow it
    import ast
    import builtins

    from numeric import codegen

    act = symact.activation("x*v*sigmoid(beta*v) + alpha*v", beta=1.0, alpha=0.5)
    for source in (numeric.generated_source(act, trainable=("beta", "alpha")),
                   numeric.generated_source("celu", trainable="alpha"), numeric.generated_source("gelu")):
        used = {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name) and hasattr(builtins, n.id)}
        assert used <= codegen._builtins_used(), used - codegen._builtins_used()


@pytest.mark.parametrize("symbol_name", ["a'", 'b"', "c\\"])
def test_symbol_names_with_quotes_or_backslashes_give_valid_source(symbol_name, tmp_path):
    # was: a SyntaxError in the generated extra_repr ('phi(x) = a'*x'), fixed and trainable alike
    a = sympy.Symbol(symbol_name, real=True)
    act = symact.activation(a * symact.x, **{symbol_name: 2.0})
    x = torch.tensor([1.5, -0.5], dtype=torch.float64)
    fixed = numeric.torch_module(act)
    torch.testing.assert_close(fixed(x), 2.0 * x, rtol=0, atol=0)
    # the constant is shown, and readable, under its Python name
    assert f"phi(x) = {symbol_name}*x" in repr(fixed) and f"{symbol_name[0]}_=2" in repr(fixed)
    assert getattr(fixed, f"{symbol_name[0]}_") == 2.0
    trained = numeric.torch_module(act, trainable=[symbol_name]).double()
    trained(x).sum().backward()
    assert next(trained.parameters()).grad.item() == pytest.approx(1.0)  # d/da sum(a*x) = sum(x)
    assert f"phi(x) = {symbol_name}*x" in type(trained).__doc__
    numeric.export_module(act, tmp_path / "m.py", class_name="M", trainable=[symbol_name])
    spec = importlib.util.spec_from_file_location("m", tmp_path / "m.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


def test_baked_in_constants_are_read_only_attributes_like_nn_elu_alpha(tmp_path):
    # were: shown in the repr (alpha=0.5) but absent as attributes, unlike nn.ELU(0.5).alpha
    act = symact.activation("elu").with_params(alpha=0.5)
    module = numeric.torch_module(act)
    reference = torch.nn.ELU(alpha=0.5)
    assert module.alpha == reference.alpha == 0.5 and isinstance(module.alpha, float)
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)
    torch.testing.assert_close(module(x), reference(x), rtol=1e-14, atol=1e-15)
    # setting one would change nothing the module computes: refused, naming the two ways to change it
    with pytest.raises(AttributeError, match=r"baked into the generated code.*with_params\(alpha=.*trainable="):
        module.alpha = 2.0
    assert module.alpha == 0.5
    # a trainable parameter is not a constant; the constants of an exported file are attributes too
    assert not hasattr(numeric.torch_module(act, trainable="alpha").alpha, "is_integer")
    path = numeric.export_module(act, tmp_path / "m.py", class_name="M")
    spec = importlib.util.spec_from_file_location("m", path)
    exported = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exported)
    assert exported.M().alpha == 0.5
    # TorchScript skips the properties and still runs the module
    torch.testing.assert_close(torch.jit.script(module)(x), reference(x), rtol=1e-14, atol=1e-15)


def test_constants_named_like_module_attributes_are_renamed_as_trainable_parameters_are():
    act = symact.activation("x*sigmoid(training*x) + forward", training=1.5, forward=0.25)
    module = numeric.torch_module(act)
    assert (module.p_training, module.p_forward) == (1.5, 0.25)
    assert module.eval().training is False and module.train().training is True
    assert "p_training = 1.5 (constant; training in phi)" in numeric.generated_source(act)
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)
    torch.testing.assert_close(module.double()(x), x * torch.sigmoid(1.5 * x) + 0.25, rtol=1e-14, atol=1e-15)
