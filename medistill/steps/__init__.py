"""The pipeline's steps, each a function of typed inputs returning a typed artifact:
prepare (load, split, count) → plan → teachers → transfer → labels → student → export →
baselines → audit. ``medistill.pipeline`` runs them in order."""
