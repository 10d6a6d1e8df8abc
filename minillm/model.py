"""Old import path of the model (`from minillm.model import Model, ModelArgs`): the code lives
in minillm/models/ now; this module re-exports it."""

from minillm.models import *  # noqa: F403
from minillm.models import __all__  # noqa: F401
