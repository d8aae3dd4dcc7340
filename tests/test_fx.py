"""graphs.from_torch: torch.fx tracing into network graphs."""

from __future__ import annotations

import inspect
import math
import re

import networkx as nx
import pytest
import sympy

import graphs
from symact.errors import InvalidGraphError

import torch
nn = torch.nn
F = torch.nn.functional

s, k = sympy.symbols("s k", positive=True)


def same_network(g1, g2) -> bool:
    """Isomorphic with equal kinds, activation names and edge weights/channel counts."""
    def node_match(a, b):
        return a["kind"] == b["kind"] and a.get("activation") == b.get("activation")

    def edge_match(a, b):
        wa, wb = a.get("weight"), b.get("weight")
        if (wa is None) != (wb is None) or a.get("channels") != b.get("channels"):
            return False
        return wa is None or math.isclose(float(wa), float(wb), rel_tol=1e-12)

    return nx.is_isomorphic(g1, g2, node_match=node_match, edge_match=edge_match)


def walker_values(g):
    return (graphs.max_subnetwork_value(g, lambda n, y: s * y, 1),
            graphs.max_subnetwork_value(g, lambda n, y: k + y, 0),
            graphs.network_c_map(g, lambda n, c: (c + c**2) / 2, 0.5))


def test_torch_mlp_matches_hand_built_mlp():
    layers = [nn.Linear(6, 16)]
    for _ in range(5):
        layers += [nn.Tanh(), nn.Linear(16, 16)]
    net = nn.Sequential(*layers)
    g = graphs.from_torch(net, torch.randn(2, 6))
    hand = graphs.mlp(5, activation="tanh")
    assert same_network(g, hand)
    assert walker_values(g) == walker_values(hand)
    assert walker_values(g)[:2] == (s**5, 5 * k)


class TinyResNet(nn.Module):
    """V2 pre-activation residual CNN with weighted shortcuts 0.6 x + 0.8 h: one basic block in
    each of two stages, a 1x1 projection on the pre-activated input at the second stage."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a1, self.b1 = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.a2, self.b2 = nn.Conv2d(8, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1)
        self.proj = nn.Conv2d(8, 16, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = self.stem(x)
        h = self.b1(F.relu(self.a1(F.relu(x))))
        x = 0.6 * x + 0.8 * h
        pre = torch.relu(x)
        h = self.b2(torch.relu(self.a2(pre)))
        x = torch.add(0.6 * self.proj(pre), h, alpha=0.8)
        x = self.pool(x.relu())
        return self.head(x.view(x.size(0), -1))


def test_residual_cnn_matches_hand_built_resnet():
    g = graphs.from_torch(TinyResNet(), torch.randn(2, 3, 8, 8))
    hand = graphs.resnet(blocks=(1, 1), variant="v2", block="basic", shortcut_weight=0.6,
                         projection=(False, True), stem_pool=False)
    assert same_network(g, hand)
    assert walker_values(g)[0] == walker_values(hand)[0]
    assert walker_values(g)[2] == pytest.approx(walker_values(hand)[2], rel=1e-15)
    # by hand: stage 1 block 0.36 + 0.64 s**2 (identity shortcut), stage 2 0.36 s + 0.64 s**2,
    # head s; curvature 0.64*2k + (0.36k + 0.64*2k) + k = 3.92k
    diff = sympy.Poly(sympy.expand(walker_values(g)[0] - s * (0.36 + 0.64 * s**2) * (0.36 * s + 0.64 * s**2)), s)
    assert max(abs(c) for c in diff.coeffs()) < 1e-15  # float weights: 0.8**2 rounds
    assert float(walker_values(g)[1] / k) == pytest.approx(3.92, rel=1e-14)


def test_activation_names_and_parameters():
    net = nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(0.2), nn.Linear(4, 4), nn.GELU(approximate="tanh"),
                        nn.Linear(4, 4), nn.Softplus(beta=2.0), nn.Linear(4, 4), nn.SiLU(), nn.Linear(4, 2))
    g = graphs.from_torch(net, torch.randn(2, 3))
    acts = [(g.nodes[n]["activation"], g.nodes[n]["activation_params"]) for n in graphs.activation_nodes(g)]
    assert acts == [("leaky_relu", {"negative_slope": 0.2}), ("gelu_tanh", {}),
                    ("softplus", {"beta": 2.0}), ("silu", {})]
    # the names and parameters are the symact catalogue's
    import symact
    for name, params in acts:
        act = symact.activation(name, **params)
        assert {str(p): float(v) for p, v in act.params.items() if str(p) in params} == params


def test_every_emitted_activation_name_is_in_the_catalogue():
    import symact
    from graphs.fx import _activation_tables

    modules, functions, methods = _activation_tables()
    emitted = {v[0] for v in modules.values()} | set(functions.values()) | set(methods.values()) | {"gelu_tanh"}
    assert emitted <= set(symact.catalogue_names())


def test_functional_activation_parameters_are_read():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.l = nn.ModuleList(nn.Linear(3, 3) for _ in range(5))

        def forward(self, x):
            x = F.gelu(self.l[0](x), approximate="tanh")
            x = F.softplus(self.l[1](x), 3.0)
            x = F.elu(self.l[2](x), alpha=0.5)
            x = F.softshrink(self.l[3](x), 0.25)
            return self.l[4](x)

    g = graphs.from_torch(Net(), torch.randn(2, 3))
    assert [(g.nodes[n]["activation"], g.nodes[n]["activation_params"]) for n in graphs.activation_nodes(g)] == [
        ("gelu_tanh", {}), ("softplus", {"beta": 3.0}), ("elu", {"alpha": 0.5}), ("softshrink", {"lambd": 0.25})]


def test_functional_activations_and_concat_channels():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.l2, self.l3 = nn.Linear(4, 8), nn.Linear(4, 24), nn.Linear(32, 2)

        def forward(self, x):
            a = F.leaky_relu(self.l1(x), 0.1)
            b = torch.tanh(self.l2(x))
            return self.l3(torch.cat([a, b], dim=1))

    g = graphs.from_torch(Net(), torch.randn(2, 4))
    cat = next(n for n in g if g.nodes[n]["kind"] == "concat")
    assert sorted(graphs.edge_channels(g, cat).values()) == [8, 24]
    assert {g.nodes[n]["activation"] for n in graphs.activation_nodes(g)} == {"leaky_relu", "tanh"}
    leaky = next(n for n in graphs.activation_nodes(g) if g.nodes[n]["activation"] == "leaky_relu")
    assert g.nodes[leaky]["activation_params"] == {"negative_slope": 0.1}
    # slopes s_a on the 8 channels, s_b on the 24: C'(1) = (8 s_a + 24 s_b) / 32
    slopes = {leaky: 2, next(n for n in graphs.activation_nodes(g) if n != leaky): 3}
    values = graphs.propagate(g, lambda n, y: slopes[n] * y, sympy.Integer(1))
    assert values["output"] == sympy.Rational(8 * 2 + 24 * 3, 32)


class WithActivation(nn.Module):
    """A module that stores its activation as an attribute and applies it."""

    def __init__(self, fn):
        super().__init__()
        self.activation = fn

    def forward(self, x):
        return self.activation(x)


class Around(nn.Module):
    """Linear(4, 4) -> the given module -> Linear(4, 2): read by hand, graphs.mlp(1) with its activation."""

    def __init__(self, inner):
        super().__init__()
        self.l1, self.inner, self.head = nn.Linear(4, 4), inner, nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.inner(self.l1(x)))


@pytest.mark.parametrize("fn, name, params", [
    (F.relu, "relu", {}), (torch.tanh, "tanh", {}), (nn.SiLU(), "silu", {}),
    (lambda t: F.leaky_relu(t, 0.2), "leaky_relu", {"negative_slope": 0.2}),
])
def test_a_torch_function_held_as_activation_attribute_maps_like_a_call(fn, name, params):
    """The attribute used to be carried raw (the function object F.relu), which shape() cannot read."""
    g = graphs.from_torch(Around(WithActivation(fn)), torch.randn(2, 4))
    assert same_network(g, graphs.mlp(1, activation=name))
    (node,) = graphs.activation_nodes(g)
    assert g.nodes[node]["activation_params"] == params


def test_a_traced_activation_attribute_shapes_like_the_hand_built_mlp():
    import analysis
    traced = analysis.shape(None, graphs.from_torch(Around(WithActivation(torch.tanh)), torch.randn(2, 4)))
    hand = analysis.shape("tanh", graphs.mlp(1))
    assert [(a.alpha, a.beta, a.gamma, a.delta) for a in traced.layers] == [
        (b.alpha, b.beta, b.gamma, b.delta) for b in hand.layers]


def test_a_module_that_does_more_than_its_activation_attribute_is_traced_into():
    class Gate(nn.Module):
        def __init__(self):
            super().__init__()
            self.activation = "silu"
            self.norm = nn.LayerNorm(4)

        def forward(self, x):
            return torch.tanh(self.norm(x)) * 3

    # this used to become one 'silu' node, dropping the LayerNorm, the tanh and the * 3
    with pytest.raises(InvalidGraphError, match=r"unsupported module LayerNorm.*mean subtraction.*inside "
                                                r"'inner', a Gate with the attribute activation='silu'"):
        graphs.from_torch(Around(Gate()), torch.randn(2, 4))

    class Scaled(WithActivation):
        def forward(self, x):
            return 3 * self.activation(x)

    with pytest.raises(InvalidGraphError, match="scales a tensor by the constant 3.*inside 'inner'"):
        graphs.from_torch(Around(Scaled(torch.tanh)), torch.randn(2, 4))

    import symact

    class HandWritten(nn.Module):  # claims silu, computes 1.3 * silu: it must not be read as silu
        def __init__(self):
            super().__init__()
            self.activation = symact.activation("silu")
            self.gamma = nn.Parameter(torch.tensor(1.3))

        def forward(self, x):
            return self.gamma * x * torch.sigmoid(x)

    with pytest.raises(InvalidGraphError, match=r"multiplies two elementwise functions of one tensor.*inside 'inner'.*numeric\.torch_module"):
        graphs.from_torch(Around(HandWritten()), torch.randn(2, 4))


def test_a_module_applying_a_symact_activation_to_tensors_is_told_to_generate_it():
    import symact
    with pytest.raises(InvalidGraphError, match=r"\['inner'\] hold a symact Activation.*numeric\.torch_module\(act\)"):
        graphs.from_torch(Around(WithActivation(symact.activation("silu"))), torch.randn(2, 4))


class _ActivationsInAList(nn.Module):
    def __init__(self, container):
        super().__init__()
        self.acts = container([nn.Tanh()])
        self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 2)

    def forward(self, x):
        return self.b(self.acts[0](self.a(x)))


def test_a_module_in_a_plain_list_is_told_to_use_a_module_list():
    """An activation held in a plain list is not registered, and torch.fx refuses it; the hint blamed
    data-dependent control flow, which the model has none of.  The model with nn.ModuleList traces, with the
    tanh node between its two linear layers."""
    with pytest.raises(InvalidGraphError, match=r"not installed as a submodule.*plain Python list.*nn\.ModuleList"):
        graphs.from_torch(_ActivationsInAList(list), torch.randn(2, 4))
    g = graphs.from_torch(_ActivationsInAList(nn.ModuleList), torch.randn(2, 4))
    assert [str(d.get("activation")) for _, d in g.nodes(data=True) if d.get("activation") is not None] == ["tanh"]


def test_a_generated_symact_module_becomes_one_node_with_its_activation():
    import symact
    import numeric.codegen as codegen
    module = codegen.torch_module("silu")
    g = graphs.from_torch(Around(module), torch.randn(2, 4))
    assert same_network(g, graphs.mlp(1, activation=symact.activation("silu")))

    # a trainable parameter is read at its current value, not the one the module was made with
    module = codegen.torch_module("squareplus", trainable=("b",))
    g = graphs.from_torch(Around(module), torch.randn(2, 4))
    (node,) = graphs.activation_nodes(g)
    assert g.nodes[node]["activation"] == symact.activation("squareplus")
    with torch.no_grad():
        module.b.fill_(2.0)
    g = graphs.from_torch(Around(module), torch.randn(2, 4))
    assert g.nodes[node]["activation"] == symact.activation("squareplus", b=2)

    with pytest.raises(InvalidGraphError, match="gated activation 'glu' of two inputs.*no kernel rule"):
        graphs.from_torch(nn.Sequential(nn.Linear(4, 8), codegen.torch_module("glu"), nn.Linear(4, 2)),
                          torch.randn(2, 4))


def test_plain_add_is_rejected_with_the_weighted_form():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.l2 = nn.Linear(3, 3), nn.Linear(3, 3)

        def forward(self, x):
            return self.l1(x) + self.l2(x)

    with pytest.raises(InvalidGraphError, match=r"plain x \+ y.*w1\*x \+ w2\*y with w1\*\*2 \+ w2\*\*2 == 1.*0.707107"):
        graphs.from_torch(Net(), torch.randn(2, 3))


def test_unnormalised_weighted_add_is_rejected():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.l2 = nn.Linear(3, 3), nn.Linear(3, 3)

        def forward(self, x):
            return 0.5 * self.l1(x) + 0.5 * self.l2(x)

    with pytest.raises(InvalidGraphError, match=r"squares sum to 0.5.*0.707106781187"):
        graphs.from_torch(Net(), torch.randn(2, 3))


class TensorWeightedResidual(nn.Module):
    """head(w_skip * h + w_res * l2(tanh(h))), h = l1(x), the weights held in a buffer and a parameter."""

    def __init__(self, w_skip, w_res, dtype=torch.float32):
        super().__init__()
        self.l1, self.l2, self.head = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)
        self.register_buffer("w_skip", torch.tensor(w_skip, dtype=dtype))
        self.w_res = nn.Parameter(torch.tensor(w_res, dtype=dtype))

    def forward(self, x):
        h = self.l1(x)
        return self.head(self.w_skip * h + self.w_res * self.l2(torch.tanh(h)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_tensor_held_weights_pass_within_their_dtype_rounding(dtype):
    """float32 0.6 and 0.8 are 0.6000000238 and 0.8000000119 (squares sum to 1 + 4.8e-8); they were
    refused with a 'fix' (0.600000009537, 0.799999992847) that rounds back to the same float32s."""
    g = graphs.from_torch(TensorWeightedResidual(0.6, 0.8, dtype), torch.randn(2, 4))
    (node,) = [n for n in g if g.nodes[n]["kind"] == "weighted_sum"]
    weights = graphs.edge_weights(g, node)
    # by reading the model: l1 -> tanh -> l2, a weighted sum 0.6 l1 + 0.8 l2, the head
    hand = graphs.new_graph()
    graphs.add_node(hand, "x", "input")
    graphs.add_node(hand, "l1", "linear", "x")
    graphs.add_node(hand, "t", "activation", "l1", activation="tanh")
    graphs.add_node(hand, "l2", "linear", "t")
    graphs.add_weighted_sum(hand, "sum", {"l1": 0.6, "l2": 0.8})
    graphs.add_node(hand, "head", "linear", "sum")
    graphs.add_node(hand, "y", "output", "head")
    assert nx.is_isomorphic(g, hand, node_match=lambda a, b: a["kind"] == b["kind"])
    ulp = torch.finfo(dtype).eps
    assert weights["l1"] == pytest.approx(0.6, rel=ulp) and weights["l2"] == pytest.approx(0.8, rel=ulp)
    assert abs(sum(w**2 for w in weights.values()) - 1) <= 1e-15
    stored = {"l1": float(torch.tensor(0.6, dtype=dtype)), "l2": float(torch.tensor(0.8, dtype=dtype))}
    if dtype != torch.float64:
        assert g.nodes[node]["torch_weights"] == stored
    # the slope C'(1) of 0.36 * 1 + 0.64 * s for a tanh slope s
    assert graphs.propagate(g, lambda n, y: 3 * y, 1.0)["output"] == pytest.approx(0.36 + 0.64 * 3, rel=ulp)


def test_unnormalised_tensor_weights_are_refused_with_weights_that_round_to_a_pass():
    with pytest.raises(InvalidGraphError, match=r"squares sum to 0\.850000.*not 1 within that rounding.*"
                                                r"'l1': 0\.650791.*'l2': 0\.759256") as info:
        graphs.from_torch(TensorWeightedResidual(0.6, 0.7), torch.randn(2, 4))
    # 0.6 / sqrt(0.85) = 0.6507913734..., 0.7 / sqrt(0.85) = 0.7592566023...; the printed ones,
    # stored in float32 as the user would, pass
    import re
    printed = dict(re.findall(r"'(l\d)': (0\.\d+)", str(info.value).split("Use the normalised")[1]))
    g = graphs.from_torch(TensorWeightedResidual(float(printed["l1"]), float(printed["l2"])), torch.randn(2, 4))
    assert len([n for n in g if g.nodes[n]["kind"] == "weighted_sum"]) == 1


class CopiesOfOneBranch(nn.Module):
    def __init__(self, combine):
        super().__init__()
        self.l1, self.head, self.combine = nn.Linear(4, 4), nn.Linear(4, 2), combine

    def forward(self, x):
        t = torch.tanh(self.l1(x))
        return self.head(self.combine(t))


def test_weighted_copies_of_one_tensor_add_their_weights():
    """0.5*t + 0.5*t is t: the copies are perfectly correlated, so the weights add (0.5 + 0.5 = 1),
    not their squares; it was refused as 'adds 1 branches ... which multiplies q by 1'."""
    for combine in (lambda t: t * 0.5 + t * 0.5, lambda t: 0.3 * t + 0.7 * t, lambda t: 2 * t - t):
        assert same_network(graphs.from_torch(CopiesOfOneBranch(combine), torch.randn(2, 4)), graphs.mlp(1))
    # 0.6*t + 0.8*t is 1.4*t: q times 1.96, although 0.6**2 + 0.8**2 == 1
    with pytest.raises(InvalidGraphError, match=r"scales a tensor by the constant 1\.4 \(its 2 terms are copies "
                                                r"of 'tanh'.*changes q by 1\.96"):
        graphs.from_torch(CopiesOfOneBranch(lambda t: 0.6 * t + 0.8 * t), torch.randn(2, 4))
    with pytest.raises(InvalidGraphError, match="identically zero: its terms cancel"):
        graphs.from_torch(CopiesOfOneBranch(lambda t: t - t), torch.randn(2, 4))


def test_adding_an_exact_zero_is_the_identity():
    """Python's sum(branches) computes 0 + branches[0] + ...: the 0 + was refused as 'adds a constant to
    a tensor (a bias)', so sum(w * branch(h) for ...) did not trace."""
    class SumOfBranches(nn.Module):
        def __init__(self):
            super().__init__()
            self.l0, self.a, self.b, self.head = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            h = torch.tanh(self.l0(x))
            return self.head(torch.tanh(sum(w * br(h) for w, br in zip((0.6, 0.8), (self.a, self.b)))))

    g = graphs.from_torch(SumOfBranches(), torch.randn(2, 4))
    (node,) = [n for n in g if g.nodes[n]["kind"] == "weighted_sum"]
    assert graphs.edge_weights(g, node) == {"a": 0.6, "b": 0.8}
    for combine in (lambda t: t + 0, lambda t: 0.0 + t, lambda t: t - 0, lambda t: torch.add(t, 3.0, alpha=0)):
        assert same_network(graphs.from_torch(CopiesOfOneBranch(combine), torch.randn(2, 4)), graphs.mlp(1))
    assert same_network(graphs.from_torch(CopiesOfOneBranch(lambda t: 0 - t), torch.randn(2, 4)), graphs.mlp(1))
    with pytest.raises(InvalidGraphError, match=r"adds a constant to a tensor \(a bias\)"):
        graphs.from_torch(CopiesOfOneBranch(lambda t: t + 0.1), torch.randn(2, 4))


