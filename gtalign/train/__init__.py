"""Training: thin layers over TRL (SFT warm start, welfare-reward GRPO), tracked in MLflow and resumable.

`gtalign.train.sft` and `gtalign.train.rl` hold the trainers; `gtalign.train.stages` the pipeline stages that the
CLI (`gtalign train ...`), `dvc repro` and the Dagster assets call; `gtalign.train.reward_fn` the one adapter between
TRL and `gtalign.reward.score_batch`. Imports are lazy: `import gtalign.train` does not import torch or TRL.
"""
