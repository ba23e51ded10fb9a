"""`python -m editthinker_data.cli`: the same as the editthinker-data command."""

from editthinker_data.cli import main

main()
