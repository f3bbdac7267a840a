"""``python -m motia``: the ``motia`` command line."""

from motia.cli import main

main(prog_name="motia")
