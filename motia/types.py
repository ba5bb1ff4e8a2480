"""``motia.types``: the same names as ``from motia import ...`` (Motia's module of that name)."""

from ._types import *  # noqa: F401,F403
from ._types import __all__  # noqa: F401
from ._triggers import state, stream  # noqa: F401  (motia.types exported these helpers too)
