"""Node kinds, builders and validation errors of graphs."""

from __future__ import annotations

import networkx as nx
import pytest
import sympy

import graphs
from graphs.graph import NodeKind
from symact.errors import InvalidGraphError, SymactError

s, k = sympy.symbols("s k", positive=True)


def chain(*kinds_and_names):
    """A graph from (name, kind, inputs) triples; no validation."""
    g = graphs.new_graph()
    for name, kind, inputs in kinds_and_names:
        attrs = {"activation": "tanh"} if kind == "activation" else {}
        graphs.add_node(g, name, kind, *inputs, **attrs)
    return g


def small_mlp():
    return chain(("x", "input", ()), ("l1", "linear", ("x",)), ("a1", "activation", ("l1",)),
                 ("l2", "linear", ("a1",)), ("y", "output", ("l2",)))


# --------------------------------------------------------------------------- builders

def test_mlp_layout():
    g = graphs.mlp(3, activation="gelu")
    assert [g.nodes[n]["kind"] for n in nx.topological_sort(g)] == (
        ["input"] + ["linear", "activation"] * 3 + ["linear", "output"])
    assert {g.nodes[n]["activation"] for n in graphs.activation_nodes(g)} == {"gelu"}


def test_activation_attribute_is_opaque():
    marker = object()
    g = graphs.mlp(2, activation=marker)
    assert all(g.nodes[n]["activation"] is marker for n in graphs.activation_nodes(g))


def test_resnet101_layout_and_weights():
    g = graphs.resnet(shortcut_weight=0.6)
    sums = [n for n in g if g.nodes[n]["kind"] == "weighted_sum"]
    assert len(sums) == 3 + 4 + 23 + 3
    for node in sums:
        assert sorted(graphs.edge_weights(g, node).values()) == pytest.approx([0.6, 0.8], abs=1e-15)
    projections = [n for n in g if n.endswith("/proj")]
    assert projections == ["s1b0/proj", "s2b0/proj", "s3b0/proj", "s4b0/proj"]
    # V2: the projection takes the pre-activated input
    assert list(g.predecessors("s2b0/proj")) == ["s2b0/act_a"]
    assert sum(1 for n in g if g.nodes[n]["kind"] == "activation") == 3 * 33 + 1


def test_resnet_exact_weights_and_variants():
    g = graphs.resnet(blocks=(2, 2), block="basic", shortcut_weight=sympy.Rational(3, 5))
    assert graphs.edge_weights(g, "s1b1/sum") == {"s1b0/sum": sympy.Rational(3, 5),
                                                  "s1b1/linear_b": sympy.Rational(4, 5)}
    assert "s1b0/proj" not in g and "s2b0/proj" in g  # basic nets project at later stages only
    v1 = graphs.resnet(blocks=(2, 1), variant="v1", shortcut_weight=0.8)
    assert v1.graph["preactivations"] == "mixed"
    assert list(v1.successors("s1b0/sum")) == ["s1b0/act_out"]
    # the V1 post-sum activation sees the previous activation through the shortcut: only the
    # explicit "mixed" mark lets it validate
    del v1.graph["preactivations"]
    with pytest.raises(InvalidGraphError, match="not preceded by a linear layer"):
        graphs.validate(v1)


def test_multi_branch_closed_forms():
    """Branches of depth 0, 1, 2 with weights 1/sqrt(3): a block maps slope x to
    x (1 + s + s**2)/3 and curvature y to y + (0 + k + 2k)/3 = y + k.  Four blocks and the head
    give s ((1 + s + s**2)/3)**4 and 5k, above any single branch (s**2, 2k) for s > 1.

    Concat of an identity (32 channels) and a depth-2 branch (96): the whole network gives
    1/4 + 3/4 s**2, the depth-2 branch alone (a sub-network from the block input, which also
    feeds the identity) s**2, the maximum for s > 1."""
    g = graphs.multi_branch((0, 1, 2), blocks=4)
    assert graphs.max_subnetwork_value(g, lambda n, y: s * y, 1) == s * ((1 + s + s**2) / 3) ** 4
    assert graphs.max_subnetwork_value(g, lambda n, y: k + y, 0) == 5 * k
    cat = graphs.multi_branch((0, 2), combine="concat", channels=(32, 96), head_activation=False)
    assert graphs.edge_channels(cat, "b0/join") == {"stem/linear": 32, "b0/br1/linear2": 96}
    assert graphs.max_subnetwork_value(cat, lambda n, y: s * y, 1) == s**2
    whole = graphs.subnetwork_value(cat, lambda n, y: s * y, 1, "input", "output")
    assert sympy.expand(whole - (sympy.Rational(1, 4) + sympy.Rational(3, 4) * s**2)) == 0


