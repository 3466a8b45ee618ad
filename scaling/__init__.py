"""The over-optimization laws: forms, fitting with intervals, points tables, criteria, the `fit` verb."""
