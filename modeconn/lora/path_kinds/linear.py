"""The straight line ``(1−t)θ_a + tθ_b``: no free point."""
from functools import partial

from . import PathKind
from .bernstein import bernstein

KIND = PathKind("linear", "the straight line A → B", partial(bernstein, degree=1))