def test_register_kind_is_the_one_place_to_add_a_kind():
    """A hypothetical 'halve' kind (a layer scaling C values by 1/2) works end to end."""
    halve = NodeKind("halve", 1, 1, lambda ctx, node, inputs: inputs[0][1] / 2, gaussian="transparent")
    graphs.register_kind(halve)
    try:
        g = chain(("x", "input", ()), ("l", "linear", ("x",)), ("h", "halve", ("l",)),
                  ("a", "activation", ("h",)), ("y", "output", ("a",)))
        graphs.validate(g)
        assert graphs.propagate(g, lambda n, v: v + 1, sympy.Integer(1))["y"] == sympy.Rational(3, 2)
    finally:
        del graphs.KINDS["halve"]


# --------------------------------------------------------------------------- validation errors

def test_valid_graph_passes():
    graphs.validate(small_mlp())


def test_error_family():
    assert issubclass(InvalidGraphError, SymactError)


def test_cycle_is_rejected():
    g = small_mlp()
    g.add_edge("l2", "l1")
    with pytest.raises(InvalidGraphError, match="cycle"):
        graphs.validate(g)


def test_unreachable_node_is_rejected():
    g = small_mlp()
    g.add_node("orphan", kind="linear")
    g.add_node("orphan_in", kind="pool")
    g.add_edge("orphan_in", "orphan")
    g.add_node("sum", kind="weighted_sum")
    g.remove_edge("l2", "y")
    g.add_edge("l2", "sum", weight=0.6)
    g.add_edge("orphan", "sum", weight=0.8)
    g.add_edge("sum", "y")
    with pytest.raises(InvalidGraphError, match="not reachable from the input"):
        graphs.validate(g)


def test_dead_branch_is_rejected():
    g = small_mlp()
    graphs.add_node(g, "dead", "linear", "a1")
    with pytest.raises(InvalidGraphError, match="do not reach the output"):
        graphs.validate(g)


def test_two_inputs_are_rejected():
    g = small_mlp()
    graphs.add_node(g, "x2", "input")
    with pytest.raises(InvalidGraphError, match="exactly one input node, found 2"):
        graphs.validate(g)


def test_missing_or_extra_output_is_rejected():
    g = small_mlp()
    graphs.add_node(g, "y2", "output", "l2")
    with pytest.raises(InvalidGraphError, match="exactly one output node, found 2"):
        graphs.validate(g)
    g = small_mlp()
    g.remove_node("y")
    with pytest.raises(InvalidGraphError, match="exactly one output node, found 0"):
        graphs.validate(g)


def test_output_must_be_last():
    g = small_mlp()
    g.add_node("after", kind="linear")
    g.add_edge("y", "after")
    with pytest.raises(InvalidGraphError, match="must be the last node"):
        graphs.validate(g)


@pytest.mark.parametrize("bad", ["input_then_activation", "activation_then_activation", "sum_with_activation"])
def test_activation_not_preceded_by_linear_is_rejected(bad):
    if bad == "input_then_activation":
        g = chain(("x", "input", ()), ("a", "activation", ("x",)), ("l", "linear", ("a",)), ("y", "output", ("l",)))
    elif bad == "activation_then_activation":
        g = chain(("x", "input", ()), ("l", "linear", ("x",)), ("a", "activation", ("l",)),
                  ("p", "pool", ("a",)), ("b", "activation", ("p",)), ("y", "output", ("b",)))
    else:
        g = chain(("x", "input", ()), ("l", "linear", ("x",)), ("a", "activation", ("l",)), ("l2", "linear", ("a",)))
        graphs.add_weighted_sum(g, "sum", {"a": 0.6, "l2": 0.8})
        graphs.add_node(g, "b", "activation", "sum", activation="tanh")
        graphs.add_node(g, "y", "output", "b")
    with pytest.raises(InvalidGraphError, match="not preceded by a linear layer"):
        graphs.validate(g)


def test_unnormalised_weights_are_rejected_with_the_normalised_form():
    g = chain(("x", "input", ()), ("l1", "linear", ("x",)), ("l2", "linear", ("x",)))
    with pytest.raises(InvalidGraphError, match=r"squares sum to 2.*'l1': 0.707106781187, 'l2': 0.707106781187"):
        graphs.add_weighted_sum(g, "sum", {"l1": 1.0, "l2": 1.0})
    with pytest.raises(InvalidGraphError, match=r"'l1': sqrt\(2\)/2"):
        graphs.add_weighted_sum(g, "sum", {"l1": 1, "l2": 1})
    # the check also runs in validate, for edges set by hand
    graphs.add_weighted_sum(g, "sum", {"l1": 0.6, "l2": 0.8})
    graphs.add_node(g, "y", "output", "sum")
    g.edges["l1", "sum"]["weight"] = 0.61
    with pytest.raises(InvalidGraphError, match="not 1"):
        graphs.validate(g)


