"""Thin Prefect tasks, one per stage: each wraps a unit body from editthinker_data.stages
and returns its small report. No image bytes cross a task boundary."""
