"""What fitting a context computes: its whitening (whitening.py), its EM mixtures (em.py) and the stacking
weights of its density estimates (stacking.py)."""