def test_huge_and_tiny_float_weights_get_the_normalised_form():
    """{a: 1e200, b: 1e200} raised a bare OverflowError (a float's w**2 past 1.3e154), and the normalised
    weights suggested for {a: 3e-200, b: 4e-200} were the weights themselves (the squares underflowed to 0)."""
    g = chain(("x", "input", ()), ("l1", "linear", ("x",)), ("l2", "linear", ("x",)))
    with pytest.raises(InvalidGraphError, match=r"squares sum to inf.*'l1': 0.707106781187, 'l2': 0.707106781187"):
        graphs.add_weighted_sum(g, "sum", {"l1": 1e200, "l2": 1e200})
    with pytest.raises(InvalidGraphError, match=r"not 1.*'l1': 0.6, 'l2': 0.8"):
        graphs.add_weighted_sum(g, "sum", {"l1": 3e-200, "l2": 4e-200})
    assert graphs.normalised_weights({"a": 3e200, "b": 4e200}) == pytest.approx({"a": 0.6, "b": 0.8}, rel=1e-15)


def test_weight_tolerance_is_1e_12_for_floats_and_exact_for_sympy():
    g = chain(("x", "input", ()), ("l1", "linear", ("x",)), ("l2", "linear", ("x",)))
    w = 0.6 + 4e-13  # squares sum to 1 + 4.8e-13: within tolerance
    graphs.add_weighted_sum(g, "ok", {"l1": w, "l2": 0.8})
    with pytest.raises(InvalidGraphError):
        graphs.add_weighted_sum(g, "bad", {"l1": 0.6 + 1e-11, "l2": 0.8})
    graphs.add_weighted_sum(g, "exact", {"l1": sympy.sqrt(2) / 2, "l2": 1 / sympy.sqrt(2)})
    # exact numbers get no tolerance at all
    with pytest.raises(InvalidGraphError):
        graphs.add_weighted_sum(g, "exact_bad", {"l1": sympy.Rational(3, 5) + sympy.Rational(1, 10**15),
                                                 "l2": sympy.Rational(4, 5)})
    w_sym = sympy.Symbol("w", positive=True)
    graphs.add_weighted_sum(g, "symbolic", {"l1": w_sym, "l2": sympy.sqrt(1 - w_sym**2)})


def test_wrong_in_degree_is_rejected():
    g = chain(("x", "input", ()), ("l1", "linear", ("x",)), ("l2", "linear", ("x",)),
              ("l3", "linear", ("l1", "l2")), ("y", "output", ("l3",)))
    with pytest.raises(InvalidGraphError, match="linear node 'l3' has 2 input.*exactly 1"):
        graphs.validate(g)
    g = chain(("x", "input", ()), ("l1", "linear", ("x",)))
    graphs.add_weighted_sum(g, "sum", {"l1": 1.0})
    graphs.add_node(g, "y", "output", "sum")
    with pytest.raises(InvalidGraphError, match="weighted_sum node 'sum' has 1 input.*at least 2"):
        graphs.validate(g)


def test_unknown_kind_and_missing_attributes_are_rejected():
    g = small_mlp()
    g.nodes["l1"]["kind"] = "batchnorm"
    with pytest.raises(InvalidGraphError, match="kind 'batchnorm'; known kinds"):
        graphs.validate(g)
    with pytest.raises(InvalidGraphError, match="unknown node kind"):
        graphs.add_node(graphs.new_graph(), "n", "dropout")
    g = small_mlp()
    del g.nodes["a1"]["activation"]
    with pytest.raises(InvalidGraphError, match="no 'activation' attribute"):
        graphs.validate(g)
    g = chain(("x", "input", ()), ("l1", "linear", ("x",)), ("l2", "linear", ("x",)))
    with pytest.raises(InvalidGraphError, match="positive integer 'channels'"):
        graphs.add_concat(g, "cat", {"l1": 3, "l2": 0})


def test_multigraph_and_empty_graph_are_rejected():
    with pytest.raises(InvalidGraphError, match="DiGraph"):
        graphs.validate(nx.MultiDiGraph())
    with pytest.raises(InvalidGraphError, match="empty"):
        graphs.validate(graphs.new_graph())


def test_add_node_guards():
    g = small_mlp()
    with pytest.raises(InvalidGraphError, match="already exists"):
        graphs.add_node(g, "l1", "linear", "x")
    with pytest.raises(InvalidGraphError, match="not a node yet"):
        graphs.add_node(g, "l9", "linear", "nowhere")


