"""Small shared pieces for the trainer tests: a judge dataset with real images, a toy reward."""

from datasets import Dataset
from PIL import Image

from stable_reinforce_trl.prompts import judge_messages, parse_verdict

COLOURS = ["red", "green", "blue", "yellow"]


def colour_judge_dataset(n: int = 8) -> Dataset:
    rows = []
    for i in range(n):
        colour, other = COLOURS[i % 4], COLOURS[(i + 1) % 4]
        right, wrong = f"The image is {colour}.", f"The image is {other}."
        label = "1" if i % 2 == 0 else "2"
        a1, a2 = (right, wrong) if label == "1" else (wrong, right)
        rows.append(
            {
                "prompt": judge_messages("What colour is the image?", a1, a2),
                "images": [Image.new("RGB", (56, 56), colour)],
                "label": label,
            }
        )
    return Dataset.from_list(rows)


def verdict_reward(completions, label, **kwargs):
    """1 when the completion's verdict matches the label, else 0; length breaks ties so rewards vary."""
    out = []
    for completion, lab in zip(completions, label):
        text = completion[0]["content"] if isinstance(completion, list) else completion
        out.append(float(str(parse_verdict(text)) == lab) + 0.01 * (len(text) % 7))
    return out


def one_order_dataset(n: int) -> Dataset:
    """Judge rows whose better response is always first: the skew that teaches a position prior."""
    rows = []
    for i in range(n):
        colour = ("red", "blue")[i % 2]
        rows.append({"prompt": judge_messages(f"Colour {i}?", f"It is {colour}.", "It is green."),
                     "images": [Image.new("RGB", (56, 56), colour)], "label": "1"})  # fmt: skip
    return Dataset.from_list(rows)


def red_reading_judge(prompts, trainer):
    """TRL `rollout_func`: a judge that reads the pairs about red (names the red answer, in either order) and
    names Response 1 on every other pair."""
    tokenizer = trainer.processing_class.tokenizer
    prompt_ids, _, _ = trainer._tokenize_prompts(prompts)
    completion_ids = []
    for prompt in prompts:
        text = prompt[-1]["content"][-1]["text"]
        verdict = 1 + (text.index("It is red.") > text.index("It is green.")) if "It is red." in text else 1
        written = f"<think>Seen.</think><answer>{verdict}</answer>"
        completion_ids.append(tokenizer.encode(written, add_special_tokens=False) + [tokenizer.eos_token_id])
    return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}


def zero_reward(completions, **columns):
    return [0.0] * len(completions)
