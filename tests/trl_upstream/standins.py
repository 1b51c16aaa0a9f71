"""Offline stand-ins for the hub repos TRL's GRPO tests load from `trl-internal-testing/`.

Each model is random-init from a config shaped like TRL's `scripts/generate_tiny_models/` ones (same architecture,
same tiny sizes, bf16 like the published ones), with a tokenizer built here and the chat template TRL ships
(`trl/chat_templates/*.jinja`, what TRL's response-schema detection compares against). Datasets follow TRL's
`scripts/generate_zen*_dataset.py` (the configs the GRPO tests read), images seeded.

Vocabulary: the published Qwen tiny models carry Qwen's full 152k vocabulary, and on a CPU the log-softmax over
it is most of every step (a TRL test takes ~40 s; the file, an hour). So the stand-ins have a 1k byte-level BPE
(Qwen's special tokens included), and a full-layout Qwen tokenizer (byte tokens at 0-255, the tokens TRL's tests
decode at their real ids, special tokens from 151643) goes only where a test needs it: the tool-calling model
(`tiny-Qwen3MoeForCausalLM`), and under `full-vocab/` the Qwen2 pair for the tests in `FULL_VOCAB_TESTS` (they
hard-code Qwen ids, or rely on the eos being one token in 152k).

`build_all(root)` writes `root/<name>` for every stand-in; the runner links `root` as `./trl-internal-testing`
in the directory pytest runs from, so `from_pretrained("trl-internal-testing/tiny-...")` and
`load_dataset("trl-internal-testing/zen", ...)` resolve to these folders with the test file left as it is.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import torch

QWEN_REGULAR_VOCAB = 151643  # ids below this are byte-level BPE tokens in Qwen2.5/Qwen3
QWEN25_SPECIAL = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>",
]  # fmt: skip
QWEN25_ADDED = ["<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
                "<|repo_name|>", "<|file_sep|>"]  # fmt: skip
QWEN3_ADDED = QWEN25_ADDED + ["<tool_response>", "</tool_response>", "<think>", "</think>"]
# Real Qwen2.5 ids of the multi-byte tokens TRL's tool-calling test generates (read off the strings its comments give).
QWEN_PINNED = {
    330: 'Ġ"', 497: '",', 606: "name", 788: '":', 894: "Ġany", 944: "'t", 1414: "Ġknow", 1513: "Ġdon", 4913: '{"',
    5212: 'Ġ{"', 5392: "Ġtool", 7692: "async", 11248: "}}Ċ", 16370: "arguments", 17453: "Done", 22785: "_tool",
    64648: "multiply", 93054: "_multiply",
}  # fmt: skip

ZEN_PROMPTS = [
    "Beautiful is better than", "Explicit is", "Simple is better", "Complex", "Flat is better than", "Sparse is better",
    "Readability", "Special cases aren't special", "Although practicality beats", "Errors should never",
    "Unless explicitly", "In the face of ambiguity, refuse", "There should be one-- and preferably",
    "Although that way may not be obvious at first unless you're", "Now is", "Although never is often",
    "If the implementation is hard to explain,", "If the implementation is easy", "Namespaces are one honking great",
]  # fmt: skip
ZEN_QUESTIONS = [
    "What is better than ugly?", "What is better than implicit?", "What is better than complex?",
    "What is better than complicated?", "What is better than nested?", "What is better than dense?", "What counts?",
    "Are special cases enough to break the rules?", "What beats purity?", "What should never pass silently?",
    "When can errors pass silently?", "What should you do in the face of ambiguity?",
    "How many ways should there be to do it?", "For whom may the way not be obvious at first?",
    "What is better than never?", "Is never better than *right* now?",
    "What does it mean if the implementation is hard to explain?",
    "What does it mean if the implementation is easy to explain?", "Any great ideas?",
]  # fmt: skip
# zen-multi-image's prompts: where the images sit in each question (TRL's generate_zen_multi_image_dataset.py).
MULTI_IMAGE_LAYOUT = ["it", "ti", "iti", "iit", "it", "ti", "iti", "t", "tii", "iiti", "it", "ti", "itii", "t", "ti",
                      "tit", "it", "ti", "t"]  # fmt: skip


def _template(name: str) -> str:
    return (resources.files("trl") / "chat_templates" / f"{name}.jinja").read_text()


def _byte_alphabet() -> list[str]:
    """GPT-2's byte-to-unicode table in its vocabulary order: printable bytes first, then the rest (Qwen keeps it)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]