@pytest.mark.parametrize("module", ["graphs.graph", "graphs.builders", "graphs.walker", "graphs.fx"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    if module == "graphs.fx":
        pytest.importorskip("torch")
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("kwargs, message", [
    ({"blocks": 2}, r"blocks must be a sequence of block counts.*blocks=\[2\] for one stage"),
    ({"blocks": "22"}, r"blocks must be a sequence of block counts"),
    ({"shortcut_weight": "abc"}, r"shortcut_weight must be a number in \[0, 1\], got 'abc'"),
    ({"blocks": [1, 1], "projection": 5}, r"projection must be a bool or one bool per stage, not 5"),
])
def test_resnet_arguments_of_the_wrong_type_are_graph_errors(kwargs, message):
    # these escaped as TypeError ('int' object is not iterable) or ValueError from float()
    with pytest.raises(InvalidGraphError, match=message):
        graphs.resnet(**kwargs)
    # a one-stage net written as a list still builds
    assert len(graphs.activation_nodes(graphs.resnet(blocks=[2], block="basic"))) == 5


def _sum_graph(second_branch):
    """input -> linear 'z' -> two branches -> weighted_sum(0.6, 0.8) -> linear -> output."""
    g = graphs.new_graph()
    graphs.add_node(g, "in", "input")
    graphs.add_node(g, "z", "linear", "in")
    graphs.add_node(g, "tanh", "activation", "z", activation="tanh")
    b = second_branch(g)
    graphs.add_weighted_sum(g, "sum", {"tanh": sympy.Rational(3, 5), b: sympy.Rational(4, 5)})
    graphs.add_node(g, "head", "linear", "sum")
    graphs.add_node(g, "out", "output", "head")
    return g


def test_correlated_weighted_sum_inputs_are_rejected():
    """0.6*tanh(z) + 0.8*relu(z) on one z: the sum rule q = 0.36 q_tanh + 0.8**2 q_relu drops the
    cross term 2*0.48*E[tanh(z) relu(z)], which is not 0 (computed here with mpmath)."""
    import mpmath

    def density(t):
        return mpmath.exp(-t * t / 2) / mpmath.sqrt(2 * mpmath.pi)

    cross = mpmath.quad(lambda t: mpmath.tanh(t) * max(t, 0) * density(t), [-mpmath.inf, 0, mpmath.inf])
    assert cross > 0.1  # so the refused rule would be off by 0.96*cross in q

    def relu_branch(g):
        return graphs.add_node(g, "relu", "activation", "z", activation="relu")

    with pytest.raises(InvalidGraphError, match=r"weighted_sum 'sum' adds 'tanh' and 'relu'.*correlated.*linear"):
        graphs.validate(_sum_graph(relu_branch))

    def shared_weights(g):  # linear(x) and pool(linear(x)): the same weights on both sides
        graphs.add_node(g, "p", "pool", "z")
        return "p"

    g = graphs.new_graph()
    graphs.add_node(g, "in", "input")
    graphs.add_node(g, "z", "linear", "in")
    shared_weights(g)
    graphs.add_weighted_sum(g, "sum", {"z": sympy.Rational(3, 5), "p": sympy.Rational(4, 5)})
    graphs.add_node(g, "out", "output", "sum")
    with pytest.raises(InvalidGraphError, match="correlated"):
        graphs.validate(g)


def test_uncorrelated_weighted_sum_inputs_pass():
    """A branch that ends in its own linear layer is zero-mean and independent of the other input
    (x + W phi(z) with W drawn afresh), as in every residual block and multi-branch builder."""
    def residual_branch(g):
        graphs.add_node(g, "relu", "activation", "z", activation="relu")
        return graphs.add_node(g, "w", "linear", "relu")

    graphs.validate(_sum_graph(residual_branch))
    for g in (graphs.resnet(blocks=(2, 1)), graphs.resnet(blocks=(1,), variant="v1"), graphs.resnet(blocks=(1, 1), block="basic"),
              graphs.multi_branch((0, 1, 2), blocks=2)):
        graphs.validate(g)


@pytest.mark.parametrize("bad", [sympy.I * sympy.sqrt(3), 0.6j, "0.6", None, True, sympy.true])
def test_non_real_weights_are_rejected_by_name(bad):
    """A weighted sum's rule sum w_i**2 k_i is the kernel of sum w_i x_i only for real w_i:
    (i*sqrt(3))**2 + 2**2 == 1 passed the normalisation check although |i*sqrt(3)|**2 + 4 == 7,
    and a Python complex or a string escaped as a raw TypeError.  A bool passed as the number 1
    ({l1: True, l2: False} validated) and beside a SymPy weight raised SymPy's raw
    'BooleanAtom not allowed in this context'."""
    g = small_mlp()
    with pytest.raises(InvalidGraphError, match="real number"):
        graphs.add_weighted_sum(g, "sum", {"l1": bad, "l2": 2})
    with pytest.raises(InvalidGraphError, match="real number"):
        graphs.add_weighted_sum(g, "sum", {"l1": bad, "l2": sympy.Integer(0)})


@pytest.mark.parametrize("call, message", [
    (lambda: graphs.multi_branch((0, 1), blocks=-1), r"blocks must be a non-negative int.*-1"),
    (lambda: graphs.multi_branch((0, 1), blocks=1.5), r"blocks must be a non-negative int.*1\.5"),
    (lambda: graphs.multi_branch(3), r"branches must be a sequence of branch depths.*\(0, 1, 2\)"),
    (lambda: graphs.multi_branch((0, True)), r"branches must list at least two non-negative depths"),
    (lambda: graphs.mlp(True), r"depth must be a non-negative int"),
    (lambda: graphs.residual_weights(True), r"shortcut_weight must be a number in \[0, 1\], got True"),
    # weights given to a concat join (or channels to a weighted sum) were ignored without a word
    (lambda: graphs.multi_branch((0, 1), combine="concat", weights=(0.6, 0.8)), r"weights apply to combine='weighted_sum'"),
    (lambda: graphs.multi_branch((0, 1), channels=(1, 3)), r"channels apply to combine='concat'"),
])
def test_builder_counts_are_checked_by_name(call, message):
    # blocks=-1 built a net with no blocks as silently as blocks=0; blocks=1.5 and branches=3
    # escaped as raw TypeErrors; True passed as a depth of 1 and a shortcut weight of 1.0
    with pytest.raises(InvalidGraphError, match=message):
        call()


def test_builder_counts_accept_numpy_integers_and_fractions_stay_exact():
    np = pytest.importorskip("numpy")
    from fractions import Fraction
    assert list(graphs.mlp(np.int64(2))) == list(graphs.mlp(2))
    assert list(graphs.resnet(blocks=np.array([1, 2]), block="basic")) == list(graphs.resnet(blocks=(1, 2), block="basic"))
    assert list(graphs.multi_branch(np.array([0, 2]), blocks=np.int64(2))) == list(graphs.multi_branch((0, 2), blocks=2))
    # the docstring promises exact weights for Fractions: 3/5 -> (3/5, 4/5), with 9/25 + 16/25 == 1
    w, r = graphs.residual_weights(Fraction(3, 5))
    assert (w, r) == (sympy.Rational(3, 5), sympy.Rational(4, 5))
    assert w**2 + r**2 == 1


@pytest.mark.parametrize("kind, message", [
    (NodeKind("dropout", 1, 1, None), "needs a rule"),
    (NodeKind("backwards", 2, 1, lambda ctx, node, inputs: inputs[0][1]), "min_inputs <= max_inputs"),
    (NodeKind("negative", -1, None, lambda ctx, node, inputs: inputs[0][1]), "min_inputs <= max_inputs"),
])
def test_register_kind_refuses_kinds_the_walker_cannot_run(kind, message):
    # a kind with inputs but no rule registered fine and then every walk over it failed with
    # "TypeError: 'NoneType' object is not callable"
    with pytest.raises(InvalidGraphError, match=message):  # a SymactError, as the README promises
        graphs.register_kind(kind)
    assert kind.name not in graphs.KINDS


def test_all_zero_weights_cyclic_activation_query_and_complex_shortcut_are_named():
    # all-zero weights were "fixed" to the same zeros by the suggested normalised weights
    with pytest.raises(InvalidGraphError, match="every weight 0"):
        graphs.add_weighted_sum(small_mlp(), "sum", {"l1": 0.0, "l2": 0.0})
    # activation_nodes on a cyclic graph raised networkx's NetworkXUnfeasible without the cycle
    g = small_mlp()
    g.add_edge("l2", "l1")
    with pytest.raises(InvalidGraphError, match="cycle 'l1' -> 'a1' -> 'l2' -> 'l1'"):
        graphs.activation_nodes(g)
    # an imaginary shortcut weight raised SymPy's "Invalid comparison of non-real I"
    with pytest.raises(InvalidGraphError, match="real number in"):
        graphs.residual_weights(sympy.I)


def test_a_refused_concat_leaves_the_graph_as_it_was():
    # add_concat added the node before checking its channels: after the error the graph held a
    # half-built 'cat' and the corrected call failed with "node 'cat' already exists"
    g = small_mlp()
    before = (set(g.nodes), set(g.edges))
    with pytest.raises(InvalidGraphError, match="positive integer 'channels'"):
        graphs.add_concat(g, "cat", {"l1": 2.0, "a1": 1})
    assert (set(g.nodes), set(g.edges)) == before
    graphs.add_concat(g, "cat", {"l1": 2, "l2": 1})
    assert graphs.edge_channels(g, "cat") == {"l1": 2, "l2": 1}


def test_edge_accessors_and_shortcut_weight_refuse_the_wrong_kind_of_input_by_name():
    """edge_weights on an activation node raised a bare KeyError('weight'), and residual_weights("0.6")
    read a string as the number 0.6."""
    from sympy import Rational

    g = graphs.resnet([1], shortcut_weight=Rational(3, 5))
    (sum_node,) = [n for n, k in g.nodes(data="kind") if k == "weighted_sum"]
    weights = graphs.edge_weights(g, sum_node)
    assert sorted(weights.values(), key=float) == [Rational(3, 5), Rational(4, 5)]  # w**2 + (1 - w**2) = 1
    act = next(n for n, k in g.nodes(data="kind") if k == "activation")
    with pytest.raises(InvalidGraphError, match="is a 'activation' node, not a 'weighted_sum' node"):
        graphs.edge_weights(g, act)
    with pytest.raises(InvalidGraphError, match="not a 'concat' node"):
        graphs.edge_channels(g, sum_node)
    with pytest.raises(InvalidGraphError, match="no node 'nope'"):
        graphs.edge_weights(g, "nope")
    with pytest.raises(InvalidGraphError, match="must be a number"):
        graphs.residual_weights("0.6")


def _two_calls_of_one_layer(shared: bool) -> nx.DiGraph:
    """x -> a -> act -> (l1, l2) summed: l1 and l2 read the same act, so they are correlated when
    they apply one weight matrix (weights attribute equal) and independent when each has its own."""
    g = graphs.new_graph()
    graphs.add_node(g, "x", "input")
    graphs.add_node(g, "a", "linear", "x")
    graphs.add_node(g, "act", "activation", "a", activation="tanh")
    graphs.add_node(g, "pre", "linear", "act")
    graphs.add_node(g, "act2", "activation", "pre", activation="tanh")
    extra = {"weights": "l1"} if shared else {}
    graphs.add_node(g, "l1", "linear", "act", **extra)
    graphs.add_node(g, "l2", "linear", "act2", **extra)
    graphs.add_weighted_sum(g, "sum", {"l1": 0.6, "l2": 0.8})
    graphs.add_node(g, "y", "output", "sum")
    return g


def test_a_sum_of_two_calls_of_one_weight_matrix_is_refused_naming_the_layers():
    """W u and W v have covariance <u, v>/n in a wide network, a cross term the sum rule leaves out
    (a property of Gaussian weights: E[(W u)_i (W v)_i] = sigma^2 <u, v>/n, not 0)."""
    graphs.validate(_two_calls_of_one_layer(shared=False))
    with pytest.raises(InvalidGraphError, match=r"\['l1', 'l2'\], one weight matrix"):
        graphs.validate(_two_calls_of_one_layer(shared=True))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), sympy.nan, sympy.oo, "mpmath-nan"])
