"""Cubic Bézier over ``(θ_a, θ_c1, θ_c2, θ_b)``: two free control points, started at 1/3 and 2/3 of the line."""
from functools import partial

from . import PathKind
from .bernstein import bernstein

KIND = PathKind("cubic", "cubic Bézier curve A → C1 → C2 → B (two control points)", partial(bernstein, degree=3),
                (1 / 3, 2 / 3))