def _fast_tokenizer(vocab: dict[str, int], merges: list, special: list[str], added: list[str], **kwargs):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])  # fmt: skip
    tok.decoder = decoders.ByteLevel()
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in special])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in added])
    return PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)


def _learned_bpe(vocab_size: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE trained on the zen and chat text: (token -> id, merges)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    probe = Tokenizer(models.BPE())
    probe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=_byte_alphabet(), show_progress=False)
    probe.train_from_iterator(TRAINING_TEXT, trainer=trainer)
    state = json.loads(probe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["merges"]]
    return state["vocab"], merges


def qwen_tokenizer(added: list[str], chat_template: str):
    """A tokenizer with Qwen's id layout: every id a real Qwen tokenizer has, the ones tests decode with their text.

    Byte tokens sit at Qwen's ids 0-255 and `QWEN_PINNED` at theirs; a small learned BPE fills free ids (so text
    encodes to few tokens, as with Qwen's own merges), and fillers the rest; they decode to plain text (" w1234")."""
    tokens = dict(enumerate(_byte_alphabet()))
    tokens.update(QWEN_PINNED)
    learned, merges = _learned_bpe(1024)
    free = (i for i in range(256, QWEN_REGULAR_VOCAB) if i not in QWEN_PINNED)
    known = set(tokens.values())
    for token in sorted(learned, key=learned.get):
        if token not in known:
            tokens[next(free)] = token
            known.add(token)
    vocab = {tokens.get(i, f"Ġw{i}"): i for i in range(QWEN_REGULAR_VOCAB)}
    assert len(vocab) == QWEN_REGULAR_VOCAB
    return _fast_tokenizer(
        vocab, merges, QWEN25_SPECIAL, added, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        chat_template=chat_template, model_max_length=131072, clean_up_tokenization_spaces=False,
    )  # fmt: skip


TRAINING_TEXT = ZEN_PROMPTS + ZEN_QUESTIONS + [
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.", "user\nassistant\nsystem\ntool\n",
    '{"name": "multiply_tool", "arguments": {"a": 3, "b": 4}}\n12\n Done! I don\'t know any tool\n\n',
]  # fmt: skip
# Tests that get the Qwen2 pair with Qwen's full vocabulary and id layout (see the module docstring).
FULL_VOCAB_TESTS = ("test_training_with_mask_truncated_completions",)


def small_tokenizer(special: list[str], chat_template: str, vocab_size: int = 1024, added=(), **kwargs):
    """A small byte-level BPE trained on the zen text, for tests that never hard-code token ids."""
    vocab, merges = _learned_bpe(vocab_size)
    return _fast_tokenizer(vocab, merges, special, list(added), chat_template=chat_template,
                           clean_up_tokenization_spaces=False, **kwargs)  # fmt: skip


def small_qwen_tokenizer(added: list[str], chat_template: str):
    return small_tokenizer(QWEN25_SPECIAL, chat_template, added=added, eos_token="<|im_end|>",
                           pad_token="<|endoftext|>", model_max_length=131072)  # fmt: skip


def init_tiny(model):
    """TRL's tiny-model init (xavier linears, N(0, 0.02) embeddings), so no forward starts from NaN."""
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, torch.nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
    return model


