"""StableReinforce RL of a judge: the package's RL entry point (`stable_reinforce_trl/scripts/rl.py`) as a recipe.

```bash
accelerate launch --config_file recipes/accelerate_configs/zero3.yaml recipes/stable_reinforce.py \
    --config recipes/qwen2.5-vl-7b/stable_reinforce.yaml --referee_base_url http://referee-host:8001/v1
```

The same, from an installed package with no checkout: `stable-reinforce rl --config X.yaml` (one process) or
`accelerate launch -m stable_reinforce_trl.scripts.rl --config X.yaml`. Every key of the YAML is a field of
`StableReinforceScriptArguments`, `StableReinforceConfig` or TRL's `ModelConfig`; any can be overridden by flag.
"""

import sys

from stable_reinforce_trl.cli import exit_code
from stable_reinforce_trl.scripts.rl import cli_main

if __name__ == "__main__":
    sys.exit(exit_code(cli_main))  # a user's mistake (a wrong path, an unknown field): one line, exit 2
