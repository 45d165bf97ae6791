"""Discovery: Pine-expressible rule strategies from the models, judged by one ledgered funnel.

Submodules (import them directly; nothing heavy is imported here):
``gates`` (PBO, SPA/Reality Check, effective trials, DSR/PSR), ``ledger`` (the persisted
trial ledger), ``holdout`` (the final holdout, evaluated once per candidate).
"""