def _save(model, processing_class, out: Path, generation: dict | None = None):
    from transformers import GenerationConfig

    model = model.to(torch.bfloat16)
    model.save_pretrained(out)
    processing_class.save_pretrained(out)
    if generation is not None:
        GenerationConfig(**generation).save_pretrained(out)


QWEN_TEXT = dict(hidden_size=8, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2, intermediate_size=32,
                 rope_theta=1000000.0, bos_token_id=151643, eos_token_id=151645, pad_token_id=151643)  # fmt: skip
QWEN_GENERATION = dict(bos_token_id=151643, eos_token_id=[151645, 151643], pad_token_id=151643, do_sample=True,
                       temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.05)  # fmt: skip


def _qwen_ids(tokenizer) -> dict:
    ids = tokenizer.convert_tokens_to_ids
    return dict(bos_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"), pad_token_id=ids("<|endoftext|>"))


def _qwen_generation(tokenizer) -> dict:
    ids = _qwen_ids(tokenizer)
    return dict(QWEN_GENERATION, bos_token_id=ids["bos_token_id"], eos_token_id=[ids["eos_token_id"], ids["pad_token_id"]],
                pad_token_id=ids["pad_token_id"])  # fmt: skip


def build_qwen2(root: Path, full_vocab: bool = False):
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2ForSequenceClassification

    if full_vocab:
        tokenizer, vocab_size = qwen_tokenizer(QWEN25_ADDED, _template("qwen2_5")), 152064
    else:
        tokenizer = small_qwen_tokenizer(QWEN25_ADDED, _template("qwen2_5"))
        vocab_size = len(tokenizer)
    text = dict(QWEN_TEXT, **_qwen_ids(tokenizer), vocab_size=vocab_size)
    torch.manual_seed(0)
    model = init_tiny(Qwen2ForCausalLM(Qwen2Config(tie_word_embeddings=False, **text)))
    _save(model, tokenizer, root / "tiny-Qwen2ForCausalLM-2.5", _qwen_generation(tokenizer))
    torch.manual_seed(1)
    reward = init_tiny(Qwen2ForSequenceClassification(Qwen2Config(num_labels=1, **text)))
    _save(reward, tokenizer, root / "tiny-Qwen2ForSequenceClassification-2.5")


def build_qwen3(root: Path):
    from transformers import (
        Qwen3Config, Qwen3ForCausalLM, Qwen3ForSequenceClassification, Qwen3MoeConfig, Qwen3MoeForCausalLM,
    )  # fmt: skip

    tokenizer = small_qwen_tokenizer(QWEN3_ADDED, _template("qwen3"))
    text = dict(QWEN_TEXT, **_qwen_ids(tokenizer), head_dim=2, vocab_size=len(tokenizer))
    torch.manual_seed(2)
    model = init_tiny(Qwen3ForCausalLM(Qwen3Config(tie_word_embeddings=False, **text)))
    _save(model, tokenizer, root / "tiny-Qwen3ForCausalLM", _qwen_generation(tokenizer))
    torch.manual_seed(3)
    reward = init_tiny(Qwen3ForSequenceClassification(Qwen3Config(num_labels=1, **text)))
    _save(reward, tokenizer, root / "tiny-Qwen3ForSequenceClassification")
    # The tool-calling tests generate hard-coded Qwen ids with this one: Qwen's full layout.
    tokenizer = qwen_tokenizer(QWEN3_ADDED, _template("qwen3"))
    torch.manual_seed(4)
    moe = Qwen3MoeConfig(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16, tie_word_embeddings=False,
                         **dict(text, **_qwen_ids(tokenizer), vocab_size=151936))  # fmt: skip
    _save(init_tiny(Qwen3MoeForCausalLM(moe)), tokenizer, root / "tiny-Qwen3MoeForCausalLM", _qwen_generation(tokenizer))


def build_gemma2(root: Path):
    from transformers import Gemma2Config, Gemma2ForCausalLM

    tokenizer = small_tokenizer(["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"],
                                _template("gemma"), bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                unk_token="<unk>")  # fmt: skip
    ids = tokenizer.convert_tokens_to_ids
    config = Gemma2Config(
        vocab_size=len(tokenizer), hidden_size=8, num_attention_heads=4, num_key_value_heads=2, head_dim=2,
        num_hidden_layers=2, intermediate_size=32, tie_word_embeddings=True, pad_token_id=ids("<pad>"),
        bos_token_id=ids("<bos>"), eos_token_id=[ids("<eos>"), ids("<end_of_turn>")],
    )  # fmt: skip
    torch.manual_seed(5)
    gen = dict(bos_token_id=ids("<bos>"), eos_token_id=[ids("<eos>"), ids("<end_of_turn>")], pad_token_id=ids("<pad>"))
    _save(init_tiny(Gemma2ForCausalLM(config)), tokenizer, root / "tiny-Gemma2ForCausalLM", gen)


def build_llama_reward(root: Path):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    special = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
               "<|finetune_right_pad_id|>", "<|eom_id|>", "<|python_tag|>"]  # fmt: skip
    tokenizer = small_tokenizer(special, _template("llama3_2"), bos_token="<|begin_of_text|>", eos_token="<|eot_id|>")
    ids = tokenizer.convert_tokens_to_ids
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=8, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2,
        intermediate_size=32, num_labels=1, bos_token_id=ids("<|begin_of_text|>"), eos_token_id=ids("<|eot_id|>"),
    )  # fmt: skip
    torch.manual_seed(6)
    _save(init_tiny(LlamaForSequenceClassification(config)), tokenizer, root / "tiny-LlamaForSequenceClassification-3.2")


