"""The one error type valuate raises for bad input, and the one warning type for results
that need a second look.

Every message says what is wrong and how to fix it, so that a user never has to read a JAX
stack trace to find out that a column held text.
"""


class ValuationError(ValueError):
    """Bad input to valuate: the message names the problem and the fix."""


class ValuationWarning(UserWarning):
    """A result that computed but may mislead (e.g. most values exactly 0); the message says
    why and what to try."""
