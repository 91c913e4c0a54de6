"""`gtalign`: the command line, one module per command group (the console script is `gtalign.cli:app`).

Each command parses its options, calls one library function (the same one the DVC stage and the Dagster asset call)
and prints a summary; shared options live in `options`, the error exit and params loading in `support`, the rich
tables in `render`. `python -m gtalign.cli ...` (e.g. under `accelerate launch`) runs the same app.
"""

from __future__ import annotations

import typer

from gtalign.cli.data import data_app
from gtalign.cli.demo import demo
from gtalign.cli.eval import eval_app
from gtalign.cli.registry import registry_app
from gtalign.cli.reward import reward_app
from gtalign.cli.serve import serve
from gtalign.cli.steer import steer_app
from gtalign.cli.teacher_eval import teacher_eval
from gtalign.cli.train import train_app

app = typer.Typer(help="GTAlign: game-theoretic alignment of LLM assistants for social welfare.", no_args_is_help=True)

# `--help` lists the top-level commands, then the groups, each in the order added here.
app.command("serve")(serve)
app.command("teacher-eval")(teacher_eval)
app.command("demo")(demo)
app.add_typer(reward_app, name="reward")
app.add_typer(data_app, name="data")
app.add_typer(eval_app, name="eval")
app.add_typer(registry_app, name="registry")
app.add_typer(steer_app, name="steer")
app.add_typer(train_app, name="train")
