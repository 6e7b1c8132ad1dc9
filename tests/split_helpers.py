"""Data splits shared by the tests (a module of its own: `conftest` is not importable
unambiguously when several folders have one)."""


def standardized_split(data, seed=0, fractions=(0.7, 0.3)):
    """Stratified split, standardised with the first split's statistics."""
    parts = data.split(*fractions, seed=seed)
    first, (mean, std) = parts[0].standardize()
    return (first,) + tuple(p.standardize(mean, std)[0] for p in parts[1:])
