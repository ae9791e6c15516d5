"""Pure math on numpy/pandas/scipy: law fit, alignment, stages, collapse, forecast, backtest.

Nothing here touches the database or the UI; every result is a frozen dataclass carrying its evidence.
"""