def test_non_finite_weights_are_refused_by_name(bad):
    """A nan or infinite weight was refused as 'squares sum to nan, not 1' with the advice to use
    the 'normalised weights' {'l1': nan, 'l2': nan}, which are no fix."""
    import mpmath

    bad = mpmath.nan if bad == "mpmath-nan" else bad
    with pytest.raises(InvalidGraphError, match=r"the weight .* of input 'l1' is not finite") as info:
        graphs.add_weighted_sum(small_mlp(), "sum", {"l1": bad, "l2": 1.0})
    assert "nan}" not in str(info.value) and "normalised weights" not in str(info.value)


def test_symbolic_beside_float_weights_and_an_empty_sum_are_refused_by_name():
    """Unnormalised weights mixing a Symbol and a float ({l1: w, l2: 0.5}) escaped as a raw
    TypeError ('Cannot convert expression to float') while the suggested fix was formed; a
    weighted sum with no inputs was said to have 'every weight 0'."""
    w = sympy.Symbol("w")
    with pytest.raises(InvalidGraphError, match=r"squares sum to w\*\*2 \+ 0\.25, not 1.*'l1': w/sqrt\(w\*\*2 \+ 0\.25\)"):
        graphs.add_weighted_sum(small_mlp(), "sum", {"l1": w, "l2": 0.5})
    with pytest.raises(InvalidGraphError, match="has no inputs; give it at least two"):
        graphs.add_weighted_sum(small_mlp(), "sum", {})


