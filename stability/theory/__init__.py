"""Theory floor (imports ``stability.core`` only): dropout stability and Algorithm 1, the paths of Kuditipudi
et al. 2019 (Lemmas 1, 2, 4; Theorems 1-3), noise stability (Definitions 2-4), permutation alignment and the
Theorem 4 construction."""
