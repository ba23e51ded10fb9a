"""Thin Prefect tasks, one per stage: each wraps a unit body from editthinker_data.units
and returns its small report. No image bytes cross a task boundary."""