def chain(*kinds, activation="tanh"):
    """input -> kinds... -> output, read off a model by hand ('act' nodes get `activation`)."""
    g = graphs.new_graph()
    prev = graphs.add_node(g, "in", "input")
    for i, kind in enumerate(kinds):
        attrs = {"activation": activation} if kind == "activation" else {}
        prev = graphs.add_node(g, f"n{i}", kind, prev, **attrs)
    graphs.add_node(g, "out", "output", prev)
    return g


class Seq(nn.Module):
    """Token-wise Linear(8, 8) on (batch, length 5, features 8), tanh, then `reduce`, then a head."""

    def __init__(self, reduce, head_in=8):
        super().__init__()
        self.l, self.head, self.reduce = nn.Linear(8, 8), nn.Linear(head_in, 2), reduce

    def forward(self, x):
        return self.head(self.reduce(torch.tanh(self.l(x))))


def test_a_mean_over_the_features_of_a_sequence_model_is_not_pooling():
    """x.mean(-1) on (batch, length, features) averages the 8 features of each token: it was read
    as average pooling (identity on the kernel maps), while its q falls like 1/width."""
    with pytest.raises(InvalidGraphError, match=r"averages over dim\(s\) \[2\] of a tensor of shape \(2, 5, 8\) whose "
                                                r"features \(written by Linear 'l'\) are dim 2.*not average pooling"):
        graphs.from_torch(Seq(lambda t: t.mean(-1), head_in=5), torch.randn(2, 5, 8))
    # the mean over the tokens is average pooling: input -> linear -> tanh -> pool -> head
    for reduce in (lambda t: t.mean(1), lambda t: torch.mean(t, dim=-2), lambda t: t.mean(1, keepdim=True)):
        g = graphs.from_torch(Seq(reduce), torch.randn(2, 5, 8))
        assert same_network(g, chain("linear", "activation", "pool", "linear"))
    with pytest.raises(InvalidGraphError, match="including the batch dim 0"):
        graphs.from_torch(Seq(lambda t: t.mean((0, 1))), torch.randn(2, 5, 8))
    # torch's pools take (batch, channels, *spatial): on (batch, length, features) they average features
    with pytest.raises(InvalidGraphError, match=r"AvgPool1d averages the last 1 dim\(s\) \[2\].*x\.mean\(1\)"):
        graphs.from_torch(Seq(nn.AvgPool1d(2), head_in=4), torch.randn(2, 5, 8))


class Conv(nn.Module):
    """Conv1d(3, 6) on (batch, channels 3, length 10), relu, then `reduce`, then a head."""

    def __init__(self, reduce, head_in=6):
        super().__init__()
        self.c, self.head, self.reduce = nn.Conv1d(3, 6, 3, padding=1), nn.Linear(head_in, 2), reduce

    def forward(self, x):
        return self.head(self.reduce(torch.relu(self.c(x))))


def test_channel_first_means_and_pools_are_pooling_and_channel_means_are_not():
    for reduce in (lambda t: t.mean(-1), lambda t: nn.functional.adaptive_avg_pool1d(t, 1).flatten(1)):
        g = graphs.from_torch(Conv(reduce), torch.randn(2, 3, 10))
        assert same_network(g, chain("linear", "activation", "pool", "linear", activation="relu"))
    with pytest.raises(InvalidGraphError, match=r"averages over dim\(s\) \[1\].*written by Conv1d 'c'\) are dim 1"):
        graphs.from_torch(Conv(lambda t: t.mean(1), head_in=10), torch.randn(2, 3, 10))


def test_feature_dims_are_followed_through_reshapes():
    # Linear(8, 8) features split as (2, 4): a mean over either part averages features
    with pytest.raises(InvalidGraphError, match=r"shape \(2, 5, 2, 4\) whose features .* are dim 2, 3"):
        graphs.from_torch(Seq(lambda t: t.view(2, 5, 2, 4).mean(-1), head_in=2), torch.randn(2, 5, 8))
    # conv (batch, channels, length) flattened to (batch, channels * length): one dim mixing both
    with pytest.raises(InvalidGraphError, match=r"shape \(2, 60\) whose features .* are dim 1"):
        graphs.from_torch(Conv(lambda t: t.flatten(1).mean(1, keepdim=True), head_in=1), torch.randn(2, 3, 10))
    # (batch, channels, 2, 5) from (batch, channels, 10): the new dims are locations, a mean over them pools
    g = graphs.from_torch(Conv(lambda t: t.view(2, 6, 2, 5).mean((2, 3))), torch.randn(2, 3, 10))
    assert same_network(g, chain("linear", "activation", "pool", "linear", activation="relu"))
    # unflatten, the inverse of flatten, is a reshape as well (it was an "unsupported tensor method")
    for split in (lambda t: t.unflatten(2, (2, 5)), lambda t: torch.unflatten(t, -1, (2, 5))):
        g = graphs.from_torch(Conv(lambda t: split(t).mean((2, 3))), torch.randn(2, 3, 10))
        assert same_network(g, chain("linear", "activation", "pool", "linear", activation="relu"))
    with pytest.raises(InvalidGraphError, match=r"shape \(2, 5, 2, 4\) whose features .* are dim 2, 3"):
        graphs.from_torch(Seq(lambda t: t.unflatten(-1, (2, 4)).mean(-1), head_in=2), torch.randn(2, 5, 8))


class TwoBranches(nn.Module):
    def __init__(self, join, head_in, b_out=24):
        super().__init__()
        self.a, self.b, self.head, self.join = nn.Linear(8, 8), nn.Linear(8, b_out), nn.Linear(head_in, 2), join

    def forward(self, x):
        return self.head(self.join(torch.tanh(self.a(x)), F.relu(self.b(x))))


def test_concat_of_sequences_is_channel_concat_only_along_the_features():
    g = graphs.from_torch(TwoBranches(lambda u, v: torch.cat([u, v], dim=-1), 32), torch.randn(2, 5, 8))
    cat = next(n for n in g if g.nodes[n]["kind"] == "concat")
    assert sorted(graphs.edge_channels(g, cat).values()) == [8, 24]  # the features of each branch
    # along the tokens: (2, 5, 8) and (2, 5, 8) -> (2, 10, 8); the '5's are not channel counts
    with pytest.raises(InvalidGraphError, match=r"concatenates along dim 1 of a tensor of shape \(2, 5, 8\).*"
                                                r"sequence/spatial dim.*concatenate along dim 2"):
        graphs.from_torch(TwoBranches(lambda u, v: torch.cat([u, v], dim=1), 8, b_out=8), torch.randn(2, 5, 8))


class Norm(nn.Module):
    def __init__(self, norm):
        super().__init__()
        self.l, self.head, self.norm = nn.Linear(8, 8), nn.Linear(8, 2), norm

    def forward(self, x):
        return self.head(self.norm(self.l(x)))


def test_normalisation_must_run_over_the_features():
    for norm in (nn.RMSNorm(8), lambda t: F.normalize(t, dim=-1) * 8**0.5):
        g = graphs.from_torch(Norm(norm), torch.randn(2, 5, 8))
        assert same_network(g, chain("linear", "normalise", "linear"))
    # F.normalize's default dim=1 is the tokens of (batch, length, features)
    with pytest.raises(InvalidGraphError, match=r"F.normalize normalises over dim\(s\) \[1\].*normalise over dim 2"):
        graphs.from_torch(Norm(F.normalize), torch.randn(2, 5, 8))


def test_f_normalize_gives_unit_q_only_when_scaled_by_sqrt_of_its_size():
    t = torch.randn(3, 5, 8, dtype=torch.float64)
    # the premise: x/||x|| over C elements has mean square exactly 1/C
    assert torch.allclose(F.normalize(t, dim=-1).square().mean(-1), torch.full((3, 5), 1 / 8, dtype=torch.float64))
    unit_q = chain("linear", "normalise", "linear")
    for scaled in (lambda u: F.normalize(u, dim=-1) * 8**0.5, lambda u: 8**0.5 * F.normalize(u, 2.0, -1),
                   lambda u: F.normalize(u, dim=-1) / 8**-0.5,
                   lambda u: F.normalize(u, dim=-1) * torch.tensor(8.0).sqrt()):  # a float32 constant
        assert same_network(graphs.from_torch(Norm(scaled), torch.randn(2, 5, 8)), unit_q)
    # bare, its q is 1/8: a kernel rule that reset q to 1 would shape every later layer for the wrong q
    with pytest.raises(InvalidGraphError, match=r"changes q by 0\.125 \(F\.normalize divides by the L2 norm of 8 "
                                                r"elements.*multiply it by sqrt\(8\) = 2\.828"):
        graphs.from_torch(Norm(lambda u: F.normalize(u, dim=-1)), torch.randn(2, 5, 8))
    with pytest.raises(InvalidGraphError, match=r"changes q by 0\.5 .*sqrt\(8\)"):
        graphs.from_torch(Norm(lambda u: F.normalize(u, dim=-1) * 2), torch.randn(2, 5, 8))
    # other p-norms leave a data-dependent mean square
    with pytest.raises(InvalidGraphError, match=r"F\.normalize with p=1 .*only p=2"):
        graphs.from_torch(Norm(lambda u: F.normalize(u, p=1, dim=-1)), torch.randn(2, 5, 8))


def test_rms_norm_weight_must_keep_q_at_one():
    unit_q = chain("linear", "normalise", "linear")
    norm = nn.RMSNorm(8)
    assert same_network(graphs.from_torch(Norm(norm), torch.randn(2, 5, 8)), unit_q)  # initial weight: ones
    with torch.no_grad():
        norm.weight.mul_(2)
    with pytest.raises(InvalidGraphError, match=r"changes q by 4 \(the normalisation's elementwise weight has "
                                                r"mean square 4"):
        graphs.from_torch(Norm(norm), torch.randn(2, 5, 8))
    # undone by a constant, or any weight whose mean square is 1 (float32 rounding allowed)
    class Halved(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = norm

        def forward(self, u):
            return 0.5 * self.norm(u)

    assert same_network(graphs.from_torch(Norm(Halved()), torch.randn(2, 5, 8)), unit_q)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(8, generator=torch.Generator().manual_seed(0)))
        norm.weight.div_(norm.weight.square().mean().sqrt())
    assert same_network(graphs.from_torch(Norm(norm), torch.randn(2, 5, 8)), unit_q)


def test_adding_tensors_with_features_on_different_dims_is_refused():
    class Mixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.l, self.head = nn.Conv1d(5, 5, 1), nn.Linear(5, 5), nn.Linear(5, 2)

        def forward(self, x):  # x: (batch, 5, 5): conv features on dim 1, linear features on dim 2
            return self.head(0.6 * self.c(x) + 0.8 * self.l(x))

    with pytest.raises(InvalidGraphError, match=r"features lie on different dims: \[1\] .*Conv1d 'c'.*\[2\]"):
        graphs.from_torch(Mixed(), torch.randn(2, 5, 5))


def test_scaling_and_unknown_ops_are_rejected_by_name():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1 = nn.Linear(3, 3)

        def forward(self, x):
            return torch.tanh(2.0 * self.l1(x))

    with pytest.raises(InvalidGraphError, match="scales a tensor by the constant 2"):
        graphs.from_torch(Scaled(), torch.randn(2, 3))
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 1))
    with pytest.raises(InvalidGraphError, match="MaxPool2d"):
        graphs.from_torch(net, torch.randn(1, 3, 8, 8))

    class Sorted(nn.Module):
        def forward(self, x):
            return torch.sort(x).values

    with pytest.raises(InvalidGraphError, match="sort"):
        graphs.from_torch(Sorted(), torch.randn(2, 3))


@pytest.mark.parametrize("scale", ["parameter", "buffer"])
def test_a_per_element_constant_scale_is_named_not_called_gating(scale):
    # a LayerScale (gamma * f(x), gamma a constant vector) was refused as "products of branches (gating)"
    class LayerScale(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.g, self.o = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2)
            if scale == "parameter":
                self.gamma = nn.Parameter(torch.full((8,), 0.8))
            else:
                self.register_buffer("gamma", torch.full((8,), 0.8))

        def forward(self, x):
            h = self.a(x)
            return self.o(0.6 * h + self.gamma * self.g(torch.tanh(h)))

    with pytest.raises(InvalidGraphError, match=r"constant tensor 'gamma' of shape \(8,\), a scale per element") as info:
        graphs.from_torch(LayerScale(), torch.randn(3, 4))
    assert "gating" not in str(info.value)


@pytest.mark.parametrize("written_out", [lambda h: h * torch.sigmoid(h), lambda h: torch.tanh(F.softplus(h)) * h,
                                         lambda h: torch.sigmoid(h).mul(torch.tanh(h))], ids=["silu", "mish", "both"])
def test_an_activation_written_out_as_a_product_is_named_not_called_gating(written_out):
    # h * torch.sigmoid(h) (SiLU written out) was refused as "products of branches (gating)"
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.o = nn.Linear(4, 8), nn.Linear(8, 2)

        def forward(self, x):
            return self.o(written_out(self.a(x)))

    with pytest.raises(InvalidGraphError, match=r"two elementwise functions of one tensor 'a': an activation written "
                                                r"out as a product.*F\.silu\(h\)") as info:
        graphs.from_torch(Net(), torch.randn(3, 4))
    assert "gating" not in str(info.value)

    class Gated(nn.Module):  # a product of two branches is gating
        def __init__(self):
            super().__init__()
            self.a, self.b, self.o = nn.Linear(4, 8), nn.Linear(4, 8), nn.Linear(8, 2)

        def forward(self, x):
            return self.o(self.a(x) * torch.sigmoid(self.b(x)))

    with pytest.raises(InvalidGraphError, match="gating"):
        graphs.from_torch(Gated(), torch.randn(3, 4))


@pytest.mark.parametrize("role", ["bias", "weight"])
def test_a_linear_function_whose_weight_or_bias_comes_from_the_network_is_refused(role):
    # F.linear(h, W, h) computes W h + h, an unweighted sum, and F.linear(h, hyper(h)) a product of
    # two network tensors; the graph read both as a linear layer of h (the bias form silently)
    class Dynamic(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.o = nn.Linear(4, 8), nn.Linear(8, 2)
            self.hyper = nn.Linear(8, 64)
            self.weight = nn.Parameter(torch.randn(8, 8) / 8 ** 0.5)

        def forward(self, x):
            h = torch.tanh(self.a(x))
            if role == "bias":
                y = F.linear(h, self.weight, h)
            else:
                y = F.linear(h, weight=self.hyper(h).view(8, 8))
            return self.o(torch.tanh(y))

    with pytest.raises(InvalidGraphError, match=f"takes the tensor .* as its {role}"):
        graphs.from_torch(Dynamic(), torch.randn(1, 4))


@pytest.mark.parametrize("dropout", [nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout,
                                     nn.FeatureAlphaDropout])
def test_every_dropout_at_p_zero_passes_through_and_above_is_named(dropout):
    # only nn.Dropout(p=0) passed; Dropout1d/2d and the alpha dropouts at p=0 (the identity) were
    # refused with "no known kernel rule", and at p > 0 without saying that p is the problem
    conv, x = (nn.Conv2d, torch.randn(2, 3, 5, 5)) if dropout is nn.Dropout2d else (nn.Conv1d, torch.randn(2, 3, 5))

    def net(p):
        return nn.Sequential(conv(3, 8, 1), nn.Tanh(), dropout(p), conv(8, 2, 1))

    g = graphs.from_torch(net(0.0), x)
    assert [g.nodes[n]["kind"] for n in nx.topological_sort(g)] == ["input", "linear", "activation", "linear", "output"]
    with pytest.raises(InvalidGraphError, match=rf"unsupported module {dropout.__name__} .*dropout with p > 0"):
        graphs.from_torch(net(0.1), x)


class _KeywordOperands(nn.Module):
    """A residual block 0.6*h + 0.8*g(tanh(h)) written with the operands passed by keyword (``keyword``)
    or by position."""

    def __init__(self, form: str, keyword: bool):
        super().__init__()
        self.form, self.keyword = form, keyword
        self.a, self.g, self.o = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2)

    def forward(self, x):
        kw, form = self.keyword, self.form
        h = self.a(input=x) if kw and form == "module" else self.a(x)
        t = torch.tanh(input=h) if kw and form == "activation" else torch.tanh(h)
        y = self.g(t)
        if form == "add":
            s = torch.add(0.6 * h, other=y, alpha=0.8) if kw else torch.add(0.6 * h, y, alpha=0.8)
        elif form == "method":
            s = (0.6 * h).add(other=y.mul(other=0.8)) if kw else (0.6 * h).add(y.mul(0.8))
        elif form == "neg":
            s = 0.8 * y - 0.6 * (torch.neg(input=h) if kw else torch.neg(h))
        else:
            s = 0.6 * h + 0.8 * y
        s = torch.flatten(input=s, start_dim=1) if kw and form == "flatten" else torch.flatten(s, start_dim=1)
        return self.o(s)


