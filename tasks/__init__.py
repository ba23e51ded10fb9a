"""Thin Prefect tasks: a build's units run as Prefect tasks (retries, states and names in
the UI), launched by the executor's loop; the Prefect artifacts a build leaves. No image
bytes cross a task boundary: a unit's task returns its small report."""
