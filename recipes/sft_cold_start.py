"""SFT cold start of a judge: the package's SFT entry point (`stable_reinforce_trl/scripts/sft.py`) as a recipe.

```bash
accelerate launch --config_file recipes/accelerate_configs/zero3.yaml recipes/sft_cold_start.py \
    --config recipes/qwen2.5-vl-7b/sft.yaml
```

The same, from an installed package with no checkout: `stable-reinforce sft --config X.yaml` (one process) or
`accelerate launch -m stable_reinforce_trl.scripts.sft --config X.yaml`. Every key of the YAML is a field of
`SFTScriptArguments`, TRL's `SFTConfig` or `ModelConfig`; any can be overridden by flag.
"""

import sys

from stable_reinforce_trl.cli import exit_code
from stable_reinforce_trl.scripts.sft import cli_main

if __name__ == "__main__":
    sys.exit(exit_code(cli_main))  # a user's mistake (a wrong path, an unknown field): one line, exit 2