@pytest.mark.parametrize("form", ["module", "activation", "add", "method", "neg", "flatten"])
def test_operands_passed_by_keyword_map_like_positional_ones(form):
    # torch.add(h, other=y) raised a bare ValueError, self.a(input=x) and torch.flatten(input=...) an
    # IndexError, and torch.tanh(input=h) was refused for taking "the tensor 'a'" as a parameter
    x = torch.randn(3, 4)
    g = graphs.from_torch(_KeywordOperands(form, keyword=True), x)
    assert same_network(g, graphs.from_torch(_KeywordOperands(form, keyword=False), x))
    assert [g.nodes[n]["kind"] for n in nx.topological_sort(g)] == [
        "input", "linear", "activation", "linear", "weighted_sum", "linear", "output"]


class _GroupedConv(nn.Module):
    def __init__(self, in_channels: int, groups: int, functional: bool):
        super().__init__()
        self.functional, self.groups = functional, groups
        self.first = nn.Conv2d(in_channels, 8, 1)
        self.grouped = nn.Conv2d(8, 16, 3, padding=1, groups=groups)
        self.last = nn.Conv2d(16, 2, 1)

    def forward(self, x):
        h = torch.relu(self.first(x))
        if self.functional:
            h = F.conv2d(h, self.grouped.weight, None, 1, 1, 1, self.groups)
        else:
            h = self.grouped(h)
        return self.last(torch.relu(h))


class _GroupedAfterCat(nn.Module):
    def __init__(self, functional: bool, mixed_first: bool = False):
        super().__init__()
        self.functional, self.mixed_first = functional, mixed_first
        self.a, self.b, self.mix = nn.Conv1d(3, 4, 1), nn.Conv1d(3, 4, 1), nn.Conv1d(8, 8, 1)
        self.grouped, self.last = nn.Conv1d(8, 8, 1, groups=2), nn.Conv1d(8, 2, 1)

    def forward(self, x):
        h = torch.cat([self.a(x), torch.tanh(self.b(x))], 1)
        if self.mixed_first:
            h = self.mix(h)
        h = F.conv1d(h, self.grouped.weight, None, 1, 0, 1, 2) if self.functional else self.grouped(h)
        return self.last(torch.tanh(h))


@pytest.mark.parametrize("functional", [False, True])
def test_a_grouped_convolution_after_a_concatenation_is_refused(functional):
    # each group reads its own block of the concatenated channels: at width 2 x 1000 (float64, q = 2
    # at the input), cat(W_a x, tanh(W_b x)) -> groups=2 -> tanh measured q = 0.399, where the graph's
    # linear node (the kernel averaged over all channels) gave 0.436 (groups=1 measured 0.432)
    with pytest.raises(InvalidGraphError, match=r"grouped convolution \(2 groups of 4 input channels\) reading "
                                                r"channels that torch.cat 'cat' concatenated.*groups=1"):
        graphs.from_torch(_GroupedAfterCat(functional), torch.randn(2, 3, 5))
    # a linear layer in between mixes the parts: every channel then carries the same kernel
    g = graphs.from_torch(_GroupedAfterCat(functional, mixed_first=True), torch.randn(2, 3, 5))
    assert sum(g.nodes[n]["kind"] == "linear" for n in g) == 5


@pytest.mark.parametrize("functional", [False, True])
def test_a_depthwise_convolution_is_refused(functional):
    # each output channel of a depthwise conv reads one input channel: its pre-activations have that
    # channel's covariance, not the layer's kernel.  relu -> depthwise 1x1 -> relu on 20000 channels
    # at input C = 0.3 measured C = 0.489 (one relu C map: 0.483) where the graph gave two relu C
    # maps, 0.598 (as a dense layer measured: 0.604)
    with pytest.raises(InvalidGraphError, match=r"depthwise convolution.*in_channels / groups = 1.*groups=1"):
        graphs.from_torch(_GroupedConv(3, 8, functional), torch.randn(2, 3, 5, 5))
    with pytest.raises(InvalidGraphError, match="depthwise"):  # on the network input as well
        graphs.from_torch(nn.Sequential(nn.Conv1d(3, 6, 3, groups=3), nn.ReLU(), nn.Conv1d(6, 2, 1)),
                          torch.randn(2, 3, 9))
    # groups of several channels each mix channels (as a narrower dense layer does), and a conv on
    # a one-channel input reads all the input there is
    g = graphs.from_torch(_GroupedConv(3, 2, functional), torch.randn(2, 3, 5, 5))
    assert [g.nodes[n]["kind"] for n in nx.topological_sort(g)] == [
        "input", "linear", "activation", "linear", "activation", "linear", "output"]
    g = graphs.from_torch(nn.Sequential(nn.Conv1d(1, 6, 3), nn.ReLU(), nn.Conv1d(6, 2, 1)), torch.randn(2, 1, 9))
    assert [g.nodes[n]["kind"] for n in nx.topological_sort(g)] == ["input", "linear", "activation", "linear", "output"]


@pytest.mark.parametrize("functional", [False, True])
def test_a_conv_padded_past_its_centre_tap_is_refused(functional):
    # a linear node is a conv with delta initialisation (numeric.kernel_preserving_init_): with zero
    # padding wider than dilation*(k-1)//2 its border outputs read only padding.  Conv1d(16, 16, 3,
    # padding=2) so initialised gives q = 0 at both ends of its output; it was accepted as a linear node
    class Padded(nn.Module):
        def __init__(self, padding, dilation=1, padding_mode="zeros"):
            super().__init__()
            self.conv = nn.Conv1d(4, 8, 3, padding=padding, dilation=dilation, padding_mode=padding_mode)
            self.head = nn.Conv1d(8, 2, 1)

        def forward(self, x):
            if functional:
                h = F.conv1d(x, self.conv.weight, None, 1, self.conv.padding, self.conv.dilation)
            else:
                h = self.conv(x)
            return self.head(torch.tanh(h))

    import numeric
    conv = numeric.kernel_preserving_init_(nn.Conv1d(16, 16, 3, padding=2))
    q = conv(torch.randn(1, 16, 6)).square().mean(1).flatten()
    assert q[0] == 0 and q[-1] == 0 and (q[1:-1] > 0).all()
    x = torch.randn(2, 4, 9)
    with pytest.raises(InvalidGraphError, match=r"pads by 2 zeros, more than the centre of its kernel reaches "
                                                r"\(dilation\*\(kernel_size-1\)//2 = 1\).*padding='same'"):
        graphs.from_torch(Padded(2), x)
    for accepted in (Padded(1), Padded(2, dilation=2), Padded("same")) + (() if functional else (Padded(2, padding_mode="circular"),)):
        g = graphs.from_torch(accepted, x)
        assert [g.nodes[n]["kind"] for n in nx.topological_sort(g)] == ["input", "linear", "activation", "linear", "output"]


def test_activation_straight_after_input_fails_validation():
    net = nn.Sequential(nn.Tanh(), nn.Linear(3, 2))
    with pytest.raises(InvalidGraphError, match="not preceded by a linear layer"):
        graphs.from_torch(net, torch.randn(2, 3))


class _BasicBlockV1(nn.Module):
    """torchvision's BasicBlock without batch norm, with a normalised sum: relu(0.6 x + 0.8 conv(relu(conv(x))))."""

    def __init__(self, c=8):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        identity = x
        out = self.conv2(self.relu(self.conv1(x)))
        return self.relu(0.6 * identity + 0.8 * out)


class _ResNetV1(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.relu, self.pool = nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2)
        self.blocks = nn.Sequential(_BasicBlockV1(), _BasicBlockV1())
        self.head_pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(8, 10)

    def forward(self, x):
        x = self.blocks(self.pool(self.relu(self.stem(x))))
        return self.fc(torch.flatten(self.head_pool(x), 1))


def test_a_post_activation_resnet_traces_with_preactivations_mixed():
    # a torchvision-style ResNet V1 was refused with only "insert a linear node before" the post-sum
    # activation, and from_torch had no way to mark it as graphs.resnet(variant="v1") marks its graphs
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(InvalidGraphError, match=r"not preceded by a linear layer.*post-activation residual sum.*"
                                                r"from_torch\(model, x, preactivations='mixed'\)"):
        graphs.from_torch(_ResNetV1(), x)
    g = graphs.from_torch(_ResNetV1(), x, preactivations="mixed")
    assert g.graph["preactivations"] == "mixed"
    expected = graphs.resnet(blocks=(2,), variant="v1", block="basic", shortcut_weight=0.6, projection=False,
                             activation="relu")
    assert same_network(g, expected)
    with pytest.raises(InvalidGraphError, match="preactivations is 'Mixed'"):
        graphs.from_torch(_ResNetV1(), x, preactivations="Mixed")


def test_per_channel_prelu_is_rejected_unless_all_slopes_are_equal():
    prelu = nn.PReLU(8)
    with torch.no_grad():
        prelu.weight[3] = 0.5  # one channel differs: the first slope alone would misdescribe the network
    net = nn.Sequential(nn.Linear(4, 8), prelu, nn.Linear(8, 2))
    with pytest.raises(InvalidGraphError, match=r"PReLU\(num_parameters=8\).*per-channel PReLU is not "
                                                r"supported.*nn\.PReLU\(\) with one parameter"):
        graphs.from_torch(net, torch.randn(2, 4))
    # equal per-channel slopes are one activation; a single-parameter PReLU keeps its slope
    for module, slope in ((nn.PReLU(8, init=0.1), 0.1), (nn.PReLU(init=0.3), 0.3)):
        g = graphs.from_torch(nn.Sequential(nn.Linear(4, 8), module, nn.Linear(8, 2)), torch.randn(2, 4))
        (node,) = graphs.activation_nodes(g)
        assert g.nodes[node]["activation"] == "prelu"
        assert g.nodes[node]["activation_params"]["a"] == pytest.approx(slope, rel=1e-7)


def test_example_input_of_the_wrong_shape_is_a_graph_error(capfd):
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    with pytest.raises(InvalidGraphError, match=r"example input of shape \(3, 5\).*fx node '_0'.*"
                                                r"mat1 and mat2 shapes cannot be multiplied"):
        graphs.from_torch(net, torch.randn(3, 5))
    assert "Traceback" not in capfd.readouterr().err  # torch's ShapeProp printed one
    with pytest.raises(InvalidGraphError, match="example_input to be a tensor.*got NoneType"):
        graphs.from_torch(net, None)


def test_tracing_leaves_the_model_state_and_the_random_generator_as_they_were():
    # from_torch runs the model once on the example input: that updated a BatchNorm's running
    # statistics (num_batches_tracked 0 -> 1) before refusing it, advanced spectral_norm's power
    # iteration, and drew dropout masks from torch's generator
    bn = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 2))
    with pytest.raises(InvalidGraphError, match="BatchNorm1d"):
        graphs.from_torch(bn, torch.randn(5, 4))
    assert int(bn[1].num_batches_tracked) == 0 and not bn[1].running_mean.any()
    assert torch.equal(bn[1].running_var, torch.ones(8))
    lazy = nn.Sequential(nn.Linear(4, 8), nn.LazyBatchNorm1d(), nn.Tanh(), nn.Linear(8, 2))  # buffers without values
    with pytest.raises(InvalidGraphError, match="BatchNorm1d"):
        graphs.from_torch(lazy, torch.randn(5, 4))

    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.utils.parametrizations.spectral_norm(nn.Linear(8, 2)))
    state = {k: v.clone() for k, v in net.state_dict().items()}
    graphs.from_torch(net, torch.randn(5, 4))
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())

    dropout = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Tanh(), nn.Linear(8, 2))
    x = torch.randn(5, 4)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    with pytest.raises(InvalidGraphError, match="dropout"):
        graphs.from_torch(dropout, x)
    assert torch.equal(torch.rand(3), expected)


def test_forward_arguments_left_at_their_defaults_are_traced_at_those_values():
    # a flag or an optional tensor argument (mask=None) was traced as a second symbolic input:
    # `if return_hidden:` failed as "data-dependent control flow", `if y is not None` took the
    # branch that adds None; with one example tensor they are the constants they default to
    class WithDefaults(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.o = nn.Linear(4, 8), nn.Linear(8, 2)

        def forward(self, x, mask=None, return_hidden=False, scale: float = 1.0, *, extra=None):
            h = torch.tanh(self.a(x))
            if mask is not None:
                h = h * mask
            if extra is not None:
                h = h + extra
            if return_hidden:
                return h
            return self.o(h) * scale

    x = torch.randn(3, 4)
    g = graphs.from_torch(WithDefaults(), x)
    assert same_network(g, graphs.from_torch(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)), x))
    # a second argument given an example tensor is a second network input, as before
    with pytest.raises(InvalidGraphError, match=r"one tensor input; WithDefaults.forward takes \['x', 'mask'\]"):
        graphs.from_torch(WithDefaults(), (x, torch.ones(3, 8)))


def test_a_tensor_default_argument_is_a_graph_error():
    # fx cannot write a tensor default into the code of the graph it traced: a bare NameError escaped
    class TensorDefault(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x, shift=torch.zeros(2)):
            return self.fc(x) + shift

    with pytest.raises(InvalidGraphError, match="could not compile.*default it to None"):
        graphs.from_torch(TensorDefault(), torch.randn(3, 4))


def test_more_example_tensors_than_forward_arguments_is_a_graph_error():
    """A second example tensor for a one-input model was silently ignored."""
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    with pytest.raises(InvalidGraphError, match=r"takes 1 input\(s\) \(input\), but example_input holds 2"):
        graphs.from_torch(net, (torch.randn(3, 4), torch.randn(3, 4)))
    assert graphs.from_torch(net, (torch.randn(3, 4),)).number_of_nodes() == 5  # a 1-tuple is one tensor


class Mixer(nn.Module):
    """(batch, tokens 5, 3) -> features 8, then a token-mixing Linear(5, 5) between two `swap`s
    of the last two dims (an MLP-Mixer block), a channel Linear and a mean over the tokens."""

    def __init__(self, swap):
        super().__init__()
        self.embed, self.tok, self.ch, self.swap = nn.Linear(3, 8), nn.Linear(5, 5), nn.Linear(8, 8), swap

    def forward(self, x):
        t = torch.tanh(self.tok(self.swap(torch.tanh(self.embed(x)))))
        return self.ch(self.swap(t)).mean(1)


@pytest.mark.parametrize("swap", [lambda u: u.transpose(1, 2), lambda u: torch.transpose(u, -1, -2),
                                  lambda u: u.permute(0, 2, 1), lambda u: torch.permute(u, (0, 2, 1)),
                                  lambda u: u.mT, lambda u: u.swapaxes(1, 2), lambda u: torch.movedim(u, 2, 1),
                                  lambda u: u.transpose(1, u.dim() - 1)],  # a dim computed from the shape
                         ids=["transpose", "torch.transpose", "permute", "torch.permute", "mT", "swapaxes",
                              "movedim", "computed-dim"])
def test_transposes_move_the_feature_dims_with_them(swap):
    g = graphs.from_torch(Mixer(swap), torch.randn(2, 5, 3))
    assert same_network(g, chain("linear", "activation", "linear", "activation", "linear", "pool"))


def test_a_mean_over_features_moved_by_a_transpose_is_refused():
    class Transposed(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.head = nn.Linear(3, 8), nn.Linear(5, 2)

        def forward(self, x):
            return self.head(torch.tanh(self.embed(x)).transpose(1, 2).mean(1))  # (2, 8, 5): dim 1 is features

    with pytest.raises(InvalidGraphError, match=r"averages over dim\(s\) \[1\] of a tensor of shape \(2, 8, 5\) "
                                                r"whose features \(written by Linear 'embed'\) are dim 1"):
        graphs.from_torch(Transposed(), torch.randn(2, 5, 3))


def test_numbers_computed_from_shapes_are_constants():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.head = nn.Linear(3, 8), nn.Linear(8, 2)

        def forward(self, x):
            h = torch.tanh(self.embed(x))
            return self.head(F.normalize(h, dim=-1) * h.shape[-1] ** 0.5)

    g = graphs.from_torch(Scaled(), torch.randn(2, 5, 3))
    assert same_network(g, chain("linear", "activation", "normalise", "linear"))


class _SharedBlocks(nn.Module):
    """Two residual blocks y = 0.6*y + 0.8*W(sin(y)); ``tie`` selects how the two Ws relate."""

    def __init__(self, tie: str):
        super().__init__()
        self.tie = tie
        self.l0, self.l1, self.l2 = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)
        if tie == "parameter":
            self.l2.weight = self.l1.weight

    def forward(self, x):
        y = self.l0(x)
        for layer in ((self.l1, self.l1) if self.tie == "module" else (self.l1, self.l2)):
            if self.tie == "functional":
                branch = F.linear(torch.sin(y), self.l1.weight)
            else:
                branch = layer(torch.sin(y))
            y = 0.6 * y + 0.8 * branch
        return y