@pytest.mark.parametrize("flags", [["no"], [None], [1], ["False"]])
def test_resnet_projection_flags_must_be_bools(flags):
    """Per-stage projection flags were read by truth value: projection=["no"] (or ["False"])
    built a projection shortcut, [None] an identity one, without a word -- while a scalar
    projection=5 was refused."""
    with pytest.raises(InvalidGraphError, match=r"projection flags must be True or False.*got"):
        graphs.resnet(blocks=(1,), projection=flags)
    np = pytest.importorskip("numpy")
    g = graphs.resnet(blocks=(1, 1), block="basic", projection=np.array([True, False]))
    assert "s1b0/proj" in g and "s2b0/proj" not in g


@pytest.mark.parametrize("weight, message", [
    (sympy.nan, r"real number in \[0, 1\], got nan"),
    (sympy.Symbol("w", negative=True), r"must lie in \[0, 1\], got w"),
    (1 + sympy.Symbol("v", positive=True), r"must lie in \[0, 1\], got v \+ 1"),
])
def test_shortcut_weight_nan_or_outside_zero_one_by_its_assumptions_is_refused(weight, message):
    """residual_weights(sympy.nan) escaped as SymPy's raw 'Invalid NaN comparison' TypeError, and a
    symbol declared negative (or 1 + a positive one) passed as a shortcut weight in [0, 1]; its
    residual weight sqrt(1 - w**2) is then imaginary for w > 1."""
    with pytest.raises(InvalidGraphError, match=message):
        graphs.residual_weights(weight)
    # symbols that may lie in [0, 1] still give the formula
    w = sympy.Symbol("w", positive=True)
    assert graphs.residual_weights(w) == (w, sympy.sqrt(1 - w**2))


@pytest.mark.parametrize("key, value", [("preactivations", "Mixed"), ("preactivations", "v1"),
                                        ("assume_uncorrelated_sums", "False"), ("assume_uncorrelated_sums", "no"),
                                        ("assume_uncorrelated_sums", 1)])
