"""The commands: each module parses its arguments and prints its results, nothing else.

They sit above the stages (which never import them) and call the pipeline or a stage
with targets resolved once (provision9p.target). The stages are imported where a
command runs, so `validate` or `--help` does not load paramiko, pytest and testinfra.
"""
