"""Stages (passes): typed options, `build` writes an artifact, `validate` checks it."""
