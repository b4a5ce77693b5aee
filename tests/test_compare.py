"""The tie-aware comparison catches real differences and excuses only samples with a k-WTA near-tie."""

from __future__ import annotations

import numpy as np

from sparsecc.compiler.compare import compare_outputs, find_near_ties
from sparsecc.compiler.ir import parse_module

KWTA = parse_module("""module @m {
  func @main(%x: tensor<?x6xf32>) -> ("y": tensor<?x6xf32, #kwta<k=2, over=[1]>>) {
    %y = sparse.kwta(%x) {k=2, over=[1]} : tensor<?x6xf32, #kwta<k=2, over=[1]>>
    return %y
  }
}
""")


def test_identical_outputs_match() -> None:
    out = [np.arange(12, dtype=np.float32).reshape(2, 6)]
    result = compare_outputs(out, out)
    assert result.ok and result.max_abs_error == 0.0 and not result.mismatched


def test_a_real_difference_is_a_mismatch() -> None:
    expected = [np.ones((3, 4), np.float32)]
    actual = [expected[0].copy()]
    actual[0][1, 2] += 1e-2
    result = compare_outputs(actual, expected)
    assert not result.ok and result.unexplained == [1]
    assert "MISMATCH" in result.summary()


def test_difference_at_a_near_tie_is_excused_and_reported() -> None:
    x = np.array([[5.0, 3.0, 3.0 - 1e-7, 1.0, 0.0, -1.0],   # k=2: 2nd and 3rd differ by 1e-7: near-tie
                  [5.0, 3.0, 1.0, 0.5, 0.0, -1.0]], np.float32)
    near = find_near_ties(KWTA, {"x": x})
    assert set(near.by_sample) == {0}
    other_winner = near.outputs[0].copy()
    other_winner[0, 1], other_winner[0, 2] = 0.0, x[0, 2]  # another implementation picked the tied unit
    result = compare_outputs([other_winner], near.outputs, near)
    assert result.ok and result.excused == {0: ["y"]} and result.mismatched == [0]
    assert "differ at near-ties" in result.summary()


def test_difference_without_a_near_tie_is_not_excused() -> None:
    x = np.array([[5.0, 3.0, 1.0, 0.5, 0.0, -1.0]], np.float32)
    near = find_near_ties(KWTA, {"x": x})
    wrong = near.outputs[0].copy()
    wrong[0, 2] = 1.0  # a third winner where there was no tie
    result = compare_outputs([wrong], near.outputs, near)
    assert not result.ok and result.unexplained == [0]


def test_tolerance_scales_with_the_sample_not_each_element() -> None:
    expected = [np.array([[1.5, 0.02]], np.float32)]
    close = [np.array([[1.5, 0.02002]], np.float32)]   # 2e-5 off on a small element of a 1.5-sized row
    far = [np.array([[1.5, 0.0205]], np.float32)]      # 5e-4 off: beyond rtol * 1.5
    assert compare_outputs(close, expected).ok
    assert not compare_outputs(far, expected).ok


def test_nan_where_nan_is_expected_and_equal_infinities_match() -> None:
    expected = np.array([[np.nan, 1.0, np.inf], [-np.inf, np.nan, np.nan]], np.float32)
    result = compare_outputs([expected.copy()], [expected])
    assert result.ok and result.max_abs_error == 0.0, result.summary()
    for position, value in (((0, 0), 1.0), ((0, 1), np.nan), ((0, 2), -np.inf), ((1, 0), 0.0)):
        actual = expected.copy()
        actual[position] = value
        result = compare_outputs([actual], [expected])
        assert not result.ok and result.unexplained == [position[0]], (position, value)


def test_near_ties_excuse_a_bounded_number_of_samples() -> None:
    x = np.tile(np.array([[5.0, 3.0, 3.0 - 1e-7, 1.0, 0.0, -1.0]], np.float32), (8, 1))  # a near-tie in each
    near = find_near_ties(KWTA, {"x": x})
    assert len(near.by_sample) == 8
    other = near.outputs[0].copy()
    other[:, 1], other[:, 2] = 0.0, x[:, 2]
    two = near.outputs[0].copy()
    two[:2] = other[:2]
    within = compare_outputs([two], near.outputs, near)  # 2 of 8 differ: within the budget of 8 // 4
    assert within.ok and within.tie_budget == 2 and len(within.excused) == 2
    beyond = compare_outputs([other], near.outputs, near)  # every sample differs at its near-tie
    assert not beyond.ok and beyond.over_budget and not beyond.unexplained
    assert "TOO MANY near-tie differences (8 > budget 2)" in beyond.summary()
    assert compare_outputs([other], near.outputs, near, max_excused=8).ok
