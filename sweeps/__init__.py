"""Sweep grids: TOML specs expanded to study configs (spec), jobs (worker), launchers and resume (launch), CLI."""
