"""How the classical estimates are combined into one: the stacked density (stacked.py, the shipped
estimate) or the per-query gated blend with the transformer as its residual (gated.py)."""
