"""Core layer: the error type for bad input, token ids, config handling, the run store and checkpoints.

Imports nothing else of the project; every other package builds on it.
"""