@pytest.mark.parametrize("tie", ["module", "parameter", "functional"])
def test_a_weighted_sum_of_branches_sharing_one_weight_matrix_is_refused(tie):
    # W u and W v for one W are correlated (covariance <u, v>/n), so the second block's sum has a
    # cross term: a width-3000 float64 net of this form measured C(0.3) = 0.298 and q = 1.38,
    # where the sum rule (independent weights) gives 0.250 and q = 1
    with pytest.raises(InvalidGraphError, match="applied more than once"):
        graphs.from_torch(_SharedBlocks(tie), torch.randn(2, 4))


_PARAMETRIZATIONS = [pytest.param(lambda m: nn.utils.parametrizations.weight_norm(m), id="weight_norm"),
                     pytest.param(lambda m: nn.utils.parametrizations.orthogonal(m), id="orthogonal"),
                     pytest.param(lambda m: nn.utils.parametrizations.spectral_norm(m), id="spectral_norm")]


@pytest.mark.parametrize("parametrize", _PARAMETRIZATIONS)
def test_a_parametrized_layer_called_twice_is_one_weight_matrix(parametrize):
    # a parametrized module's .weight is a new tensor at every access: its id named nothing, so the
    # two calls below looked like two independent matrices and the sum was accepted
    net = _SharedBlocks("module")
    net.l1 = parametrize(net.l1)
    with pytest.raises(InvalidGraphError, match="applied more than once"):
        graphs.from_torch(net, torch.randn(2, 4))


def test_separate_parametrized_layers_are_never_taken_as_tied():
    # ... and a freed .weight's id was often handed to the next layer's: spectral-normed layers in
    # eight residual blocks were refused as tied in about half the calls
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.utils.parametrizations.spectral_norm(nn.Linear(8, 8))
            self.b = nn.utils.parametrizations.spectral_norm(nn.Linear(8, 8))

        def forward(self, x):
            return 0.6 * x + 0.8 * self.b(torch.tanh(self.a(torch.tanh(x))))

    for seed in range(8):
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(4, 8), *[Block() for _ in range(8)], nn.Linear(8, 2))
        g = graphs.from_torch(net, torch.randn(3, 4))
        assert not [n for n in g if "weights" in g.nodes[n]]
        assert len([n for n in g if g.nodes[n]["kind"] == "weighted_sum"]) == 8


def test_separate_weights_and_a_weight_tied_chain_are_accepted():
    g = graphs.from_torch(_SharedBlocks("none"), torch.randn(2, 4))
    assert len([n for n in g if g.nodes[n]["kind"] == "weighted_sum"]) == 2

    class TiedChain(nn.Module):  # one W twice in series: each call sees only its own input's kernel
        def __init__(self):
            super().__init__()
            self.l = nn.Linear(4, 4)

        def forward(self, x):
            return self.l(torch.tanh(self.l(x)))

    g = graphs.from_torch(TiedChain(), torch.randn(2, 4))
    assert [g.nodes[n]["kind"] for n in nx.topological_sort(g)] == ["input", "linear", "activation", "linear", "output"]


@pytest.mark.parametrize("divide", [lambda h: torch.div(h, 0.5, rounding_mode="floor"),
                                    lambda h: h.div(1.0, rounding_mode="trunc")])
def test_a_rounding_division_is_refused_not_read_as_a_scaling(divide):
    # with rounding, h / d is a step function of h, not a (scaled) Gaussian pre-activation
    h = torch.tensor([0.3, -0.7, 1.5])
    assert len(torch.unique(divide(h * 0.01))) < 3

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.l2 = nn.Linear(3, 3), nn.Linear(3, 3)

        def forward(self, x):
            return self.l2(torch.tanh(divide(self.l1(x))))

    with pytest.raises(InvalidGraphError, match="rounding_mode"):
        graphs.from_torch(Net(), torch.randn(2, 3))


def test_functional_activation_parameters_computed_from_shapes_or_buffers_are_read():
    # a parameter that is not a literal number was dropped, so the catalogue default (leaky_relu's
    # 0.01, elu's 1, softplus's 1) silently replaced the value torch computes with
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.l = nn.ModuleList(nn.Linear(4, 4) for _ in range(4))
            self.register_buffer("slope", torch.tensor(0.25))

        def forward(self, x):
            x = F.leaky_relu(self.l[0](x), x.size(-1) / 100)
            x = F.elu(self.l[1](x), alpha=x.dim() / 4)
            x = F.softplus(self.l[2](x), beta=x.size(-1))
            x = F.leaky_relu(self.l[3](x), self.slope)
            return x

    g = graphs.from_torch(Net(), torch.randn(2, 4))
    import symact
    z = torch.linspace(-3, 3, 13, dtype=torch.float64)
    torch_fns = [lambda t: F.leaky_relu(t, 0.04), lambda t: F.elu(t, 0.5), lambda t: F.softplus(t, 4),
                 lambda t: F.leaky_relu(t, 0.25)]
    for node, fn in zip(graphs.activation_nodes(g), torch_fns):
        act = symact.activation(g.nodes[node]["activation"], **g.nodes[node]["activation_params"])
        ours = [float(act.concrete_expr.subs(act.x, float(t))) for t in z]
        assert ours == pytest.approx(fn(z).tolist(), rel=1e-12, abs=1e-12), node


@pytest.mark.parametrize("make", [lambda: nn.Softplus(beta=2.0, threshold=1.0),
                                  lambda: (lambda t: F.softplus(t, 2.0, 1.0)),
                                  lambda: (lambda t: F.softplus(t, beta=2.0, threshold=1.0))])
def test_softplus_with_a_small_threshold_is_refused(make):
    fn = make()
    z = torch.linspace(-2, 2, 41, dtype=torch.float64)
    formula = torch.log1p(torch.exp(2.0 * z)) / 2.0  # what the catalogue's softplus(beta=2) computes
    assert (fn(z) - formula).abs().max() > 0.1  # torch switches to x where 2x > 1: another function

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.l2, self.act = nn.Linear(3, 3), nn.Linear(3, 3), fn

        def forward(self, x):
            return self.l2(self.act(self.l1(x)))

    with pytest.raises(InvalidGraphError, match="threshold=1.0"):
        graphs.from_torch(Net(), torch.randn(2, 3))


def test_softplus_thresholds_within_rounding_are_accepted():
    net = nn.Sequential(nn.Linear(3, 3), nn.Softplus(beta=2.0, threshold=15.0), nn.Linear(3, 3), nn.Softplus())
    g = graphs.from_torch(net, torch.randn(2, 3))
    assert [g.nodes[n]["activation_params"] for n in graphs.activation_nodes(g)] == [{"beta": 2.0}, {"beta": 1.0}]


@pytest.mark.parametrize("cat", [lambda a, b: torch.cat(tensors=[a, b], dim=1),
                                 lambda a, b: torch.cat([a, b], dim=a.dim() - 1),
                                 lambda a, b: torch.concatenate([a, b], axis=-1),
                                 lambda a, b: torch.concat((a, b), -1)])
def test_concatenation_arguments_are_read_however_they_are_passed(cat):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 2), nn.Linear(3, 5)

        def forward(self, x):
            return cat(torch.tanh(self.a(x)), torch.sin(self.b(x)))

    g = graphs.from_torch(Net(), torch.randn(4, 3))
    (node,) = [n for n in g if g.nodes[n]["kind"] == "concat"]
    assert sorted(graphs.edge_channels(g, node).values()) == [2, 5]  # the sizes torch concatenates
    assert g.nodes["output"]["kind"] == "output" and list(g.predecessors("output")) == [node]


def test_a_generated_autograd_function_in_forward_is_told_to_become_a_module(tmp_path):
    import importlib.util

    import numeric

    class Applies(nn.Module):
        def __init__(self, fn):
            super().__init__()
            self.l1, self.l2, self.fn = nn.Linear(4, 4), nn.Linear(4, 2), fn

        def forward(self, x):
            return self.l2(self.fn(self.l1(x)))

    numeric.export_module("helu", tmp_path / "helu_module.py", class_name="HeLU")
    spec = importlib.util.spec_from_file_location("helu_module", tmp_path / "helu_module.py")
    exported = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exported)
    for fn in (numeric.torch_function("helu").apply, exported.HeLU()):
        with pytest.raises(InvalidGraphError, match=r"cannot trace into; make it a submodule with "
                                                    r"numeric\.torch_module\(act\)") as info:
            graphs.from_torch(Applies(fn), torch.randn(2, 4))
        assert "as_tensor" not in str(info.value) and "control flow" not in str(info.value)


def test_helu_is_traced_as_helu_and_relu_as_relu():
    import numeric
    import symact
    from analysis import kernel_maps

    helu = symact.activation("helu", alpha=sympy.Rational(1, 5))
    g = graphs.from_torch(nn.Sequential(nn.Linear(4, 4), numeric.torch_module(helu), nn.Linear(4, 4), nn.ReLU(),
                                        nn.Linear(4, 4), numeric.torch_module("relu")),
                          torch.randn(2, 4))
    first, second, third = (g.nodes[n]["activation"] for n in graphs.activation_nodes(g))
    assert first == helu and first.surrogate is not None and first != symact.activation("relu")
    assert second == "relu" and third == symact.activation("relu") and third.surrogate is None
    # the kernel maps see the forward only: HeLU's C map is relu's arc-cosine map (Cho & Saul),
    # C(c) = (sqrt(1 - c**2) + (pi - arccos c) c) / pi, composed three times
    arccos = lambda c: (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / math.pi
    maps = {n: kernel_maps(g.nodes[n]["activation"], dps=20) for n in graphs.activation_nodes(g)}
    got = graphs.network_c_map(g, lambda n, c: maps[n].c_map(c), 0.3)
    assert float(got) == pytest.approx(arccos(arccos(arccos(0.3))), rel=1e-12)


class _InPlace(nn.Module):
    """h = l1(x); a = act(h) (in place or not); returns 0.6*read(h) + 0.8*l2(a)."""

    def __init__(self, act, read=lambda h: h):
        super().__init__()
        self.l1, self.l2, self.act, self.read = nn.Linear(4, 4), nn.Linear(4, 4), act, read

    def forward(self, x):
        h = self.l1(x)
        v = self.read(h)  # a view of h taken before act, read after it
        a = self.act(h)
        return 0.6 * v + 0.8 * self.l2(a)


@pytest.mark.parametrize("act, read", [
    (nn.ReLU(inplace=True), lambda h: h),
    (lambda h: F.relu(h, inplace=True), lambda h: h),
    (lambda h: F.leaky_relu(h, 0.2, True), lambda h: h),
    (lambda h: h.tanh_(), lambda h: h),
    (lambda h: torch.relu_(h), lambda h: h.view(2, 4)),
    (lambda h: h.mul_(1.0), lambda h: h.transpose(0, 1).transpose(0, 1)),
    # a dropout at p=0 returns its input tensor itself, so these overwrite h as well (they were accepted)
    (nn.ReLU(inplace=True), nn.Dropout(0.0)),
    (nn.Sequential(nn.Dropout1d(0.0), nn.ReLU(inplace=True)), lambda h: h),
])
def test_an_in_place_op_whose_input_is_read_afterwards_is_refused(act, read):
    net = _InPlace(act, read)
    x = torch.randn(2, 4)
    h = net.l1(x).detach()
    with torch.no_grad():
        overwritten = net.act(h.clone())
        # what torch computes: the shortcut reads the overwritten h, not the pre-activation h
        assert torch.allclose(net(x), 0.6 * overwritten + 0.8 * net.l2(overwritten))
    with pytest.raises(InvalidGraphError, match="in place.*read it afterwards"):
        graphs.from_torch(net, x)


@pytest.mark.parametrize("inplace, plain", [
    (nn.ReLU(inplace=True), nn.ReLU()),
    (lambda h: F.elu(h, 0.5, inplace=True), lambda h: F.elu(h, 0.5)),
    (lambda h: h.relu_(), lambda h: h.relu()),
    (lambda h: torch.tanh_(h), torch.tanh),
    (lambda h: F.leaky_relu_(h, 0.2), lambda h: F.leaky_relu(h, 0.2)),
])
def test_an_in_place_activation_nothing_reads_past_maps_like_the_plain_one(inplace, plain):
    class Net(nn.Module):
        def __init__(self, act):
            super().__init__()
            self.l1, self.l2, self.act = nn.Linear(4, 4), nn.Linear(4, 4), act

        def forward(self, x):
            return self.l2(self.act(self.l1(x)))

    g_inplace = graphs.from_torch(Net(inplace), torch.randn(2, 4))
    g_plain = graphs.from_torch(Net(plain), torch.randn(2, 4))
    assert same_network(g_inplace, g_plain)
    assert [g_inplace.nodes[n]["activation_params"] for n in graphs.activation_nodes(g_inplace)] == \
        [g_plain.nodes[n]["activation_params"] for n in graphs.activation_nodes(g_plain)]


def test_dims_and_alpha_computed_from_shapes_are_read():
    # these raised raw TypeErrors ('Node' object is not iterable, float * Node) or were refused
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x):  # x: (batch, length, features)
            h = torch.add(self.a(x), self.b(x), alpha=x.dim() - 2.0) / 2**0.5  # alpha 1
            h = F.normalize(self.c(torch.tanh(h)), dim=x.dim() - 1) * x.size(-1) ** 0.5
            return h.mean(dim=x.dim() - 2)

    g = graphs.from_torch(Net(), torch.randn(2, 3, 4))
    assert [g.nodes[n]["kind"] for n in nx.topological_sort(g)][-3:] == ["normalise", "pool", "output"]
    (node,) = [n for n in g if g.nodes[n]["kind"] == "weighted_sum"]
    assert sorted(graphs.edge_weights(g, node).values()) == pytest.approx([2**-0.5, 2**-0.5], rel=1e-15)


@pytest.mark.parametrize("pool, what", [
    (nn.AvgPool1d(3, stride=1, padding=1), "count_include_pad"),
    (lambda t: F.avg_pool1d(t, 3, 1, 1), "count_include_pad"),
    (nn.AvgPool1d(3, stride=2, padding=1, ceil_mode=True), "count_include_pad"),
    (nn.AvgPool2d(2, divisor_override=1), "divisor_override"),
    (lambda t: F.avg_pool2d(t, 2, divisor_override=2), "divisor_override"),
])
def test_an_average_pool_that_rescales_its_outputs_is_refused(pool, what):
    spatial = 2 if what == "divisor_override" else 1
    ones = torch.ones(1, 1, *([6] * spatial))
    # a pool of ones that averaged would give ones: these give other values (the border, or everywhere)
    assert not torch.allclose(pool(ones), torch.ones(()))
    conv = nn.Conv2d(3, 3, 1) if spatial == 2 else nn.Conv1d(3, 3, 1)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.pool = conv, pool

        def forward(self, x):
            return self.pool(torch.tanh(self.conv(x)))

    with pytest.raises(InvalidGraphError, match=what):
        graphs.from_torch(Net(), torch.randn(2, 3, *([6] * spatial)))


def test_average_pools_that_average_are_accepted():
    for pool in (nn.AvgPool1d(3, stride=1, padding=1, count_include_pad=False), nn.AvgPool1d(2, ceil_mode=True),
                 lambda t: F.avg_pool1d(t, 3, 1, 1, False, False), nn.AdaptiveAvgPool1d(2)):
        assert torch.allclose(pool(torch.ones(1, 1, 5)), torch.ones(()))  # ones stay ones

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv, self.pool = nn.Conv1d(3, 3, 1), pool

            def forward(self, x):
                return self.pool(torch.tanh(self.conv(x)))

        g = graphs.from_torch(Net(), torch.randn(2, 3, 5))
        assert [g.nodes[n]["kind"] for n in nx.topological_sort(g)] == ["input", "linear", "activation", "pool",
                                                                         "output"]


def test_a_compiled_generated_module_is_one_node_with_its_activation():
    # torch_module(act, compile=True) wraps the generated module; it was traced into and refused
    # with the advice to make the module with numeric.torch_module(act), as it was
    import symact
    import numeric

    module = numeric.torch_module("squareplus", trainable=("b",), compile=True)
    with torch.no_grad():
        module._orig_mod.b.fill_(2.0)
    g = graphs.from_torch(Around(module), torch.randn(2, 4))
    assert same_network(g, graphs.mlp(1, activation=symact.activation("squareplus", b=2)))


class _FunctionalDropout(nn.Module):
    """linear -> tanh -> dropout (called functionally) -> linear."""

    def __init__(self, dropout, *args, **kwargs):
        super().__init__()
        self.a, self.o = nn.Linear(4, 8), nn.Linear(8, 2)
        self.dropout, self.args, self.kwargs = dropout, args, kwargs

    def forward(self, x):
        return self.o(self.dropout(torch.tanh(self.a(x)), *self.args, **self.kwargs))