def test_graph_marks_that_relax_checks_must_be_spelt_right(key, value):
    """validate read any preactivations value but 'mixed' as 'gaussian' (a misspelt 'Mixed' then
    failed with 'not preceded by a linear layer'), and took any truthy assume_uncorrelated_sums,
    the string 'False' included, as True: the sum 0.6 tanh(z) + 0.8 relu(z) on one z, whose kernel
    has cross terms the rule leaves out, then validated."""
    def relu_branch(g):
        return graphs.add_node(g, "relu", "activation", "z", activation="relu")

    g = _sum_graph(relu_branch)
    g.graph[key] = value
    with pytest.raises(InvalidGraphError, match=rf"g.graph\['{key}'\] is {value!r}".replace("(", r"\(").replace(")", r"\)")):
        graphs.validate(g)
    g.graph["preactivations"], g.graph["assume_uncorrelated_sums"] = "mixed", True
    graphs.validate(g)  # the right spellings relax the checks as documented


@pytest.mark.parametrize("weights", [{"l1": 1, "l2": sympy.Rational(1, 1000)},
                                     {"l1": 1, "l2": sympy.Rational(1, 10**20)},
                                     {"l1": 1, "l2": sympy.sqrt(3) + sympy.Rational(1, 10**18)},
                                     {"l1": 1, "l2": 1}, {"l1": 3, "l2": 4}])
def test_normalised_weights_are_exactly_w_over_the_norm(weights):
    """The docstring promises w_i / sqrt(sum w_j**2), exact for SymPy/int weights, but nsimplify
    replaced it by a "simple" number close to it in floating point: {1, 1/1000} gave
    b = 18*2**(5/18)*3**(7/9)*5**(103/126)*7**(17/42)/420175 (not 1/sqrt(1000001)), {1, 10**-20}
    dropped b to 0, and {1, sqrt(3) + 10**-18} gave (1/2, sqrt(3)/2) -- and the refusal of the
    unnormalised weights offered these as the fix."""
    fixed = graphs.normalised_weights(weights)
    norm = sympy.sqrt(sum(sympy.sympify(w) ** 2 for w in weights.values()))
    for p, w in weights.items():
        assert sympy.simplify(fixed[p] - w / norm) == 0
        # an independent check of the ratio at 60 digits: fixed_i * norm == w_i
        assert abs(sympy.N(fixed[p] * norm - w, 60)) < sympy.Float(10) ** -55
    if weights == {"l1": 1, "l2": sympy.Rational(1, 1000)}:
        with pytest.raises(InvalidGraphError, match=r"'l2': sqrt\(1000001\)/1000001"):
            graphs.add_weighted_sum(small_mlp(), "sum", weights)
    g = small_mlp()
    graphs.add_weighted_sum(g, "sum", fixed)  # the suggested weights are accepted


def test_an_unhashable_weights_attribute_is_refused_by_name():
    """Storing the weight matrix itself (a numpy array, a list) in a linear node's 'weights'
    attribute, which names the matrix, made validate fail with a raw 'unhashable type' TypeError."""
    np = pytest.importorskip("numpy")
    g = _two_calls_of_one_layer(shared=False)
    g.nodes["l1"]["weights"] = np.ones((2, 2))
    with pytest.raises(InvalidGraphError, match=r"linear node 'l1' has a 'weights' attribute of type ndarray.*name"):
        graphs.validate(g)
    g.nodes["l1"]["weights"] = "fc"  # a name validates (l2 has its own matrix)
    graphs.validate(g)


@pytest.mark.parametrize("call, message", [
    (lambda: graphs.multi_branch((0, 1), weights=0.6), r"weights must be a sequence with one entry per branch.*not 0\.6"),
    (lambda: graphs.multi_branch((0, 1), weights={"a": 0.6, "b": 0.8}), r"weights must be a sequence"),
    (lambda: graphs.multi_branch((0, 1), combine="concat", channels=32), r"channels must be a sequence.*not 32"),
    (lambda: graphs.multi_branch((0, 1), head_activation="no"), r"head_activation must be True or False, not 'no'"),
    (lambda: graphs.resnet(blocks=(1,), stem_pool="no"), r"stem_pool must be True or False, not 'no'"),
])
def test_builder_flags_and_per_branch_sequences_are_checked_by_name(call, message):
    """weights=0.6 or channels=32 escaped as a raw "object of type 'float' has no len()"; a dict of
    weights was zipped by its keys (its 'a' was then called a non-real weight); head_activation and
    stem_pool were read by truth value, so "no" added the activation (the pool)."""
    with pytest.raises(InvalidGraphError, match=message):
        call()
    np = pytest.importorskip("numpy")
    g = graphs.multi_branch((0, 1), weights=np.array([0.6, 0.8]), head_activation=np.bool_(False))
    assert "head/act" not in g and graphs.edge_weights(g, "b0/join") == {"stem/linear": 0.6, "b0/br1/linear1": 0.8}