def _qwen_vl_processor(processor_cls):
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    tokenizer = small_qwen_tokenizer(QWEN25_ADDED, _template("qwen2_5_vl"))
    return processor_cls(image_processor=Qwen2VLImageProcessor(), video_processor=Qwen2VLVideoProcessor(),
                         tokenizer=tokenizer, chat_template=tokenizer.chat_template)  # fmt: skip


def build_qwen_vl(root: Path):
    from transformers import (
        Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor, Qwen2VLConfig,
        Qwen2VLForConditionalGeneration, Qwen2VLProcessor,
    )  # fmt: skip

    # TRL's tiny Qwen2.5-VL: 2 text layers of width 16, mrope [1, 1, 0], a 2-block vision tower of width 16.
    processor = _qwen_vl_processor(Qwen2_5_VLProcessor)
    ids = processor.tokenizer.convert_tokens_to_ids
    text = dict(vocab_size=len(processor.tokenizer), hidden_size=16, num_attention_heads=4, num_key_value_heads=2,
                num_hidden_layers=2, intermediate_size=32, **_qwen_ids(processor.tokenizer),
                rope_parameters={"rope_type": "default", "mrope_section": [1, 1, 0], "rope_theta": 1000000.0})  # fmt: skip
    vl_ids = dict(image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
                  vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
                  tie_word_embeddings=True)  # fmt: skip
    generation = _qwen_generation(processor.tokenizer)
    config = Qwen2_5_VLConfig(
        text_config=text, vision_config=dict(hidden_size=16, intermediate_size=32, num_heads=4, depth=2,
                                             fullatt_block_indexes=[1], out_hidden_size=16), **vl_ids,
    )  # fmt: skip
    torch.manual_seed(7)
    _save(Qwen2_5_VLForConditionalGeneration(config), processor, root / "tiny-Qwen2_5_VLForConditionalGeneration",
          generation)  # fmt: skip
    config = Qwen2VLConfig(text_config=text, vision_config=dict(depth=2, embed_dim=16, num_heads=4, hidden_size=16),
                           **vl_ids)  # fmt: skip
    torch.manual_seed(8)
    _save(Qwen2VLForConditionalGeneration(config), _qwen_vl_processor(Qwen2VLProcessor),
          root / "tiny-Qwen2VLForConditionalGeneration", generation)  # fmt: skip