@pytest.mark.parametrize("dropout, args, kwargs", [
    (F.dropout, (), {"p": 0}),
    (F.dropout, (0.0,), {"training": True}),
    (F.dropout, (0.5,), {"training": False}),
    (F.dropout, (0.5, False), {}),
    (F.alpha_dropout, (0.3,), {}),  # training defaults to False for the alpha dropouts
    (F.dropout1d, (0.0,), {}),
    (F.feature_alpha_dropout, (0.0, True), {}),
    (torch.dropout, (0.0, True), {}),
    (torch.dropout, (0.5, False), {}),
])
def test_a_functional_dropout_that_is_the_identity_passes_through(dropout, args, kwargs):
    """F.dropout(h, p=0) and F.dropout(h, p, training=False) return h itself, but every functional
    dropout was refused as an 'unsupported op' (only the modules at p=0 passed)."""
    x = torch.randn(3, 4) if dropout is not F.dropout1d else torch.randn(3, 4, 5)
    net = _FunctionalDropout(dropout, *args, **kwargs)
    if dropout is F.dropout1d:
        net.a, net.o = nn.Conv1d(4, 8, 1), nn.Conv1d(8, 2, 1)
    g = graphs.from_torch(net, x)
    assert same_network(g, graphs.mlp(1, activation="tanh"))


@pytest.mark.parametrize("dropout, args, kwargs", [
    (F.dropout, (), {}),  # p=0.5, training=True by default
    (F.dropout, (0.1,), {"training": True}),
    (F.alpha_dropout, (0.1, True), {}),
    (torch.dropout, (0.2, True), {}),
])
def test_a_functional_dropout_in_training_is_refused_naming_the_op_and_the_fix(dropout, args, kwargs):
    net = _FunctionalDropout(dropout, *args, **kwargs)
    with pytest.raises(InvalidGraphError, match=r"fx node '\w*dropout\w*'.* in training mode.*q by 1/\(1 - p\)"
                                                r".*pass p=0 or training=False"):
        graphs.from_torch(net, torch.randn(3, 4))


def test_dropout_follows_the_model_mode_and_q_grows_by_one_over_keep_in_training():
    """A dropout module in eval mode (model.eval()) is the identity, like F.dropout(h, p,
    training=self.training) then; in training mode it is refused, for the reason checked here
    numerically: inverted dropout multiplies q by 1/(1 - p) and keeps the covariance of two inputs."""
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.o = nn.Linear(4, 8), nn.Linear(8, 2)

        def forward(self, x):
            return self.o(F.dropout(torch.tanh(self.a(x)), 0.5, training=self.training))

    for net in (nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Dropout(0.5), nn.Linear(8, 2)), Functional()):
        with pytest.raises(InvalidGraphError, match="training mode.*model.eval\\(\\)|training mode.*training=False"):
            graphs.from_torch(net, torch.randn(3, 4))
        g = graphs.from_torch(net.eval(), torch.randn(3, 4))
        assert same_network(g, graphs.mlp(1, activation="tanh"))
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(2, 400_000, generator=gen, dtype=torch.float64)
    keep = (torch.rand(2, 400_000, generator=gen) >= 0.5).to(torch.float64) / 0.5
    q, cov = (u[0] * keep[0]).square().mean(), (u[0] * keep[0] * (0.6 * u[0] + 0.8 * u[1]) * keep[1]).mean()
    assert abs(q - 2.0) < 0.03 and abs(cov - 0.6) < 0.03


def test_an_in_place_op_after_an_identity_functional_dropout_is_caught():
    """F.dropout(h, p=0) returns h itself, so h.relu_() on its result overwrites h too."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.o = nn.Linear(4, 8), nn.Linear(8, 2)

        def forward(self, x):
            h = self.a(x)
            y = F.dropout(h, p=0.0).relu_()
            return self.o(0.6 * h + 0.8 * y)

    with pytest.raises(InvalidGraphError, match="overwrites 'dropout' in place"):
        graphs.from_torch(Net(), torch.randn(3, 4))


@pytest.mark.parametrize("call, alpha", [
    (lambda h: torch.celu(h), 1.0),
    (lambda h: torch.celu(h, 0.5), 0.5),
    (lambda h: torch.celu(h, alpha=2.0), 2.0),
    (lambda h: F.celu(h, alpha=0.5), 0.5),
    (nn.CELU(0.7), 0.7),
])
def test_celu_in_every_form_maps_to_the_catalogue_celu_with_its_alpha(call, alpha):
    """torch.celu (a builtin other than F.celu) was refused as an unsupported op."""
    import symact

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.f, self.o = nn.Linear(4, 8), call, nn.Linear(8, 2)

        def forward(self, x):
            return self.o(self.f(self.a(x)))

    g = graphs.from_torch(Net(), torch.randn(3, 4))
    (node,) = graphs.activation_nodes(g)
    name, params = g.nodes[node]["activation"], g.nodes[node]["activation_params"]
    assert name == "celu" and params.get("alpha", 1.0) == alpha
    # the node's activation computes what torch computes
    act = symact.activation(name, **params)
    t = torch.linspace(-3, 3, 13, dtype=torch.float64)
    expected = call(t) if isinstance(call, nn.Module) else call(t)
    got = [float(act.expr.subs(act.x, float(v)).subs(act.params)) for v in t] if hasattr(act, "params") else None
    assert got is not None and max(abs(a - float(b)) for a, b in zip(got, expected)) < 1e-12


def test_torch_special_expit_is_sigmoid():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.o = nn.Linear(4, 8), nn.Linear(8, 2)

        def forward(self, x):
            return self.o(torch.special.expit(self.a(x)))

    assert same_network(graphs.from_torch(Net(), torch.randn(3, 4)), graphs.mlp(1, activation="sigmoid"))


class _StackedBranches(nn.Module):
    """stem -> two branches tanh -> linear, joined by torch.stack (``dim``) then flattened, or by
    torch.cat; head tanh -> linear: the layout of graphs.multi_branch((1, 1), combine="concat")."""

    def __init__(self, join):
        super().__init__()
        self.stem, self.b0, self.b1, self.head = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(16, 2)
        self.join = join

    def forward(self, x):
        h = self.stem(x)
        return self.head(torch.tanh(self.join(self.b0(torch.tanh(h)), self.b1(torch.tanh(h)))))


@pytest.mark.parametrize("join", [
    lambda a, b: torch.stack([a, b], dim=-1).flatten(1),
    lambda a, b: torch.stack([a, b], dim=1).view(a.shape[0], -1),
    lambda a, b: torch.stack((a, b), 2).reshape(-1, 16),
    lambda a, b: torch.stack(tensors=[a, b], dim=1).flatten(1),
    lambda a, b: torch.cat([a, b], dim=1),
])
def test_stacking_branches_into_the_features_is_a_concat(join):
    """torch.stack was refused as an unsupported op; stacking branches along a new dim that then
    joins the features is a channel concatenation of equal parts."""
    g = graphs.from_torch(_StackedBranches(join), torch.randn(3, 4))
    ref = graphs.multi_branch((1, 1), combine="concat", activation="tanh")
    assert same_network(g, ref) if "stack" in g else same_network(
        g, graphs.multi_branch((1, 1), combine="concat", channels=(8, 8), activation="tanh"))


def test_stacking_into_positions_or_concatenating_along_the_batch_is_refused_naming_the_op():
    # stacked before the batch, then moved behind it and flattened into the features: a concat
    g = graphs.from_torch(_StackedBranches(lambda a, b: torch.stack([a, b]).transpose(0, 1).flatten(1)),
                          torch.randn(3, 4))
    assert same_network(g, graphs.multi_branch((1, 1), combine="concat", activation="tanh"))
    with pytest.raises(InvalidGraphError, match=r"fx node 'cat'.* concatenates along the batch dim 0"):
        graphs.from_torch(_StackedBranches(lambda a, b: torch.cat([a, b]).view(3, 16)), torch.randn(3, 4))

    # (batch, 2, features) read by a Linear on the features: the two branches sit at two positions,
    # with their own kernels, which a concat node (one averaged kernel) does not describe
    class Positions(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.b0, self.b1, self.mix = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)
            self.head = nn.Linear(8, 2)

        def forward(self, x):
            h = torch.tanh(self.stem(x))
            s = torch.stack([self.b0(h), self.b1(h)], dim=1)
            return self.head(torch.tanh(self.mix(s)).mean(1))

    with pytest.raises(InvalidGraphError, match=r"fx node 'mix'.*Linear mixes dim 2 of a tensor of shape \(3, 2, 8\) "
                                                r"that torch.stack 'stack' concatenated along dim 1"):
        graphs.from_torch(Positions(), torch.randn(3, 4))


class _RawCat(nn.Module):
    """A conv net that concatenates its input x (batch, channels, length) with an average pool of it."""

    def __init__(self, dim, then=None):
        super().__init__()
        self.dim, self.then = dim, then
        self.conv, self.head = nn.Conv1d(3 if dim == 2 else 6, 8, 1), nn.Conv1d(8, 2, 1)

    def forward(self, x):
        h = torch.cat([x, F.avg_pool1d(x, 3, stride=1, padding=1, count_include_pad=False)], dim=self.dim)
        if self.then is not None:
            h = self.then(h)
        return self.head(torch.tanh(self.conv(h)))


def test_concatenating_the_input_along_a_spatial_dim_is_refused():
    """torch.cat([x, pool(x)], dim=2) of a conv net's input (no linear layer yet, so no feature dims
    known) was taken as a channel concat: the parts sit at different positions, each with its own
    kernel (x's and the pooled x's), where the graph gave every position their average."""
    g = graphs.from_torch(_RawCat(1), torch.randn(2, 3, 5))  # along the channels: a concat
    assert g.nodes["cat"]["kind"] == "concat" and graphs.edge_channels(g, "cat") == {"x": 3, "avg_pool1d": 3}
    with pytest.raises(InvalidGraphError, match=r"fx node 'conv'.*mixes dim 1 of a tensor of shape \(2, 3, 10\) "
                                                r"that torch.cat 'cat' concatenated along dim 2.*concatenate along "
                                                r"the dim this layer mixes \(dim 1"):
        graphs.from_torch(_RawCat(2), torch.randn(2, 3, 5))
    # and pooling across the seam averages the two parts together
    with pytest.raises(InvalidGraphError, match=r"averages over dim\(s\) \[2\] of a tensor of shape \(2, 3, 10\) "
                                                r"that torch.cat 'cat' concatenated"):
        graphs.from_torch(_RawCat(2, then=lambda h: h.mean(2, keepdim=True)), torch.randn(2, 3, 5))


def test_token_mixing_after_a_feature_concat_is_refused():
    """MLP-Mixer token mixing makes the features positions; after a concat the two parts' features
    then sit at different positions with different kernels (the concat rule averages them)."""
    class Mixer(nn.Module):
        def __init__(self, concat):
            super().__init__()
            self.concat = concat
            self.a, self.b, self.c = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 12)
            self.tokens, self.head = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):  # (batch, 4 tokens, 6 features)
            h = self.a(x)
            h = torch.cat([h, self.b(torch.tanh(h))], dim=-1) if self.concat else self.c(torch.tanh(h))
            return self.head(torch.tanh(self.tokens(h.transpose(1, 2))))

    graphs.from_torch(Mixer(concat=False), torch.randn(2, 4, 6))
    with pytest.raises(InvalidGraphError, match=r"fx node 'tokens'.*torch.cat 'cat' concatenated along dim 1"):
        graphs.from_torch(Mixer(concat=True), torch.randn(2, 4, 6))


class _SequenceFirst(nn.Module):
    """(batch, length, features) -> Linear, tanh -> transpose(0, 1) to (length, batch, features), the
    layout of nn.Transformer's batch_first=False, -> a mean over ``dim`` -> Linear."""

    def __init__(self, dim):
        super().__init__()
        self.a, self.o, self.dim = nn.Linear(6, 8), nn.Linear(8, 2), dim

    def forward(self, x):
        return self.o(torch.tanh(self.a(x)).transpose(0, 1).mean(self.dim))


def test_the_batch_dim_is_followed_through_transposes():
    """Every check took dim 0 as the batch: after x.transpose(0, 1) a mean over dim 1, which averages
    the batch (mixing examples), was read as average pooling, and the mean over the sequence (now
    dim 0) refused as a mean over the batch."""
    x = torch.randn(3, 4, 6)
    g = graphs.from_torch(_SequenceFirst(0), x)
    assert [g.nodes[n]["kind"] for n in nx.topological_sort(g)] == [
        "input", "linear", "activation", "pool", "linear", "output"]
    with pytest.raises(InvalidGraphError, match=r"averages over dim\(s\) \[1\] of a tensor of shape \(4, 3, 8\), "
                                                r"including dim 1, which holds the batch"):
        graphs.from_torch(_SequenceFirst(1), x)
    # a concat along the moved batch is refused likewise, and one along the features still passes
    class Cat(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.a, self.b, self.o, self.dim = nn.Linear(6, 8), nn.Linear(6, 8), nn.Linear(16 if dim == 2 else 8, 2), dim

        def forward(self, x):
            h = torch.cat([self.a(x).transpose(0, 1), self.b(x).transpose(0, 1)], dim=self.dim)
            return self.o(torch.tanh(h).mean(0))

    assert graphs.edge_channels(graphs.from_torch(Cat(2), x), "cat") == {"a": 8, "b": 8}
    with pytest.raises(InvalidGraphError, match=r"concatenates along dim 1, which holds the batch"):
        graphs.from_torch(Cat(1), x)


def test_a_linear_layer_or_pool_over_the_moved_batch_is_refused():
    class OverBatch(nn.Module):
        def __init__(self, pool):
            super().__init__()
            self.a, self.mix, self.pool = nn.Linear(6, 8), nn.Linear(3, 3), pool

        def forward(self, x):  # (batch 3, length 4, features 6)
            h = torch.tanh(self.a(x)).transpose(0, 2)  # (8, 4, batch 3)
            return F.avg_pool1d(h, 3) if self.pool else self.mix(h)

    x = torch.randn(3, 4, 6)
    with pytest.raises(InvalidGraphError, match=r"Linear mixes dim 2 of a tensor of shape \(8, 4, 3\), dim 2, "
                                                r"which holds the batch.*mixes examples"):
        graphs.from_torch(OverBatch(pool=False), x)
    with pytest.raises(InvalidGraphError, match=r"F.avg_pool1d averages the last 1 dim\(s\) \[2\].*dim 2, which holds "
                                                r"the batch"):
        graphs.from_torch(OverBatch(pool=True), x)


class _Wrapped(nn.Module):
    """linear -> tanh -> `op` -> linear, on (batch, 4) inputs."""

    def __init__(self, op):
        super().__init__()
        self.a, self.o, self.op = nn.Linear(4, 8), nn.Linear(8, 2), op

    def forward(self, x):
        return self.o(self.op(torch.tanh(self.a(x))))


@pytest.mark.parametrize("op", [lambda h: h.clone(), torch.clone, lambda h: torch.cat([h]),
                                lambda h: torch.cat([h], dim=-1)],
                         ids=["clone-method", "torch.clone", "cat-one", "cat-one-dim"])
def test_copies_and_a_cat_of_one_tensor_are_the_tensor(op):
    # each was refused as unsupported (clone) or as a concat of one part
    g = graphs.from_torch(_Wrapped(op), torch.randn(3, 4))
    assert same_network(g, graphs.mlp(1, activation="tanh"))


def test_rrelu_in_eval_mode_is_the_leaky_relu_of_the_mean_slope_and_refused_in_training():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.act, self.o = nn.Linear(4, 8), nn.RReLU(0.1, 0.3), nn.Linear(8, 2)

        def forward(self, x):
            return self.o(self.act(self.a(x)))

    net = Net().eval()
    g = graphs.from_torch(net, torch.randn(3, 4))
    (node,) = graphs.activation_nodes(g)
    assert g.nodes[node]["activation"] == "leaky_relu"
    slope = g.nodes[node]["activation_params"]["negative_slope"]
    # torch's own eval-mode RReLU is the reference
    h = torch.linspace(-3, 3, 13, dtype=torch.float64)
    assert torch.allclose(net.act(h), F.leaky_relu(h, slope), rtol=0, atol=1e-15)
    with pytest.raises(InvalidGraphError, match=r"RReLU.*training mode.*model.eval\(\)"):
        graphs.from_torch(Net().train(), torch.randn(3, 4))


def test_a_mean_with_numpy_s_axis_keyword_pools_that_axis():
    # axis= was not read: the mean was taken over every dim and refused as a batch mean
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.o = nn.Linear(4, 8), nn.Linear(8, 2)

        def forward(self, x):  # (batch, length, features)
            return self.o(torch.tanh(self.a(x)).mean(axis=1))

    by_axis = graphs.from_torch(Net(), torch.randn(3, 5, 4))

    class ByDim(Net):
        def forward(self, x):
            return self.o(torch.tanh(self.a(x)).mean(dim=1))

    assert same_network(by_axis, graphs.from_torch(ByDim(), torch.randn(3, 5, 4)))
    assert any(k == "pool" for _, k in by_axis.nodes(data="kind"))


class _AliasedScale(nn.Module):
    """skip = h; h *= 0.6; tanh(skip + h): torch scales the one tensor both names refer to."""

    def __init__(self, clone: bool):
        super().__init__()
        self.l1, self.l2, self.clone = nn.Linear(4, 4), nn.Linear(4, 4), clone

    def forward(self, x):
        h = self.l1(x)
        skip = h.clone() if self.clone else h
        h *= 0.6
        return self.l2(torch.tanh(skip + h))


def test_an_in_place_scale_of_an_aliased_tensor_is_refused_not_traced_as_a_new_value():
    """torch.fx records h *= 0.6 as mul = h * 0.6, so the graph read skip + h as h + 0.6 h = 1.6 h, while torch
    computes 0.6 h + 0.6 h = 1.2 h: from_torch described another network ('scales by 1.6')."""
    net, x = _AliasedScale(clone=False), torch.randn(3, 4)
    with torch.no_grad():
        assert torch.allclose(net(x), net.l2(torch.tanh(1.2 * net.l1(x))))  # what torch computes
        assert not torch.allclose(net(x), net.l2(torch.tanh(1.6 * net.l1(x))))
    with pytest.raises(InvalidGraphError, match="not the network _AliasedScale computes.*h = h \\* c"):
        graphs.from_torch(net, x)
    # with the alias broken the trace is the model, and 1.6 h is the un-normalised sum it refuses
    with pytest.raises(InvalidGraphError, match="scales a tensor by the constant 1.6"):
        graphs.from_torch(_AliasedScale(clone=True), x)


def test_a_model_checked_against_its_trace_keeps_its_state_and_random_stream():
    """The model runs a second time to be compared with its trace: BatchNorm statistics and the global
    random stream must still be as they were."""
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Dropout(0.0), nn.Linear(8, 2)).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    torch.manual_seed(5)
    expected = torch.rand(3)
    x = torch.randn(16, 4)
    torch.manual_seed(5)
    with pytest.raises(InvalidGraphError, match="batch statistics"):  # after both runs
        graphs.from_torch(net, x)
    assert torch.equal(torch.rand(3), expected)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert int(net[1].num_batches_tracked) == 0


