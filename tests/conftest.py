"""Shared fixtures: tiny datasets built by the tests, and the real data in ../shared/data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SGREC_SHARED_DATA", ROOT.parent / "shared" / "data"))


def shared_dataset(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real dataset {path} is absent (set SGREC_SHARED_DATA or place "
                    "../shared/data beside the checkout)")
    return path


@pytest.fixture
def scientific() -> Path:
    return shared_dataset("amazon_scientific_2018")


@pytest.fixture
def beauty() -> Path:
    return shared_dataset("amazon_beauty_2014")


def write_letter(folder: Path, inter: dict, items: dict, name: str = "Toy") -> Path:
    """A LETTER-format dataset: ``name.inter.json`` + ``name.item.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.inter.json").write_text(json.dumps(inter), encoding="utf-8")
    (folder / f"{name}.item.json").write_text(json.dumps(items), encoding="utf-8")
    return folder


def toy_items(n: int) -> dict:
    return {str(i): {"title": f"item {i}", "description": f"desc {i}", "brand": f"b{i % 3}",
                     "categories": f"Root,Cat{i % 2}"} for i in range(n)}


@pytest.fixture
def toy_letter(tmp_path: Path) -> Path:
    """6 users over 8 items; user 'u5' has 2 items and is dropped by min_seq_len=3."""
    inter = {
        "u0": [0, 1, 2, 3, 4],
        "u1": [2, 3, 5],
        "u2": [5, 6, 7, 0],
        "u3": [1, 2, 3, 4, 5, 6, 7],
        "u4": [7, 6, 5],
        "u5": [0, 1],
    }
    return write_letter(tmp_path / "toy", inter, toy_items(8))


def sid_catalog(sizes: list[int], n_items: int, rng: np.random.Generator):
    """(codes (N, L) int64, vocabulary, trie): ``n_items`` items with distinct SIDs drawn at
    random over the ``sizes`` codebooks: the catalogue the generator tests decode over."""
    from sgrec_cli.generator.tokens import SidVocab
    from sgrec_cli.generator.trie import SidTrie

    flat = rng.choice(int(np.prod(sizes)), n_items, replace=False)
    codes = np.stack(np.unravel_index(flat, sizes), axis=1).astype(np.int64)  # mixed radix
    return codes, SidVocab(sizes), SidTrie.from_codes(codes, sizes)


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_sid_run(folder: Path, priced: bool = False) -> Path:
    """A prepared run with residual k-means SIDs: 31 users over 40 toy items (``priced``: the
    items carry a price, every fourth one none)."""
    from sgrec_cli.cli import app

    rng = np.random.default_rng(0)
    inter = {f"u{u}": [int(i) for i in rng.choice(40, size=7, replace=False)]
             for u in range(30)}
    inter["all"] = list(range(40))
    items = toy_items(40)
    if priced:
        for i, item in items.items():
            if int(i) % 4:
                item["price"] = f"${1 + int(i) % 7}.50"
    src = write_letter(folder / "src", inter, items)
    run = folder / "run"
    for args in (["prepare", str(src)],
                 # text-only SIDs: random purchases have no collaborative signal to add
                 ["build-sids", "--method", "rqkmeans", "--codebook-size", "8", "--dedup",
                  "suffix", "--collab-dim", "0", "--cache-dir", str(folder / "cache"),
                  "--no-progress"]):
        res = CliRunner().invoke(app, [*args, "--run", str(run)])
        assert res.exit_code == 0, res.output
    return run


@pytest.fixture
def sid_run(tmp_path, one_thread):
    return make_sid_run(tmp_path)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One toy run with a 2-epoch SFT generator and a 1-epoch SASRec, shared by the tests of
    `recommend` and `serve` (they only read it)."""
    from sgrec_cli.cli import app

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = make_sid_run(tmp_path_factory.mktemp("trained"))
        for args in (["--epochs", "2", "--valid-users", "0", "--device", "cpu"],
                     ["--model", "sasrec", "--epochs", "1"]):
            res = CliRunner().invoke(app, ["train", "--run", str(run), *args, "--json"])
            assert res.exit_code == 0, res.output
    finally:
        torch.set_num_threads(threads)
    return run


TINY_CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n"
                      "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def make_tiny_llm(folder: Path, corpus: list[str] | None = None) -> Path:
    """A random-weight Llama with a byte-level BPE tokenizer and a chat template, saved as a
    model folder: the code path users run with a real instruct model, at toy size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from sgrec_cli.judge.prompts import ANSWER_RULE, QUESTIONS, SYSTEM

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = ["<|pad|>", "<|endoftext|>"]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    texts = [SYSTEM, ANSWER_RULE, *QUESTIONS.values(), *(corpus or []),
             "Products the customer bought Candidate product item Rating"]
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|pad|>",
                                   eos_token="<|endoftext|>", chat_template=TINY_CHAT_TEMPLATE)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=2048, tie_word_embeddings=True,
                      pad_token_id=fast.pad_token_id, eos_token_id=fast.eos_token_id)
    model = LlamaForCausalLM(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory) -> Path:
    return make_tiny_llm(tmp_path_factory.mktemp("tiny-llm"))


# `train --a2po`'s options before its default became the SASRec teacher at each user's next
# position: the tests of the rank reward, the judge's advantages and the other recipes pin
# them (and need no SASRec in their runs)
A2PO_RANK_RECIPE = ["--advantage", "a2po", "--business", "rank", "--ranker-shape", "logprob",
                    "--ranker-weight", "1", "--examples", "all", "--lr", "1e-5"]