def _write_dataset(out: Path, configs: dict):
    """A local dataset folder `load_dataset(out, config, split=...)` reads: parquet per split, configs in README."""
    cards = []
    for name, dataset in configs.items():
        # TRL's generate scripts: train_test_split(test_size=0.1, shuffle=False) -> 17 train rows, 2 test rows.
        splits = dataset.train_test_split(test_size=0.1, shuffle=False)
        files = []
        for split, part in splits.items():
            path = out / name / f"{split}-00000-of-00001.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            part.to_parquet(str(path))
            files.append(f"  - split: {split}\n    path: {name}/{path.name}")
        cards.append(f"- config_name: {name}\n  data_files:\n" + "\n".join(files))
    (out / "README.md").write_text("---\nconfigs:\n" + "\n".join(cards) + "\n---\n")


def build_datasets(root: Path, seed: int = 0):
    from datasets import Dataset, Features, Image, List, Value

    rng = np.random.default_rng(seed)

    def images(count: int) -> list:
        return [rng.uniform(0, 255, size=(*rng.integers(32, 64, size=2), 3)).astype(np.uint8) for _ in range(count)]

    conversational = [[{"role": "user", "content": q}] for q in ZEN_QUESTIONS]
    _write_dataset(root / "zen", {
        "standard_prompt_only": Dataset.from_dict({"prompt": ZEN_PROMPTS}),
        "conversational_prompt_only": Dataset.from_dict({"prompt": conversational}),
    })  # fmt: skip
    message = [{"content": Value("string"), "role": Value("string")}]
    image_rows = Dataset.from_dict(
        {"prompt": conversational, "images": [images(1) for _ in ZEN_QUESTIONS]},
        features=Features(prompt=message, images=List(Image())),
    )
    _write_dataset(root / "zen-image", {"conversational_prompt_only": image_rows})
    parts = List({"content": List({"text": Value("string"), "type": Value("string")}), "role": Value("string")})
    prompts = []
    for question, layout in zip(ZEN_QUESTIONS, MULTI_IMAGE_LAYOUT, strict=True):
        content = [{"type": "text", "text": question} if c == "t" else {"type": "image", "text": None} for c in layout]
        prompts.append([{"role": "user", "content": content}])
    multi = Dataset.from_dict(
        {"prompt": prompts, "images": [images(layout.count("i")) for layout in MULTI_IMAGE_LAYOUT]},
        features=Features(prompt=parts, images=List(Image())),
    )
    _write_dataset(root / "zen-multi-image", {"conversational_prompt_only": multi})


BUILDERS = [build_datasets, build_qwen2, build_qwen3, build_gemma2, build_llama_reward, build_qwen_vl]
# What the GRPO test file loads that no builder here makes (the tests that use them fail alike in both runs).
NOT_STOOD_IN = {
    "tiny-Gemma3ForConditionalGeneration": "Gemma3 processor (SigLIP image processor, boi/eoi tokens) not built",
    "tiny-LlavaNextForConditionalGeneration": "LLaVA-NeXT processor (anyres image grid) not built",
}


def build_all(root: str | Path, force: bool = False) -> Path:
    """Build every stand-in under `root` (once: a stamp records the builder version)."""
    root = Path(root)
    stamp = root / "standins.json"
    version = {"builders": [b.__name__ for b in BUILDERS], "format": 3}
    if not force and stamp.exists() and json.loads(stamp.read_text()) == version:
        return root
    root.mkdir(parents=True, exist_ok=True)
    for build in BUILDERS:
        build(root)
    full = root / "full-vocab"
    build_qwen2(full, full_vocab=True)
    for entry in root.iterdir():  # everything else is shared
        if entry.is_dir() and entry != full and not (full / entry.name).exists():
            (full / entry.name).symlink_to(Path("..") / entry.name, target_is_directory=True)
    stamp.write_text(json.dumps(version))
    return root