class _WeightTransformed(nn.Module):
    """A linear layer whose weight ``transform(w)`` is computed from the parameter w alone."""

    def __init__(self, transform):
        super().__init__()
        self.w, self.l0, self.transform = nn.Parameter(torch.randn(4, 4) / 2), nn.Linear(4, 4), transform

    def forward(self, x):
        return F.linear(torch.tanh(self.l0(x)), self.transform(self.w))


@pytest.mark.parametrize("transform", [lambda w: w * 2.0, lambda w: w + 0.0, lambda w: w / 2, lambda w: 0.5 * w])
def test_a_weight_transformed_before_use_is_refused_for_what_it_is(transform):
    """F.linear(h, w * 2) was refused as 'multiplies two tensors elementwise; products of branches
    (gating)', and w + 0 as 'adds a constant to a tensor (a bias)': neither names what the model does."""
    with pytest.raises(InvalidGraphError, match=r"computes with \['w'\] alone.*weight transformed before use") as info:
        graphs.from_torch(_WeightTransformed(transform), torch.randn(3, 4))
    assert "gating" not in str(info.value) and "bias" not in str(info.value)


def _standardised(w):
    return (w - w.mean(1, keepdim=True)) / w.std(1, keepdim=True)


@pytest.mark.parametrize("transform", [
    pytest.param(_standardised, id="weight_standardisation"),  # was "averages the network input of shape (4, 4)"
    pytest.param(torch.tanh, id="tanh"),  # was "takes _Other where a tensor from the network was expected"
    pytest.param(lambda w: w.exp(), id="exp"),
    pytest.param(lambda w: torch.cat([w, w], 0), id="cat"),  # was "concatenates along the batch dim 0"
    pytest.param(lambda w: w / w.norm(), id="norm"),  # was "unsupported tensor method"
])
def test_any_op_on_weights_alone_is_refused_as_a_weight_transform(transform):
    """Ops other than arithmetic that compute from parameters alone were read by the rules made for the
    network's signal: a weight standardisation's w.mean(1) was refused as averaging "the network input",
    a cat of two weight halves as a concatenation "along the batch dim"."""
    with pytest.raises(InvalidGraphError, match=r"computes with \['w'\] alone.*weight transformed before use") as info:
        graphs.from_torch(_WeightTransformed(transform), torch.randn(3, 4))
    assert "network input" not in str(info.value) and "batch" not in str(info.value)


def test_views_of_weights_remain_weights():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.w, self.l0 = nn.Parameter(torch.randn(4, 6) / 2), nn.Linear(4, 4)

        def forward(self, x):
            return F.linear(torch.tanh(self.l0(x)), self.w.t().contiguous().view(6, 4))

    g = graphs.from_torch(Net(), torch.randn(3, 4))
    assert [g.nodes[n]["kind"] for n in nx.topological_sort(g)] == ["input", "linear", "activation", "linear", "output"]


class _TiedViews(nn.Module):
    """y = 0.6 F.linear(tanh(h), A) + 0.8 F.linear(sin(h), B) with A, B views of one weight ``w``."""

    def __init__(self, first, second):
        super().__init__()
        self.first, self.second = first, second
        self.l0, self.l1 = nn.Linear(4, 4), nn.Linear(4, 4)
        self.w = nn.Parameter(torch.randn(4, 4) / 2)

    def forward(self, x):
        h = self.l0(x)
        y = 0.6 * F.linear(torch.tanh(h), self.first(self)) + 0.8 * F.linear(torch.sin(h), self.second(self))
        return self.l1(torch.tanh(y))


@pytest.mark.parametrize("first, second", [
    pytest.param(lambda m: m.w.t(), lambda m: m.w.t(), id="t_twice"),
    pytest.param(lambda m: m.w.T, lambda m: m.w.transpose(0, 1).contiguous(), id="T_and_transpose"),
    pytest.param(lambda m: m.w.view(2, 8).view(4, 4), lambda m: m.w, id="view_back_and_w"),
    pytest.param(lambda m: m.w.t().t(), lambda m: m.w, id="t_t_and_w"),
    pytest.param(lambda m: m.w.float(), lambda m: m.w.to(torch.float32), id="float_and_to"),
    pytest.param(lambda m: m.w.t().type_as(m.l0.weight), lambda m: m.w.t(), id="type_as_and_t"),
])
def test_one_weight_applied_twice_through_views_is_refused(first, second):
    # F.linear(u, w.t()) and F.linear(v, w.t()) are W u and W v for one W: correlated, covariance <u, v>/n.
    # The tie was recorded only for a weight passed as the parameter itself, so these sums were accepted:
    # at width 3000 (float64), 0.6 W^T tanh(h) + 0.8 W^T sin(h) has q = 0.820, while the graph's
    # rule (independent weights) gives 0.420
    with pytest.raises(InvalidGraphError, match="applied more than once"):
        graphs.from_torch(_TiedViews(first, second), torch.randn(2, 4))


def test_a_weight_and_its_transpose_are_two_weight_matrices():
    # W u and W^T v are uncorrelated in the wide limit (coordinate i has covariance u_i v_i / n): the
    # same width-3000 net with W and W^T has q = 0.4206, the graph's 0.4202
    g = graphs.from_torch(_TiedViews(lambda m: m.w, lambda m: m.w.t()), torch.randn(2, 4))
    assert not [n for n in g if "weights" in g.nodes[n]]
    assert len([n for n in g if g.nodes[n]["kind"] == "weighted_sum"]) == 1


class _Casts(nn.Module):
    """head(tanh(l(x))) with ``signal_cast`` applied to l(x) and F.linear's weight ``w`` passed through ``weight_cast``."""

    def __init__(self, signal_cast, weight_cast=None):
        super().__init__()
        self.signal_cast, self.weight_cast = signal_cast, weight_cast
        self.l, self.head, self.w = nn.Linear(4, 4), nn.Linear(4, 2), nn.Parameter(torch.randn(4, 4) / 2)

    def forward(self, x):
        h = self.signal_cast(self.l(x), x)
        if self.weight_cast is not None:
            h = F.linear(torch.tanh(h), self.weight_cast(self.w, x))
        return self.head(torch.tanh(h))


@pytest.mark.parametrize("signal_cast, weight_cast", [
    pytest.param(lambda h, x: h.float(), None, id="float"),
    pytest.param(lambda h, x: h.to(x.dtype), None, id="to_x_dtype"),
    pytest.param(lambda h, x: h.to(torch.float64).type_as(x), None, id="to_float64_type_as"),
    pytest.param(lambda h, x: h.double().half().float(), None, id="double_half_float"),
    pytest.param(lambda h, x: h, lambda w, x: w.to(x.dtype), id="weight_to_x_dtype"),
    pytest.param(lambda h, x: h, lambda w, x: w.type_as(x).t(), id="weight_type_as_t"),
])
def test_floating_point_casts_are_the_identity_on_the_kernel(signal_cast, weight_cast):
    # .float(), .to(x.dtype), .type_as(x) (mixed-precision code) were refused as "unsupported tensor method":
    # a cast keeps the values up to the new dtype's rounding, so the graph is that of the same net without it
    g = graphs.from_torch(_Casts(signal_cast, weight_cast), torch.randn(2, 4))
    plain = graphs.from_torch(_Casts(lambda h, x: h, None if weight_cast is None else lambda w, x: w),
                              torch.randn(2, 4))
    assert nx.is_isomorphic(g, plain, node_match=lambda a, b: a["kind"] == b["kind"])
    assert graphs.network_c_map(g, lambda n, c: math.sin(c), 0.3) == graphs.network_c_map(
        plain, lambda n, c: math.sin(c), 0.3)


def test_a_cast_to_an_integer_dtype_is_refused_by_name():
    with pytest.raises(InvalidGraphError, match=r"casts to torch.int64, which rounds the signal to integers"):
        graphs.from_torch(_Casts(lambda h, x: h.to(torch.int64).float()), torch.randn(2, 4))


class _LearnableShortcut(nn.Module):
    """y = w1 * h + w2 * W tanh(h) with (w1, w2) = weights(alpha) of a one-element parameter alpha."""

    def __init__(self, weights, alpha=0.6):
        super().__init__()
        self.weights, self.alpha = weights, nn.Parameter(torch.tensor(alpha))
        self.l0, self.l1, self.head = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        h = self.l0(x)
        w1, w2 = self.weights(self.alpha)
        return self.head(torch.tanh(w1 * h + w2 * self.l1(torch.tanh(h))))


@pytest.mark.parametrize("weights", [
    pytest.param(lambda a: (a, torch.sqrt(1 - a**2)), id="torch.sqrt"),
    pytest.param(lambda a: (a, (1 - a * a) ** 0.5), id="pow"),
    pytest.param(lambda a: (a, (1 - a.pow(2)).sqrt()), id="methods"),
    pytest.param(lambda a: (torch.pow(a, 1), torch.pow(1 - torch.pow(a, 2), 0.5)), id="torch.pow"),
])
def test_a_learnable_shortcut_weight_with_its_normalised_partner_traces(weights):
    # the partner weight sqrt(1 - alpha**2) of a learnable alpha was refused as "unsupported op pow"
    g = graphs.from_torch(_LearnableShortcut(weights), torch.randn(2, 4))
    (node,) = [n for n in g if g.nodes[n]["kind"] == "weighted_sum"]
    w = graphs.edge_weights(g, node)
    assert w["l0"] == pytest.approx(0.6, rel=1e-6) and w["l1"] == pytest.approx(0.8, rel=1e-6)
    assert w["l0"] ** 2 + w["l1"] ** 2 == pytest.approx(1, abs=1e-15)
    # the same arithmetic giving weights that are not normalised is refused as before
    with pytest.raises(InvalidGraphError, match=r"squares sum to 0\.7695999"):
        graphs.from_torch(_LearnableShortcut(lambda a: (a, 1 - a**2)), torch.randn(2, 4))


def test_a_branch_weighted_by_zero_is_refused_naming_the_sum_that_dropped_it():
    """alpha = 1 makes the partner weight sqrt(1 - alpha**2) exactly 0: the branch is dropped from the sum and
    was reported only as "nodes ['l1', ...] do not reach the output (dead branches)", which the user's code
    does not show; the message now names the sum and the zero weight."""
    with pytest.raises(InvalidGraphError, match=r"dead branches.*'add' weights 'l1' by 0.*sqrt\(1 - a\*\*2\)"):
        graphs.from_torch(_LearnableShortcut(lambda a: (a, torch.sqrt(1 - a**2)), alpha=1.0), torch.randn(2, 4))
    # a branch with no path to the output for another reason keeps the plain message
    g = graphs.mlp(1)
    graphs.add_node(g, "loose", "activation", "input")
    with pytest.raises(InvalidGraphError, match=r"dead branches\); connect them or remove them$"):
        graphs.validate(g)


class _BranchWeights(nn.Module):
    """head(tanh(combine(self, tanh(l0(x))))) with a vector ``w`` of branch weights and a matrix ``m``."""

    def __init__(self, combine):
        super().__init__()
        self.combine, self.w, self.m = combine, nn.Parameter(torch.tensor([0.6, 0.8])), nn.Parameter(torch.randn(8, 4) / 2)
        self.l0, self.a, self.b, self.head = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.head(torch.tanh(self.combine(self, torch.tanh(self.l0(x)))))


@pytest.mark.parametrize("combine", [
    pytest.param(lambda m, h: m.w[0] * m.a(h) + m.w[1] * m.b(h), id="w[i]"),
    pytest.param(lambda m, h: sum(m.w[i] * branch(h) for i, branch in enumerate((m.a, m.b))), id="sum"),
])
def test_a_vector_of_learnable_branch_weights_is_read_element_by_element(combine):
    # self.w[i] * branch was refused as "unsupported op getitem"
    g = graphs.from_torch(_BranchWeights(combine), torch.randn(2, 4))
    (node,) = [n for n in g if g.nodes[n]["kind"] == "weighted_sum"]
    w = graphs.edge_weights(g, node)
    assert w["a"] == pytest.approx(0.6, rel=1e-6) and w["b"] == pytest.approx(0.8, rel=1e-6)


def test_slices_of_one_weight_are_tied_only_when_they_are_the_same_slice():
    same = _BranchWeights(lambda m, h: 0.6 * F.linear(h, m.m[:4]) + 0.8 * F.linear(torch.sin(m.a(h)), m.m[:4]))
    with pytest.raises(InvalidGraphError, match="applied more than once"):
        graphs.from_torch(same, torch.randn(2, 4))
    # other rows are other, independent weights
    apart = _BranchWeights(lambda m, h: 0.6 * F.linear(h, m.m[:4]) + 0.8 * F.linear(torch.sin(m.a(h)), m.m[4:]))
    g = graphs.from_torch(apart, torch.randn(2, 4))
    assert len([n for n in g if g.nodes[n]["kind"] == "weighted_sum"]) == 1


def test_powers_of_network_tensors_and_other_ops_on_one_element_parameters_are_refused_by_name():
    with pytest.raises(InvalidGraphError, match=r"raises to a power a tensor of the network.*elementwise nonlinearity"):
        graphs.from_torch(CopiesOfOneBranch(lambda t: t**2), torch.randn(2, 4))
    with pytest.raises(InvalidGraphError, match=r"sigmoid.*one-element parameters or buffers \['alpha'\] alone"):
        graphs.from_torch(_LearnableShortcut(lambda a: (torch.sigmoid(a), torch.sqrt(1 - torch.sigmoid(a) ** 2))),
                          torch.randn(2, 4))


