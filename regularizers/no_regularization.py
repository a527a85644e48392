"""No regularization: the paper's unregularized baseline (every hook is the default)."""
from regularizers.base import Regularizer


class NoRegularization(Regularizer):
    name = "none"
