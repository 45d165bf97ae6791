"""aio: AI-Indicator-Optimizer.

Ticks -> bars -> indicators -> charts/features/labels -> model -> pattern library
-> strategy rules -> walk-forward Optuna search -> sized backtest -> Pine v6 + report.
"""

__version__ = "0.1.0"