def test_an_in_place_op_on_the_input_leaves_the_example_alone_and_is_not_a_trace_mismatch():
    """x.mul_(-1) on the forward's input: the traced graph's run overwrote the user's example tensor,
    and the model's run that checks the trace then started from -x and was refused as 'not the
    network'.  Nothing reads x afterwards, and a sign flip leaves every kernel map as it is, so the
    network is linear -> tanh -> linear."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.l2 = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.l2(torch.tanh(self.l1(x.mul_(-1.0))))

    x = torch.randn(3, 4)
    before = x.clone()
    g = graphs.from_torch(Net(), x)
    assert torch.equal(x, before)
    assert [g.nodes[n]["kind"] for n in nx.topological_sort(g)] == ["input", "linear", "activation", "linear", "output"]


class _SqueezedConv(nn.Module):
    """(batch, 6, length 6) -> Conv1d, tanh -> squeeze -> mean(1) -> Linear.  With a batch of 2 or more
    squeeze() keeps (batch, channels, length) and mean(1) averages the channels; with a batch of 1 it
    gives (channels, length), and mean(1) averages the length."""

    def __init__(self, squeeze):
        super().__init__()
        self.c, self.o, self.squeeze = nn.Conv1d(6, 6, 3, padding=1), nn.Linear(6, 2), squeeze

    def forward(self, x):
        return self.o(self.squeeze(torch.tanh(self.c(x))).mean(1))


def test_a_squeeze_that_removes_a_batch_of_one_is_refused_naming_the_fix():
    """With a batch of 1, squeeze() removed the batch dim too and every later dim index shifted: the
    model above, refused at batch 2 (its mean(1) averages features), was traced at batch 1 into
    conv -> tanh -> pool -> linear, a network it does not compute on a batch."""
    with pytest.raises(InvalidGraphError, match=r"averages over dim\(s\) \[1\].*features"):
        graphs.from_torch(_SqueezedConv(lambda h: h.squeeze()), torch.randn(2, 6, 6))
    for squeeze, fix in ((lambda h: h.squeeze(), r"drop the squeeze"), (lambda h: torch.squeeze(h, 0), r"drop the squeeze")):
        with pytest.raises(InvalidGraphError, match=r"'mean' \(call_method mean\) reads the dims of 'squeeze', but "
                                                    r"fx node 'squeeze'.*, (squeeze\(\)|squeeze\(0\)) of a tensor") as info:
            graphs.from_torch(_SqueezedConv(squeeze), torch.randn(1, 6, 6))
        assert "removed the batch dim 0" in str(info.value) and "batch of 2 or more" in str(info.value)
        assert re.search(fix, str(info.value))

    class Other(nn.Module):  # (batch, length, 1, 4): squeeze() also drops the size-1 dim 2
        def __init__(self):
            super().__init__()
            self.a, self.o = nn.Linear(4, 8), nn.Linear(8, 2)

        def forward(self, x):  # runs at batch 1 too, where it is the same network: refused all the same
            return self.o(torch.tanh(self.a(x)).squeeze().mean(-2))

    with pytest.raises(InvalidGraphError, match=r"squeeze the other dims only, x.squeeze\(2\)"):
        graphs.from_torch(Other(), torch.randn(1, 5, 1, 4))
    # squeezing a dim that is not the batch is the same network at every batch size
    class Named(Other):
        def forward(self, x):
            return self.o(torch.tanh(self.a(x)).squeeze(2).mean(1))

    g1, g2 = graphs.from_torch(Named(), torch.randn(1, 5, 1, 4)), graphs.from_torch(Named(), torch.randn(3, 5, 1, 4))
    assert same_network(g1, g2)
    assert [g1.nodes[n]["kind"] for n in nx.topological_sort(g1)] == [
        "input", "linear", "activation", "pool", "linear", "output"]

    # as is a squeeze whose result no op reads the dims of: the head's (batch, 1) -> (batch,), a
    # scalar at batch 1, or an activation after it
    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.o = nn.Linear(4, 8), nn.Linear(8, 1)

        def forward(self, x):
            return torch.tanh(self.o(torch.tanh(self.a(x))).squeeze())

    assert same_network(graphs.from_torch(Head(), torch.randn(1, 4)), graphs.from_torch(Head(), torch.randn(3, 4)))


def test_a_model_failing_after_a_squeeze_of_a_batch_of_one_is_told_why():
    class Cat(nn.Module):  # (batch, 1, 4) -> two branches squeezed to (batch, 8), joined along dim 1
        def __init__(self):
            super().__init__()
            self.a, self.b, self.o = nn.Linear(4, 8), nn.Linear(4, 8), nn.Linear(16, 2)

        def forward(self, x):
            return self.o(torch.cat([torch.tanh(self.a(x)).squeeze(), torch.tanh(self.b(x)).squeeze()], dim=1))

    assert graphs.edge_channels(graphs.from_torch(Cat(), torch.randn(2, 1, 4)), "cat") == {"tanh": 8, "tanh_1": 8}
    with pytest.raises(InvalidGraphError, match=r"cannot run on the example input of shape \(1, 1, 4\).*batch of 1.*"
                                                r"a squeeze\(\) removes the batch dim too"):
        graphs.from_torch(Cat(), torch.randn(1, 1, 4))


def test_a_batch_of_one_is_followed_through_reshapes():
    """A batch of 1 holds no digit of the flat index, so after a reshape (here the contiguous view
    of the sequence-first layout) the batch was taken to be dim 0, the length: the mean over the
    length was refused as mixing examples, though the same model at batch 3 was accepted."""
    class Viewed(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.o = nn.Linear(4, 8), nn.Linear(8, 2)

        def forward(self, x):  # (batch, length, 4) -> (length, batch, 8) -> mean over the length
            h = torch.tanh(self.a(x)).transpose(0, 1).contiguous().view(x.size(1), x.size(0), 8)
            return self.o(h.mean(0))

    class Unsqueezed(Viewed):
        def forward(self, x):  # (batch, 4) -> (1, batch, 8) -> (batch, 8), the batch never at dim 0 of a squeeze
            return self.o(torch.tanh(self.a(x)).unsqueeze(0).squeeze(0))

    class LengthOne(Viewed):
        def forward(self, x):  # (batch, 1, 4): beside a sequence of length 1 the batch of 1 stays at dim 0
            return self.o(torch.tanh(self.a(x)).reshape(x.size(0), 1, 8).mean(1))

    for net, x in ((Viewed(), torch.randn(1, 5, 4)), (Unsqueezed(), torch.randn(1, 4)),
                   (LengthOne(), torch.randn(1, 1, 4))):
        g1 = graphs.from_torch(net, x)
        g3 = graphs.from_torch(net, torch.cat([x] * 3))
        assert same_network(g1, g3)
    with pytest.raises(InvalidGraphError, match=r"dim 1, which holds the batch"):
        class OverBatch(Viewed):
            def forward(self, x):
                h = torch.tanh(self.a(x)).transpose(0, 1).contiguous().view(x.size(1), x.size(0), 8)
                return self.o(h.mean(1))
        graphs.from_torch(OverBatch(), torch.randn(1, 5, 4))


def test_concatenating_a_tensor_with_itself_is_refused_naming_the_fix():
    """cat([h, h]) was refused with 'not supported' and no way forward; the message now says why
    (a part is an edge of the graph) and what to trace instead."""
    with pytest.raises(InvalidGraphError, match=r"concatenates .* with itself: .*Concatenate distinct tensors"):
        graphs.from_torch(_StackedBranches(lambda a, b: torch.cat([a, a], dim=1)), torch.randn(3, 4))


class _MatmulMLP(nn.Module):
    def __init__(self, method):
        super().__init__()
        self.w1, self.w2, self.method = nn.Parameter(torch.randn(4, 8)), nn.Parameter(torch.randn(8, 2)), method

    def forward(self, x):
        h = torch.tanh(x @ self.w1) if self.method == "@" else torch.tanh(x.matmul(self.w1))
        return torch.mm(h, self.w2) if self.method == "mm" else torch.matmul(h, self.w2)


@pytest.mark.parametrize("method", ["@", "matmul", "mm"])
def test_a_product_with_a_weight_matrix_is_a_linear_layer(method):
    # x @ self.W was refused as "unsupported op matmul", though it is F.linear(x, W.t())
    reference = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    assert same_network(graphs.from_torch(_MatmulMLP(method), torch.randn(3, 4)),
                        graphs.from_torch(reference, torch.randn(3, 4)))


class _TwoProducts(nn.Module):
    def __init__(self, second):
        super().__init__()
        self.first, self.w, self.second = nn.Linear(4, 8), nn.Parameter(torch.randn(8, 8)), second

    def forward(self, x):
        h = self.first(x)
        return 0.6 * (torch.tanh(h) @ self.w) + 0.8 * self.second(torch.sin(h), self.w)


@pytest.mark.parametrize("second, tied", [
    (lambda u, w: u @ w, True), (lambda u, w: F.linear(u, w.t()), True),  # W u twice: correlated outputs
    (lambda u, w: F.linear(u, w), False), (lambda u, w: u @ w.t(), False),  # W u and W^T v: uncorrelated
])
def test_products_with_one_weight_matrix_are_tied_as_f_linear_is(second, tied):
    model = _TwoProducts(second)
    if tied:
        with pytest.raises(InvalidGraphError, match="one weight matrix W applied more than once"):
            graphs.from_torch(model, torch.randn(3, 4))
    else:
        g = graphs.from_torch(model, torch.randn(3, 4))
        assert sum(g.nodes[n]["kind"] == "linear" for n in g) == 3


def test_products_that_are_no_linear_layer_are_refused_by_name():
    class Left(nn.Module):
        def __init__(self):
            super().__init__()
            self.first, self.w = nn.Linear(4, 8), nn.Parameter(torch.randn(8, 8))

        def forward(self, x):
            return (self.w @ torch.tanh(self.first(x)).t()).t()

    class Both(Left):
        def forward(self, x):
            h = torch.tanh(self.first(x))
            return h @ h.t()

    class Vector(Left):
        def forward(self, x):
            return torch.tanh(self.first(x)) @ self.w[0]

    with pytest.raises(InvalidGraphError, match=r"multiplies a parameter by a tensor of the network from the left.*"
                                                r"h @ W"):
        graphs.from_torch(Left(), torch.randn(3, 4))
    with pytest.raises(InvalidGraphError, match="multiplies two tensors of the network"):
        graphs.from_torch(Both(), torch.randn(3, 4))
    with pytest.raises(InvalidGraphError, match=r"weight of shape \(8,\); a linear layer h @ W needs a 2-D W"):
        graphs.from_torch(Vector(), torch.randn(3, 4))


@pytest.mark.parametrize("b, accepted", [(0.8, True), (0.9, False)])
def test_coefficients_read_by_item_carry_their_dtypes_rounding(b, accepted):
    """self.a.item() of a float32 parameter 0.6 was taken as exactly 0.600000023842, so 0.6 and 0.8 were refused
    as un-normalised (squares summing to 1 + 4.8e-8), with 'normalised' weights suggested that float32 cannot
    hold; written self.a * x the same model traced.  An un-normalised pair is still refused."""
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.fc3 = nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 16)
            self.a, self.b = nn.Parameter(torch.tensor(0.6)), nn.Parameter(torch.tensor(b))

        def forward(self, x):
            return self.fc3(self.a.item() * x + self.b.item() * self.fc2(torch.tanh(self.fc1(x))))

    if not accepted:
        with pytest.raises(InvalidGraphError, match="not 1"):
            graphs.from_torch(Model(), torch.randn(2, 16))
        return
    g = graphs.from_torch(Model(), torch.randn(2, 16))
    weights = sorted(w for _, _, w in g.edges(data="weight") if w is not None)
    assert weights == pytest.approx([0.6, 0.8], rel=1e-6)


def _relu_c(c):
    """The C map of a ReLU (Cho and Saul's degree-1 arc-cosine kernel, normalised)."""
    return (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / math.pi


class _SummedConcats(nn.Module):
    """relu(0.6 * [a | b] + 0.8 * [c | d]) -> head, the parts of different kernels (a, c: the input's; b: after one
    ReLU layer; d: after two), each concatenation laid out as ``layout`` says."""

    def __init__(self, layout: str, n: int = 4):
        super().__init__()
        self.layout = layout
        self.a, self.b0, self.b, self.c = nn.Linear(6, n), nn.Linear(6, n), nn.Linear(n, n), nn.Linear(6, n)
        self.d0, self.d1, self.d = nn.Linear(6, n), nn.Linear(n, n), nn.Linear(n, n)
        self.head = nn.Linear(2 * n, 2)

    def forward(self, x):
        a, c = self.a(x), self.c(x)
        b, d = self.b(F.relu(self.b0(x))), self.d(F.relu(self.d1(F.relu(self.d0(x)))))
        batch = x.size(0)

        def shuffled(h):  # a channel shuffle: [p0 .. pn | q0 .. qn] -> [p0 q0 p1 q1 ...]
            return h.view(batch, 2, -1).transpose(1, 2).reshape(batch, -1)

        first, second = {
            "in order": lambda: (torch.cat([a, b], 1), torch.cat([c, d], 1)),
            "swapped": lambda: (torch.cat([b, a], 1), torch.cat([c, d], 1)),
            "both shuffled": lambda: (shuffled(torch.cat([a, b], 1)), shuffled(torch.cat([c, d], 1))),
            "both stacked": lambda: (torch.stack([a, b], -1).flatten(1), torch.stack([c, d], -1).flatten(1)),
            "one shuffled": lambda: (shuffled(torch.cat([a, b], 1)), torch.cat([c, d], 1)),
            "one permuted": lambda: (torch.cat([a, b], 1).view(batch, 2, -1).permute(0, 2, 1).flatten(1),
                                     torch.cat([c, d], 1)),
            "one stacked": lambda: (torch.stack([a, b], -1).flatten(1), torch.cat([c, d], 1)),
        }[self.layout]()
        return self.head(F.relu(0.6 * first + 0.8 * second))


def _summed_concats_c(pairs, c0):
    """The C value after relu(0.6 * x + 0.8 * y), composed by hand: ``pairs`` {(part of x, part of y): share of the
    channels}, the parts' C values from the input's c0 through the ReLU C map (b one layer, d two)."""
    part = {"a": c0, "c": c0, "b": _relu_c(c0), "d": _relu_c(_relu_c(c0))}
    return sum(share * _relu_c(0.36 * part[x] + 0.64 * part[y]) for (x, y), share in pairs.items())


_PART_BY_PART = {("a", "c"): 0.5, ("b", "d"): 0.5}  # channel i of one term meets channel i of the other


@pytest.mark.parametrize("layout, pairs", [
    ("in order", _PART_BY_PART),
    ("swapped", {("b", "c"): 0.5, ("a", "d"): 0.5}),
    ("both shuffled", _PART_BY_PART),
    ("both stacked", _PART_BY_PART),
])
def test_sums_of_concatenations_laid_out_alike_pair_their_parts_as_the_network_does(layout, pairs):
    g = graphs.from_torch(_SummedConcats(layout), torch.randn(2, 6))
    (last,) = g.predecessors("head")
    for c0 in (-0.9, 0.3):
        walked = graphs.propagate(g, lambda node, c: _relu_c(c), c0)[last]
        assert walked == pytest.approx(_summed_concats_c(pairs, c0), rel=1e-12)


@pytest.mark.parametrize("layout, moved_by", [
    ("one shuffled", "transpose"), ("one permuted", "permute"), ("one stacked", "stack")])
def test_a_sum_of_concatenations_laid_out_differently_is_refused(layout, moved_by):
    # The graph's weighted sum pairs its inputs' parts in order; the network adds element by element.  A
    # channel shuffle of one term puts half of a and half of b against c, the rest against d: every pair of
    # parts meets on a quarter of the channels.  At c0 = -0.9 the walk gave 0.2200 (part by part), where the
    # network has 0.1969 (measured at width 2 x 2048, 24 seeds: 0.1942 +- 0.0024; in order, 0.2155 +- 0.0029)
    every_pair = {(x, y): 0.25 for x in "ab" for y in "cd"}
    assert _summed_concats_c(_PART_BY_PART, -0.9) - _summed_concats_c(every_pair, -0.9) > 0.02
    with pytest.raises(InvalidGraphError, match=rf"weighted sum 'add' adds \['[a-z_]+', 'cat(_1)?'\] element by "
                                                rf"element.*do not lie alike: they were moved by \[[^]]*'{moved_by}"
                                                rf"[^]]*\], so the parts meet in 4 combinations \(in proportions "
                                                rf"1/4, 1/4, 1/4, 1/4 .*would add 2 \(proportions 1/2, 1/2\).*lay "
                                                rf"the parts of every term out alike"):
        graphs.from_torch(_SummedConcats(layout), torch.randn(2, 6))


def test_adding_a_tensor_to_a_transpose_of_itself_is_refused():
    # 0.5 * V + 0.5 * V^T merged into V itself (weights 0.5 + 0.5 = 1: "copies of one tensor"), so the graph said
    # q is unchanged; the elements off the diagonal meet independent ones, and q falls to (1 + 1/n) / 2 of V's
    class Symmetrised(nn.Module):
        def __init__(self):
            super().__init__()
            self.l, self.head = nn.Linear(4, 16), nn.Linear(16, 2)

        def forward(self, x):
            v = self.l(x).view(-1, 4, 4)
            return self.head(torch.tanh(0.5 * v + 0.5 * v.transpose(1, 2)).flatten(1))

    v = torch.randn(8, 300, 300, dtype=torch.float64)
    ratio = float((0.5 * v + 0.5 * v.transpose(1, 2)).square().mean() / v.square().mean())
    assert ratio == pytest.approx((1 + 1 / 300) / 2, rel=0.01)  # not 1, what a copy of V would give
    with pytest.raises(InvalidGraphError, match=r"'add' adds 'l' to a copy of itself whose elements were moved by "
                                                r"\['transpose'\].*add the tensors in the same layout"):
        graphs.from_torch(Symmetrised(), torch.randn(2, 4))


class _PReLUNet(nn.Module):
    """Linear -> PReLU(slope 0.2) -> Linear -> PReLU -> Linear, the PReLU in the form ``form`` names."""

    def __init__(self, form: str, slopes=(0.2,)):
        super().__init__()
        self.form = form
        self.l1, self.l2, self.head = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2)
        self.act = nn.PReLU(len(slopes))
        with torch.no_grad():
            self.act.weight.copy_(torch.tensor(slopes))

    def prelu(self, h):
        w = self.act.weight
        return {"nn.PReLU": lambda: self.act(h), "F.prelu": lambda: F.prelu(h, w),
                "torch.prelu": lambda: torch.prelu(h, weight=w), "method": lambda: h.prelu(w),
                "a view of the weight": lambda: F.prelu(h, w.view(-1)[:1])}[self.form]()

    def forward(self, x):
        return self.head(self.prelu(self.l2(self.prelu(self.l1(x)))))


@pytest.mark.parametrize("form", ["F.prelu", "torch.prelu", "method", "a view of the weight"])
def test_functional_prelu_traces_as_nn_prelu_does(form):
    """F.prelu (torch.prelu, x.prelu) was refused as "unsupported op prelu" while nn.PReLU traced."""
    import symact
    from analysis.kernel import kernel_maps
    from analysis.shaping import shape

    x = torch.randn(2, 4)
    g, module = graphs.from_torch(_PReLUNet(form), x), graphs.from_torch(_PReLUNet("nn.PReLU"), x)
    assert same_network(g, module)
    acts = [(g.nodes[n]["activation"], g.nodes[n]["activation_params"]) for n in graphs.activation_nodes(g)]
    assert acts == [(module.nodes[n]["activation"], module.nodes[n]["activation_params"])
                    for n in graphs.activation_nodes(module)]
    traced, by_module = (shape(None, h, method="tat", eta=0.2) for h in (g, module))
    assert [lay.negative_slope for lay in traced.layers] == [lay.negative_slope for lay in by_module.layers]
    assert traced.c_map(0.0) == pytest.approx(0.2, abs=1e-12)
    # the node's activation is what torch computes, slope included
    name, params = acts[0]
    act = symact.activation(name, **params)
    points = torch.linspace(-3, 3, 13, dtype=torch.float64)
    expected = F.prelu(points, torch.tensor([0.2], dtype=torch.float32).double())
    assert [float(act(float(v))) for v in points] == pytest.approx(expected.tolist(), rel=1e-15, abs=1e-15)
    # and its kernel is the leaky ReLU's, a x + (1 - a) relu(x) in closed form (Cho and Saul's arc-cosine kernel):
    # E[phi(u) phi(v)] = a c + (1 - a)**2 (sqrt(1 - c**2) + (pi - acos c) c) / (2 pi) for unit u, v of cosine c
    a = params["a"]
    maps = kernel_maps(act)

    def kernel(c):
        return a * c + (1 - a) ** 2 * (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / (2 * math.pi)

    assert float(maps.q_map(1)) == pytest.approx(kernel(1.0), rel=1e-12)
    for c in (-0.8, 0.0, 0.5):
        assert float(maps.c_map(c)) == pytest.approx(kernel(c) / kernel(1.0), rel=1e-12)


def test_functional_prelu_with_per_channel_slopes_is_read_as_nn_prelu_is():
    equal = graphs.from_torch(_PReLUNet("F.prelu", slopes=(0.2,) * 8), torch.randn(2, 4))
    assert [equal.nodes[n]["activation_params"]["a"] for n in graphs.activation_nodes(equal)] == pytest.approx(
        [0.2, 0.2], rel=1e-7)
    with pytest.raises(InvalidGraphError, match=r"F\.prelu's weight of shape \(8,\) has 8 per-channel slopes that "
                                                r"differ; per-channel PReLU is not supported.*pass a one-element "
                                                r"weight"):
        graphs.from_torch(_PReLUNet("F.prelu", slopes=(0.2,) * 7 + (0.5,)), torch.randn(2, 4))


class _RMSNormNet(nn.Module):
    """Linear -> RMSNorm -> tanh -> Linear -> RMSNorm -> tanh -> Linear (no biases), the normalisation in the
    form ``form`` names, with or without its elementwise weight."""

    def __init__(self, form: str, weighted: bool, d: int = 16, n: int = 16):
        super().__init__()
        self.form, self.n = form, n
        self.l1, self.l2, self.head = nn.Linear(d, n, bias=False), nn.Linear(n, n, bias=False), nn.Linear(n, 2)
        self.norm = nn.RMSNorm(n, elementwise_affine=weighted)

    def normalised(self, h):
        weight = self.norm.weight
        return {"nn.RMSNorm": lambda: self.norm(h), "F.rms_norm": lambda: F.rms_norm(h, (self.n,), weight),
                "sizes from the shape": lambda: F.rms_norm(h, h.shape[-1:], weight=weight),
                "torch.rms_norm": lambda: torch.rms_norm(h, [self.n], weight, None)}[self.form]()

    def forward(self, x):
        first = torch.tanh(self.normalised(self.l1(x)))
        return self.head(torch.tanh(self.normalised(self.l2(first))))


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("form", ["F.rms_norm", "sizes from the shape", "torch.rms_norm"])
def test_functional_rms_norm_traces_as_nn_rmsnorm_does(form, weighted):
    """F.rms_norm was refused as "unsupported op rms_norm" while nn.RMSNorm traced."""
    from analysis.shaping import shape

    x = torch.randn(2, 16)
    g = graphs.from_torch(_RMSNormNet(form, weighted), x)
    module = graphs.from_torch(_RMSNormNet("nn.RMSNorm", weighted), x)
    assert same_network(g, module)
    assert same_network(g, chain("linear", "normalise", "activation", "linear", "normalise", "activation", "linear"))
    traced, by_module = (shape(None, h, method="dks", zeta=1.5) for h in (g, module))
    assert [(lay.alpha, lay.beta, lay.gamma, lay.delta) for lay in traced.layers] == [
        (lay.alpha, lay.beta, lay.gamma, lay.delta) for lay in by_module.layers]
    # a weight of mean square 2 doubles q, refused as the module's is
    model = _RMSNormNet(form, True)
    with torch.no_grad():
        model.norm.weight.fill_(2**0.5)
    with pytest.raises(InvalidGraphError, match=r"changes q by (2|1\.9999\d*) \(the normalisation's elementwise "
                                                r"weight has mean square (2|1\.9999)"):
        graphs.from_torch(model, x)


def _wide_rms_norm_tanh(weight: str, c0: float, d: int = 64, n: int = 4096, seeds: int = 4):
    """The q and cosine after the first tanh of _RMSNormNet("F.rms_norm") at width n (mean over seeds), on inputs
    of q = 4 and cosine c0, its elementwise weight random signs or spread as randn (mean square 1 both)."""
    generator = torch.Generator().manual_seed(7)
    qs, cs = [], []
    for _ in range(seeds):
        model = _RMSNormNet("F.rms_norm", True, d=d, n=n).double()
        with torch.no_grad():
            model.l1.weight.normal_(0, d**-0.5, generator=generator)
            if weight == "signs":
                model.norm.weight.copy_(torch.randint(0, 2, (n,), generator=generator) * 2.0 - 1)
            else:
                spread = torch.randn(n, generator=generator, dtype=torch.float64)
                model.norm.weight.copy_(spread / spread.square().mean().sqrt())
        u = torch.randn(2, d, generator=generator, dtype=torch.float64)
        u[1] -= (u[1] @ u[0]) / (u[0] @ u[0]) * u[0]
        u = u / u.norm(dim=1, keepdim=True)
        pair = 2 * math.sqrt(d) * torch.stack([u[0], c0 * u[0] + math.sqrt(1 - c0 * c0) * u[1]])
        with torch.no_grad():
            h = torch.tanh(model.normalised(model.l1(pair)))
        qs.append(float(h.square().mean()))
        cs.append(float(h[0] @ h[1] / (h[0].norm() * h[1].norm())))
    return sum(qs) / seeds, sum(cs) / seeds


def test_a_functional_weight_computed_from_parameters_is_refused_naming_functional_layers():
    # the message said "from_torch reads a linear layer's weight only as the parameter itself" for F.rms_norm's
    class Doubled(_RMSNormNet):
        def normalised(self, h):
            return F.rms_norm(h, (self.n,), self.norm.weight * 2)

    with pytest.raises(InvalidGraphError, match=r"computes with \['norm\.weight'\] alone.*reads the weight of a layer "
                                                r"\(F\.linear, F\.conv\*d, F\.prelu, F\.rms_norm\) only as the "
                                                r"parameter itself"):
        graphs.from_torch(Doubled("", True), torch.randn(2, 16))


def test_functional_rms_norm_resets_q_as_a_wide_network_measures():
    # the normalise node's rule (q -> 1, C values kept), checked on the traced model itself, made wide: inputs with
    # q = 4, so that without the reset the first tanh would see q = 4 (Q(4) = 0.635 where Q(1) = 0.394); the
    # elementwise weight flips the signs of random features (mean square 1, every feature's variance kept)
    from analysis.kernel import kernel_maps

    c0 = -0.5
    g = graphs.from_torch(_RMSNormNet("F.rms_norm", True, d=8, n=8), torch.randn(2, 8))
    first_tanh = graphs.activation_nodes(g)[0]
    tanh = kernel_maps("tanh")
    predicted_q = graphs.propagate(g, lambda node, q: tanh.q_map(q), 4.0, quantity="q")[first_tanh]
    predicted_c = graphs.propagate(g, lambda node, c: tanh.c_map(c), c0)[first_tanh]
    assert float(predicted_q) == pytest.approx(float(tanh.q_map(1)), rel=1e-12)
    measured_q, measured_c = _wide_rms_norm_tanh("signs", c0)  # 0.3947 and -0.4730 (predicted 0.3943, -0.4726)
    assert measured_q == pytest.approx(float(predicted_q), abs=0.01)
    assert abs(measured_q - float(tanh.q_map(4))) > 0.2
    assert measured_c == pytest.approx(float(predicted_c), abs=0.01)
    assert abs(float(tanh.c_map(c0, 4, 4)) - float(predicted_c)) > 0.03


@pytest.mark.parametrize("form", ["nn.RMSNorm", "F.rms_norm"])
def test_an_rms_norm_weight_of_uneven_magnitudes_before_an_activation_is_refused(form):
    # A weight of mean square 1 keeps q after the normalisation, but each feature gets its own variance w_i**2,
    # and tanh of a mixture of Gaussians is not tanh of one: spread as randn, the wide network measures
    # q = 0.27 after the tanh where the graph's q = 1 gives Q(1) = 0.394.  It was accepted.
    from analysis.kernel import kernel_maps

    measured_q, _ = _wide_rms_norm_tanh("spread", -0.5)
    assert abs(measured_q - float(kernel_maps("tanh").q_map(1))) > 0.05
    model = _RMSNormNet(form, True, d=8, n=8)
    with torch.no_grad():
        spread = torch.randn(8, generator=torch.Generator().manual_seed(0))
        model.norm.weight.copy_(spread / spread.square().mean().sqrt())
    with pytest.raises(InvalidGraphError, match=r"'(rms_)?norm'.*elementwise weight scales the features by factors from "
                                                r"[\d.e-]+ to [\d.]+ in magnitude, and activation 'tanh' reads them "
                                                r"with no linear layer in between.*reset the weight to ones.*or put a "
                                                r"linear layer between"):
        graphs.from_torch(model, torch.randn(2, 8))

    # read by a linear layer first, the features are averaged into one kernel: accepted, as before
    class Normaliser(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, h):
            return self.net.normalised(h)

    assert same_network(graphs.from_torch(Norm(Normaliser()), torch.randn(2, 5, 8)),
                        chain("linear", "normalise", "linear"))


class _Returning(nn.Module):
    def __init__(self, returned):
        super().__init__()
        self.returned, self.l1, self.l2 = returned, nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        hidden = torch.tanh(self.l1(x))
        return self.returned(hidden, self.l2(hidden))


@pytest.mark.parametrize("returned, said, fix", [
    (lambda h, y: {"logits": y, "hidden": h}, r"a dict with keys \['logits', 'hidden'\]", r"out\['logits'\]"),
    (lambda h, y: (y, h), "a tuple of 2", r"out\[0\]"),
    (lambda h, y: [y], "a list of 1", r"out\[0\]"),
    (lambda h, y: None, "None", "return the output tensor"),
])
def test_a_forward_returning_other_than_one_tensor_is_refused_naming_what_it_returns(returned, said, fix):
    # a dict or list was blamed on an in-place update ("the graph torch.fx traced gives a differently structured
    # output ... skip = h; h *= c"): fx returns its own immutable containers, which the reproduction check compared
    with pytest.raises(InvalidGraphError, match=rf"_Returning\.forward returns {said}; from_torch needs it to return a "
                                                rf"single tensor, the network output: .*{fix}") as info:
        graphs.from_torch(_Returning(returned), torch.randn(2, 4))
    assert "in-place" not in str(info.value)
    # the fix traces
    assert graphs.from_torch(_Returning(lambda h, y: y), torch.randn(2, 4)).has_node("l2")


class _Branches(nn.Module):
    """Two branches of a residual-like block joined by ``join``, then a head."""

    def __init__(self, join):
        super().__init__()
        self.join, self.a, self.b, self.c = join, nn.Linear(4, 8), nn.Linear(4, 8), nn.Linear(8, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(torch.tanh(self.join(self.a(x), self.c(torch.tanh(self.b(x))))))


def test_a_sum_or_mean_over_stacked_branches_is_refused_as_the_unweighted_sum_it_is():
    # torch.stack([a, b]).sum(0) is a + b (q doubles for independent branches), and .mean(0) is (a + b)/2 (q halves);
    # the sum was an "unsupported tensor method" listing what from_torch maps, the mean told to "pool each part
    # before concatenating", neither the construct nor the fix
    a, b = torch.randn(1000, 8, dtype=torch.float64), torch.randn(1000, 8, dtype=torch.float64)
    assert torch.equal(torch.stack([a, b]).sum(0), a + b)
    assert float(torch.stack([a, b]).mean(0).square().mean()) == pytest.approx(0.5, rel=0.05)
    with pytest.raises(InvalidGraphError, match=r"unsupported tensor method fx node 'sum_1' \(call_method sum\): it "
                                                r"adds the tensors that torch.stack 'stack' joined along dim\(s\) "
                                                r"\[0\] without weights \(x \+ y.*write the weighted sum of those "
                                                r"tensors, w1\*x \+ w2\*y with w1\*\*2 \+ w2\*\*2 == 1"):
        graphs.from_torch(_Branches(lambda u, v: torch.stack([u, v]).sum(0)), torch.randn(2, 4))
    with pytest.raises(InvalidGraphError, match=r"averages over dim\(s\) \[1\] .*that torch.stack 'stack' stacked "
                                                r"along that dim, i\.e\. it averages the stacked tensors, \(a \+ b\)/2.*"
                                                r"write their weighted sum w1\*a \+ w2\*b") as info:
        graphs.from_torch(_Branches(lambda u, v: torch.stack([u, v], 1).mean(1)), torch.randn(2, 4))
    assert "pool each part" not in str(info.value)
    # the fix traces: a weighted sum of the two branches
    g = graphs.from_torch(_Branches(lambda u, v: 0.6 * u + 0.8 * v), torch.randn(2, 4))
    assert sorted(w for _, _, w in g.edges(data="weight") if w is not None) == pytest.approx([0.6, 0.8])
    # a sum over features or positions says which it is
    with pytest.raises(InvalidGraphError, match=r"\(call_method sum\): it sums features.*use a linear layer"):
        graphs.from_torch(_Branches(lambda u, v: 0.6 * u + 0.8 * v.sum(-1, keepdim=True)), torch.randn(2, 4))
    with pytest.raises(InvalidGraphError, match=r"\(call_function sum\): it sums over the sequence/spatial dim\(s\) "
                                                r"\[1\].*use x\.mean\(\[1\]\)"):
        graphs.from_torch(_Branches(lambda u, v: 0.6 * u.mean(1) + 0.8 * torch.sum(v, 1)), torch.randn(2, 5, 4))


@pytest.mark.parametrize("op, said", [
    (lambda h: h.flip(1), r"unsupported tensor method fx node 'flip' .*: moves elements.*transposes, permutes and "
                          r"reshapes only"),
    (lambda h: h[:, [1, 0, 3, 2, 4, 5, 6, 7]], r"unsupported op fx node 'getitem' .*: selects or splits out elements.*"
                                               r"compute each part with its own layer"),
    (lambda h: torch.cat(h.chunk(2, 1), 1), r"'chunk' .*: selects or splits out elements"),
    (lambda h: F.layer_norm(h, (8,)), r"'layer_norm' .*: mean subtraction.*use F\.rms_norm or nn\.RMSNorm"),
    (lambda h: F.max_pool1d(h.unsqueeze(1), 1).squeeze(1), r"'max_pool1d' .*: a max .*use average pooling"),
    (lambda h: F.softmax(h, -1), r"'softmax' .*: a normalisation across the features .*use an elementwise activation"),
    (lambda h: h.clamp(min=0), r"'clamp' .*: clamps to constants.*F\.hardtanh\(x, min_val, max_val\) \(F\.relu for "
                               r"clamp\(min=0\)"),
    (lambda h: h.square(), r"'square' .*: an elementwise function .*numeric\.torch_module\(symact\.activation"),
    (lambda h: torch.einsum("bi,bj->bij", h, h).mean(1), r"'einsum' .*: a product of tensors of the network"),
])
def test_unsupported_ops_say_what_they_do_what_to_write_instead_and_where(op, said):
    """Each was "unsupported op/tensor method ...; from_torch maps Linear/Conv, ...": what the op does and the fix
    were left to the reader, and so was the line of the model that called it."""
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.l2 = nn.Linear(4, 8), nn.Linear(8, 2)

        def forward(self, x):
            return self.l2(op(torch.tanh(self.l1(x))))

    line = inspect.getsourcelines(op)[1]
    with pytest.raises(InvalidGraphError, match=rf"{said}.* \(at .*test_fx\.py:{line}: `.*`\)$"):
        graphs.from_torch(Model(), torch.randn(2, 4))


@pytest.mark.parametrize("module, said", [
    (nn.GroupNorm(2, 8), r"unsupported module GroupNorm .*mean subtraction \(use nn\.RMSNorm"),
    (nn.Softmax(-1), r"unsupported module Softmax .*a normalisation across the features"),
    (nn.MaxPool1d(1), r"unsupported module MaxPool1d .*max pooling \(use average pooling\)"),
])
def test_unsupported_modules_say_what_they_do_and_what_to_use(module, said):
    with pytest.raises(InvalidGraphError, match=said):
        graphs.from_torch(nn.Sequential(nn.Linear(4, 8), module, nn.Linear(8, 2)), torch.randn(2, 4))


def test_forwards_torch_fx_cannot_trace_are_refused_naming_the_construct_and_line():
    # iterating over a tensor and len() of one were blamed on "data-dependent control flow"
    class Iterating(nn.Module):
        def __init__(self):
            super().__init__()
            self.l = nn.Linear(4, 4)

        def forward(self, x):
            rows = [row for row in self.l(x)]  # the line blamed
            return rows[0]

    class Measuring(nn.Module):
        def __init__(self):
            super().__init__()
            self.l = nn.Linear(4, 4)

        def forward(self, x):
            return self.l(x) / len(x)  # the line blamed

    for model, said in ((Iterating(), r"its forward iterates over or unpacks a tensor"),
                        (Measuring(), r"its forward calls len\(\) on a tensor.*use x\.size\(0\)")):
        source, first_line = inspect.getsourcelines(type(model).forward)
        line = first_line + next(i for i, text in enumerate(source) if "the line blamed" in text)
        with pytest.raises(InvalidGraphError, match=rf"could not trace {type(model).__name__} \(at .*test_fx\.py:"
                                                    rf"{line}: `[^`#]+`\): {said}") as info:
            graphs.from_torch(model, torch.randn(2, 4))
        assert "control flow" not in str(info.value)
