"""`python -m gtalign.cli ...`: the `gtalign` command where a module is wanted (`accelerate launch -m`)."""

from gtalign.cli import app

app()