def test_validating_a_deep_resnet_is_not_quadratic():
    """The correlated-sum check built, for every weighted sum, the set of every linear layer upstream
    of its inputs: quadratic in the depth (1.3 s for a ResNet of 400 blocks, 2,000 nodes; about two
    minutes for 4,000 blocks).  Walking back from the inputs only as far as needed is linear-ish: a
    20,000-node ResNet validates in well under a second (the bound leaves 50x slack)."""
    import time

    for g in (graphs.resnet((4000,), block="basic"), graphs.mlp(10_000)):  # with 4,000 sums; a plain chain
        assert g.number_of_nodes() > 20_000
        start = time.perf_counter()
        graphs.validate(g)
        assert time.perf_counter() - start < 30


def _reference_sum_check(g: nx.DiGraph) -> bool:
    """The correlated-sum rule as documented in graphs.validate, written out with sets of everything
    upstream (quadratic, fine for small graphs): True if every weighted sum's inputs pass."""
    def key(n):
        return ("weights", g.nodes[n]["weights"]) if g.nodes[n].get("weights") is not None else ("node", n)

    sources = {n for n in g if g.nodes[n]["kind"] == "linear"}
    frontier = {}
    for n in nx.topological_sort(g):
        preds = list(g.predecessors(n))
        if n in sources:
            frontier[n] = {key(n)}
        elif g.nodes[n]["kind"] in ("input", "activation") or not preds or any(frontier[p] is None for p in preds):
            frontier[n] = None
        else:
            frontier[n] = set().union(*(frontier[p] for p in preds))

    def upstream(n):
        return {key(m) for m in nx.ancestors(g, n) | {n} if m in sources}

    def independent(a, b):
        return frontier[a] is not None and not frontier[a] & upstream(b)

    return all(independent(a, b) or independent(b, a)
               for n in g if g.nodes[n]["kind"] == "weighted_sum"
               for i, a in enumerate(list(g.predecessors(n))) for b in list(g.predecessors(n))[i + 1:])


def test_the_linear_time_sum_check_agrees_with_the_set_based_rule_on_random_graphs():
    """The walk-back form of the correlated-sum check (which made validation linear-ish) must refuse
    exactly the graphs the set-based rule refuses: random DAGs of linear (some sharing a weight
    matrix), activation, pool and weighted_sum nodes."""
    import random

    rng = random.Random(1234)
    outcomes = {True: 0, False: 0}
    for trial in range(400):
        g = graphs.new_graph(preactivations="mixed")  # only the sum check is under test
        graphs.add_node(g, "x", "input")
        graphs.add_node(g, "l0", "linear", "x")
        names = ["l0"]
        for i in range(1, rng.randint(3, 14)):
            kind = rng.choice(["linear", "linear", "activation", "pool", "weighted_sum", "weighted_sum"])
            name = f"n{i}"
            if kind == "weighted_sum" and len(names) < 2:
                kind = "pool"
            if kind == "weighted_sum":
                a, b = rng.sample(names, 2)
                graphs.add_weighted_sum(g, name, {a: 0.6, b: 0.8})
            elif kind == "linear":
                extra = {"weights": rng.choice("uv")} if rng.random() < 0.3 else {}
                graphs.add_node(g, name, "linear", rng.choice(names), **extra)
            elif kind == "activation":
                linears = [n for n in names if g.nodes[n]["kind"] == "linear"]
                graphs.add_node(g, name, "activation", rng.choice(linears), activation="tanh")
            else:
                graphs.add_node(g, name, kind, rng.choice(names))
            names.append(name)
        # every node reaches the output: join the dead ends with a concat
        ends = [n for n in g if g.out_degree(n) == 0 and n != "x"]
        last = ends[0] if len(ends) == 1 else graphs.add_concat(g, "join", {n: 1 for n in ends})
        graphs.add_node(g, "y", "output", graphs.add_node(g, "head", "linear", last))
        expected = _reference_sum_check(g)
        outcomes[expected] += 1
        if expected:
            graphs.validate(g)
        else:
            with pytest.raises(InvalidGraphError, match="weighted_sum"):
                graphs.validate(g)
    assert min(outcomes.values()) > 50  # both outcomes exercised


@pytest.mark.parametrize("build, message", [
    (lambda: graphs.resnet(blocks={1: 2}), "blocks must be a sequence"),
    (lambda: graphs.resnet(blocks={2, 3}), "blocks must be a sequence"),
    (lambda: graphs.resnet(blocks=[1], block="basic", projection={True: 1}), "projection must be"),
    (lambda: graphs.multi_branch(branches={0: 1, 1: 2}), "branches must be a sequence"),
])
def test_a_dict_or_set_is_not_taken_for_a_sequence_of_counts(build, message):
    """resnet(blocks={1: 2}) (also `--graph resnet:blocks={1:2}`) built one stage of 1 block from the dict's
    keys without a word; a set has no stage order either."""
    with pytest.raises(InvalidGraphError, match=message):
        build()
