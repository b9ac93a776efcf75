"""The BPE tokenizer round-trips text and reloads from its JSON file; token blocks cut the stream."""

import json

import pytest
import torch

pytest.importorskip("tokenizers")

from slimkit.lm import BPETokenizer, as_batches, encode_texts, sample_blocks, token_blocks, train_bpe  # noqa: E402

TEXTS = [
    "def add(a, b):\n    return a + b  # ünïcode\n\n",
    "class Point:\n\tx: int = 0\r\n    y: int = 0\n" * 3,
    "import os\nprint(os.path.join('a', 'b'))\n" * 5,
]


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe(TEXTS, vocab_size=300)


def test_round_trip_is_exact_for_any_text(tokenizer):
    for text in [*TEXTS, "  two leading spaces", "emoji \U0001F600 and \x00 control", "<|endoftext|> literal", ""]:
        assert tokenizer.decode(tokenizer.encode(text)) == text
    assert len(tokenizer.encode(TEXTS[2])) < len(TEXTS[2].encode())  # merges were learnt


def test_vocab_size_is_configurable_and_save_load_is_a_json_file(tokenizer, tmp_path):
    assert 256 < tokenizer.vocab_size <= 300
    assert train_bpe(TEXTS, vocab_size=270).vocab_size == 270
    path = tokenizer.save(tmp_path / "tok")
    assert path.name == "tokenizer.json" and json.loads(path.read_text())["model"]["type"] == "BPE"
    loaded = BPETokenizer.load(tmp_path / "tok")
    assert loaded.encode(TEXTS[0]) == tokenizer.encode(TEXTS[0]) and loaded.eos_id == tokenizer.eos_id
    with pytest.raises(ValueError, match="vocab_size"):
        train_bpe(TEXTS, vocab_size=100)
    with pytest.raises(FileNotFoundError):
        BPETokenizer.load(tmp_path / "missing")


def test_encode_texts_ends_every_text_with_eos(tokenizer):
    stream = encode_texts(tokenizer, TEXTS[:2])
    first = tokenizer.encode(TEXTS[0])
    assert stream.dtype == torch.long
    assert stream.tolist() == first + [tokenizer.eos_id] + tokenizer.encode(TEXTS[1]) + [tokenizer.eos_id]
    assert encode_texts(tokenizer, TEXTS, max_tokens=5).tolist() == first[:5]


def test_blocks_are_contiguous_and_samples_seeded():
    stream = torch.arange(103)
    blocks = token_blocks(stream, 10)
    assert blocks.shape == (10, 10) and torch.equal(blocks.flatten(), stream[:100])
    assert token_blocks(stream, 10, max_blocks=3).shape == (3, 10)
    sampled = sample_blocks(stream, 10, 5, seed=3)
    assert torch.equal(sampled, sample_blocks(stream, 10, 5, seed=3))
    assert all(torch.equal(row, torch.arange(int(row[0]), int(row[0]) + 10)) for row in sampled)
    assert [inputs.shape[0] for inputs, _ in as_batches(blocks, 4)] == [4, 4, 2]
    with pytest.raises(ValueError, match="fewer than one block"):
        token_blocks(stream[:5], 10)
