"""analysis.report.format_value / format_measured on every numeric scalar type (found by a report that printed
a float32 median as 0.33333334 and a torch scalar as tensor(0.3333))."""

import math
import random
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import sympy
import torch

from analysis.records import Claim, Job, Record, RecordStore, to_jsonable
from analysis.report import claim_rows, format_measured, format_value, markdown_table, summary_table


def _python(x: float, digits: int) -> str:
    """The reference: Python's own formatting of the float, in format_value's layout."""
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}"


@pytest.mark.parametrize("x", [1 / 3, -2 / 3, 0.1, 123.456789, 99999.4, 1e-7 / 3, 12345678.9, 0.0, 1e-300])
def test_numpy_and_torch_scalars_print_like_the_python_float_of_their_value(x):
    """np.float32(1/3) printed as 0.33333334 and torch.tensor(1/3) as tensor(0.3333): both unrounded (str()),
    while a Python float printed 0.3333.  Every type up to float64 holds its value exactly as a Python float,
    so at 4 digits (within every type's precision but float16's and bfloat16's) the texts must be Python's."""
    for value in (np.float32(x), np.float64(x), np.array(x), np.array(np.float32(x)),
                  torch.tensor(x), torch.tensor(x, dtype=torch.float64)):
        assert format_value(value) == _python(float(value), 4), type(value)
        assert format_value(value, 3) == _python(float(value), 3), type(value)


def test_digits_are_capped_at_what_the_type_holds():
    """float32 holds 6 decimal digits (FLT_DIG = floor(23 log10 2)), float16 3, bfloat16 2, float64 15: asking for
    more prints no digit the type does not hold.  Reference: Python's formatting of the same value at the cap."""
    third = 1 / 3
    cases = [(np.float32(third), 6), (torch.tensor(third), 6), (np.float16(third), 3),
             (torch.tensor(third, dtype=torch.float16), 3), (torch.tensor(third, dtype=torch.bfloat16), 2),
             (np.float64(third), 15), (third, 15)]
    for value, held in cases:
        if isinstance(value, np.floating):  # the count numpy itself gives
            assert held == np.finfo(value.dtype).precision
        assert format_value(value, 20) == _python(float(value), held), type(value)
        assert format_value(value, 4) == _python(float(value), min(4, held)), type(value)
    assert format_value(np.float32(third), 12) == "0.333333"
    assert format_value(torch.tensor(third, dtype=torch.bfloat16)) == "0.33"


def test_exact_and_arbitrary_precision_numbers_are_rounded_like_floats():
    """mpf, long double, Fraction and SymPy numbers printed their str() (mpf('1/3') as 0.333333333333333); now
    they are rounded from their exact value.  Reference: Python's float formatting of random floats, which the
    exact (Fraction) path must reproduce digit for digit, ties and carries (9.9995 -> 10) included."""
    rng = random.Random(0)
    values = [rng.uniform(-1, 1) * 10 ** rng.randint(-12, 12) for _ in range(300)]
    values += [0.5, 2.5, 9.9995, 0.00099995, 99999.5, 1e5, 1e-3, 0.0, 0.125, 1.0]
    with mpmath.workdps(40):
        for x in values:
            for digits in (1, 2, 4, 7, 15):
                want = _python(x, digits)
                assert format_value(Fraction(x), digits) == want, (x, digits)
                assert format_value(mpmath.mpf(x), digits) == want, (x, digits)
    assert format_value(sympy.Rational(2, 3)) == "0.6667" and format_value(sympy.Float(1) / 3) == "0.3333"
    assert format_value(np.longdouble(1) / 3) == "0.3333"
    # beyond float64's range, where no float reference exists: 10**400/3 = 3.333...e399
    assert format_value(mpmath.mpf(10) ** 400 / 3) == "3.333e+399"
    # an mpf holds mp.prec bits: at the default 53 bits, 15 digits like float64
    assert format_value(mpmath.mpf(1) / 3, 20) == "0.333333333333333"


def test_integers_booleans_and_non_finite_values_of_every_type():
    for value in (np.int64(123456), np.int8(-5), torch.tensor(123456), np.array(7), sympy.Integer(10) ** 30):
        assert format_value(value) == str(int(value))
    for value in (np.bool_(True), torch.tensor(True), np.array(False)):
        assert format_value(value) == str(bool(value))
    for value in (np.float32("nan"), torch.tensor(float("-inf")), mpmath.inf, np.float16("inf")):
        assert format_value(value) == str(float(value))


def test_complex_numbers_print_each_part_rounded():
    for value in (1 / 3 - 2j, np.complex64(1 / 3 - 2j), torch.tensor(1 / 3 - 2j), mpmath.mpc(1, -6) / 3):
        re, im = complex(value).real, complex(value).imag
        assert format_value(value) == f"({_python(re, 4)}-{_python(-im, 4)}j)", type(value)
    assert format_value(np.complex64(1 / 3 - 2j), 12) == "(0.333333-2j)"  # parts are float32: 6 digits


