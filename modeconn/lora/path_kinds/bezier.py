"""Quadratic Bézier ``(1−t)²θ_a + 2t(1−t)θ_c + t²θ_b`` (Garipov et al., 2018): one free control point, from the midpoint."""
from functools import partial

from . import PathKind
from .bernstein import bernstein

KIND = PathKind("bezier", "quadratic Bézier curve A → C → B (one control point C)", partial(bernstein, degree=2), (0.5,))
