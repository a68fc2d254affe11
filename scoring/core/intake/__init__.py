"""Intake: what a task and a patch must be before anything runs (spec, diff, archive and configuration checks)."""
