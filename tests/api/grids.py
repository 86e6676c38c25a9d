"""Tick and lot sizes the integer fast paths of formatting and parsing are
checked against (odd steps, trailing zeros, exponent spellings included)."""

STEPS = [
    "0.01",
    "0.05",
    "0.25",
    "0.5",
    "1",
    "5",
    "10",
    "1E+1",
    "0.010",
    "0.00001",
    "0.0001",
    "0.001",
    "0.125",
]
