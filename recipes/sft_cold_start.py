"""SFT cold start of a judge: the package's SFT entry point (`stable_reinforce_trl/scripts/sft.py`) as a recipe.

```bash
accelerate launch --config_file recipes/accelerate_configs/zero3.yaml recipes/sft_cold_start.py \
    --config recipes/qwen2.5-vl-7b/sft.yaml
```

The same, from an installed package with no checkout: `stable-reinforce sft --config X.yaml` (one process) or
`accelerate launch -m stable_reinforce_trl.scripts.sft --config X.yaml`. Every key of the YAML is a field of
`SFTScriptArguments`, TRL's `SFTConfig` or `ModelConfig`; any can be overridden by flag.
"""

from stable_reinforce_trl.scripts.sft import main, make_parser

if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
