"""Qt widgets around VTK (docstring completed below)."""