def test_arrays_and_tensors_print_elementwise_like_lists():
    """A tensor printed as tensor([0.1000, 0.2000]) and an array as [0.1 0.2], unlike a list of the same
    numbers; markdown_table cells and the report's [a, b, ...] lists must read the same for all three."""
    xs = [1 / 3, 2 / 3, 0.1]
    want = format_value(xs)
    assert want == "[0.3333, 0.6667, 0.1]"
    assert format_value(np.array(xs)) == want == format_value(torch.tensor(xs, dtype=torch.float64))
    assert format_value(np.arange(10.0)) == "[0, 1, 2, 3, 4, 5, ...]"
    assert format_value(np.ones((2, 2), dtype=np.float32) / 3) == "[[0.3333, 0.3333], [0.3333, 0.3333]]"
    assert "| 0.3333 |" in markdown_table(("median",), [(np.float32(1 / 3),)])


@pytest.mark.parametrize("digits", [0, -1, 2.5, True, "4"])
def test_bad_digits_is_a_clear_error(digits):
    with pytest.raises(ValueError, match="integer >= 1"):
        format_value(0.1, digits)


def test_format_measured_tells_a_float32_from_a_bound_without_float64_noise():
    """np.float32(0.04999999) against "< 0.05" printed str() (0.04999999, by luck of numpy's repr), and a torch
    float32 scalar printed tensor(0.0500): a bound it is not.  Now each prints the shortest text that reads back
    as that float32 (checked: parsing it gives the same float32), never the 0.05 of the bound, nor the digits of
    its float64 expansion 0.049999990314245224."""
    for value in (np.float32(0.04999999), torch.tensor(0.04999999), np.array(np.float32(0.04999999))):
        text = format_measured(value, "< 0.05")
        assert float(text) != 0.05 and np.float32(text) == np.float32(0.04999999), text
        assert len(text.replace("0.0", "", 1)) <= 9  # float32 needs at most 9 significant digits
    assert format_measured(np.float32(0.1), "< 0.05") == "0.1"
    # float64 as before: the shortest text that is not the bound
    assert format_measured(0.049996, "< 0.05") == "0.049996"
    assert float(format_measured(0.049999999999999996, "< 0.05")) == 0.049999999999999996
    # an mpf at 40 digits carries them: 0.05 - 1e-30 is not printed as 0.05
    with mpmath.workdps(40):
        text = format_measured(mpmath.mpf("0.05") - mpmath.mpf(10) ** -30, "< 0.05")
        assert mpmath.mpf(text) == mpmath.mpf("0.05") - mpmath.mpf(10) ** -30
    assert format_measured(Fraction(5 * 10**20 - 1, 10**22), "< 0.05") == "499999999999999999999/10000000000000000000000"


@pytest.mark.parametrize("value, tolerance", [
    (np.float32(0.05), "< 0.05"), (np.float32(0.04999999), "< 0.05"), (torch.tensor(0.05), "< 0.05"),
    (np.float16(0.1), "<= 0.1"), (np.array([np.float32(0.05)])[0], "== 0.05")])
def test_a_float32_measured_value_reaches_the_report_as_its_shortest_decimal(tmp_path, value, tolerance):
    """to_jsonable wrote a float32 0.05 as its float64 expansion 0.05000000074505806, so the summary table, read
    from the records, printed 0.050000001 against "< 0.05" (float16's 0.1: 0.09998).  Reference: numpy's shortest
    round-trip decimal of the value in its own type."""
    typed = value.numpy()[()] if isinstance(value, torch.Tensor) else value  # an np.float32
    expected = np.format_float_positional(typed, unique=True)
    assert format_measured(value, tolerance) == expected  # the report on the value itself, as the reference has it
    store = RecordStore(tmp_path)   # through the JSON file, as a report reads its records
    store.append(Record(Job("demo", {}), "ok", {"median": value}, (Claim("median", value, tolerance, True),)))
    (record,) = store.records()
    (row,) = claim_rows([record], [])
    assert format_measured(row["measured"], tolerance) == expected
    assert f"  {expected}  " in summary_table([row])
    # nothing lost: the decimal read back in the value's own type is the same number
    assert type(typed)(record.result["median"]) == typed and type(typed)(record.claims[0].measured) == typed
    assert to_jsonable({"m": value}) == {"m": float(expected)}


def test_narrow_float_arrays_and_tensors_become_their_shortest_decimals():
    """Arrays and tensors element by element, NaN/inf as the strings to_jsonable writes for them; bfloat16 has no
    numpy type: each entry is the shortest decimal torch reads back as it (0.1 for 0.10009765625)."""
    values = np.array([[0.05, 1 / 3], [np.nan, -np.inf]], dtype=np.float32)
    assert to_jsonable(values) == [[0.05, 0.33333334], ["nan", "-inf"]]
    assert to_jsonable(torch.from_numpy(values)) == [[0.05, 0.33333334], ["nan", "-inf"]]
    bf16 = torch.tensor([0.1, 1 / 3, 3e38, -0.0, math.inf], dtype=torch.bfloat16)
    out = to_jsonable(bf16)
    assert out == [0.1, 0.334, 3e38, -0.0, "inf"]  # 1/3 is 0.333984375 in bfloat16; 0.333 reads back as 0.33203125
    assert torch.equal(torch.tensor(out[:4], dtype=torch.float64).to(torch.bfloat16), bf16[:4])
    # float64 keeps every digit
    assert to_jsonable(np.array([0.1 + 2**-55])) == [0.1 + 2**-55] and to_jsonable(torch.tensor(1 / 3, dtype=torch.float64)) == 1 / 3
