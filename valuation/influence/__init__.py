"""Influence estimates: how much each training sample moves the validation loss, from gradients.

Data flow: `grads` (per-sample gradients over a flat parameter vector) -> `hvp` (Hessian
products, Lanczos) -> `solvers` (inverse-HVPs) -> `scores` (influence functions and the
`influence(...)` entry point); `tracin` and `projection` (TRAK-style) share `attribution`'s
blocked train x validation scoring. Higher value = more helpful, as everywhere in valuate.
"""

from .grads import flatten as flatten
from .grads import per_sample_grads as per_sample_grads
from .hvp import hessian as hessian
from .hvp import hvp as hvp
from .hvp import lanczos as lanczos
from .projection import trak as trak
from .scores import influence as influence
from .scores import influence_function as influence_function
from .solvers import Curvature as Curvature
from .solvers import cg as cg
from .solvers import dense as dense
from .solvers import lissa as lissa
from .solvers import lowrank as lowrank
from .tracin import tracin as tracin
