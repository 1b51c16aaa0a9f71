"""Which held-out pairs a demo model gets wrong: greedy, both orders, grouped by the two answers' values;
their verdicts in the two orders (one verdict for both orders is a default, not a reading); one wrong
pair's traces; and the cosine between the output embeddings of each pair of values (the tiny model
ties input and output embeddings). Two values whose vectors coincide look alike wherever the model
reads or writes them, so it cannot copy one of them from a response.

    python -m benchmarks.demo_failures outputs/demo/sft outputs/demo/rl

Uses the demo's own held-out pairs (`make_synthetic_pairs(plan.eval_pairs, seed + 1000, difficulty)`)
and writes `benchmarks/results/demo_failures.json`.
"""

from __future__ import annotations

import argparse
from collections import Counter

import torch

from .common import write_result


def failures(model_dir: str, seed: int = 0, difficulty: str | None = None) -> dict:
    from stable_reinforce_trl.data.synthetic import make_synthetic_pairs
    from stable_reinforce_trl.demo import DemoPlan
    from stable_reinforce_trl.judge import Judge, JudgeRequest
    from stable_reinforce_trl.prompts import parse_verdict

    plan = DemoPlan()
    pairs = make_synthetic_pairs(plan.eval_pairs, seed=seed + 1000, difficulty=difficulty or plan.difficulty)
    judge = Judge.from_pretrained(model_dir, batch_size=32, max_new_tokens=plan.max_completion_length)
    traces = {label: [texts[0] for texts in judge.generate([JudgeRequest.from_pair(p, label) for p in pairs], k=1)]
              for label in ("1", "2")}  # fmt: skip
    # "1/1": verdict 1 with the right answer shown first and verdict 1 with it shown second
    verdicts = [f"{parse_verdict(traces['1'][i])}/{parse_verdict(traces['2'][i])}" for i in range(len(pairs))]
    wrong = [v != "1/2" for v in verdicts]

    def values(pair) -> str:  # "blue/green": the last word of each answer, sorted
        return "/".join(sorted(r.split()[-1].rstrip(".") for r in (pair.chosen, pair.rejected)))

    first_wrong = next((i for i, w in enumerate(wrong) if w), None)
    return {
        "pairs": len(pairs),
        "wrong": sum(wrong),
        "wrong_by_values": dict(Counter(values(p) for p, w in zip(pairs, wrong) if w)),
        "all_by_values": dict(Counter(values(p) for p in pairs)),
        # One pattern for every wrong pair ("1/1" or "2/2") is a default, the same whatever the order.
        "wrong_verdicts": dict(Counter(v for v, w in zip(verdicts, wrong) if w)),
        "example_wrong": None if first_wrong is None else {
            "chosen": pairs[first_wrong].chosen, "rejected": pairs[first_wrong].rejected,
            "chosen_first": traces["1"][first_wrong], "chosen_second": traces["2"][first_wrong],
        },
        "embedding_cosine_by_values": embedding_cosines(judge, sorted({values(p) for p in pairs})),
    }


def value_token(tokenizer, word: str) -> int:
    """The token that stands for a value: the first of " word" (" blue"; " red" is " re" + "d")."""
    return tokenizer(" " + word, add_special_tokens=False).input_ids[0]


def embedding_cosines(judge, value_pairs: list[str]) -> dict[str, float]:
    """{"blue/green": cos(e_blue, e_green), ...} over the output embeddings of each value's `value_token`."""
    weights = judge.backend.model.get_output_embeddings().weight.detach().float()

    def vector(word: str) -> torch.Tensor:
        return weights[value_token(judge.backend.tokenizer, word)]

    cosines = {}
    for pair in value_pairs:
        a, b = pair.split("/")
        cosines[pair] = round(torch.nn.functional.cosine_similarity(vector(a), vector(b), dim=0).item(), 3)
    return cosines


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dirs", nargs="+")
    parser.add_argument("--seed", type=int, default=0, help="the demo's --seed")
    parser.add_argument("--difficulty", help="the demo's `--set difficulty=...` (default: the plan's)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    result = {"models": {d: failures(d, args.seed, args.difficulty) for d in args.model_dirs}}
    path = write_result("demo_failures", result)
    for d, r in result["models"].items():
        print(f"{d}: {r['wrong']}/{r['pairs']} pairs wrong in some order; by answer values {r['wrong_by_values']}; "
              f"their verdicts (right answer first/second) {r['wrong_verdicts']}; "
              f"output-embedding cosine {r['embedding_cosine_by_values']}")
        if r["example_wrong"]:
            print(f"  e.g. {r['example_wrong']}")
    print(f"-> {path}")
    return result


if __name__ == "__main__":
    main()
