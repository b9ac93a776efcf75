"""A byte-level BPE tokenizer trained offline with HF `tokenizers`, stored as ``tokenizer.json``.

Byte-level (the GPT-2 scheme): every string is first mapped to bytes, so any text encodes and
decodes back to itself exactly, whitespace and newlines of source code included, and no text is
ever unknown. The file is the `tokenizers` JSON format: loading it runs no code, and HF
`transformers` reads the same folder (``PreTrainedTokenizerFast(tokenizer_file=folder/"tokenizer.json")``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from slimkit.utils.fileio import atomic_write_text

FILE_NAME = "tokenizer.json"
EOS = "<|endoftext|>"


def _tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError as error:  # pragma: no cover - the lm extra installs it
        raise ImportError("slimkit.lm tokenizers need HF tokenizers: pip install 'slimkit[lm]'") from error
    return tokenizers


class BPETokenizer:
    """A trained byte-level BPE: `encode`, `decode`, `save(folder)`, `BPETokenizer.load(folder)`."""

    def __init__(self, tokenizer: Any) -> None:
        self.backend = tokenizer
        eos = tokenizer.token_to_id(EOS)
        if eos is None:
            raise ValueError(f"the tokenizer has no {EOS} token")
        self.eos_id: int = eos

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [encoding.ids for encoding in self.backend.encode_batch(texts)]

    def decode(self, ids: Iterable[int]) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=False)

    def save(self, folder: str | Path) -> Path:
        """Write ``folder/tokenizer.json`` atomically; returns its path."""
        return atomic_write_text(Path(folder) / FILE_NAME, self.backend.to_str(pretty=True))

    @classmethod
    def load(cls, folder: str | Path) -> BPETokenizer:
        """Read ``folder/tokenizer.json`` (or that file itself)."""
        path = Path(folder)
        path = path / FILE_NAME if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"no {FILE_NAME} at {str(path)!r}")
        return cls(_tokenizers().Tokenizer.from_file(str(path)))


def train_bpe(texts: Iterable[str], *, vocab_size: int = 8192, min_frequency: int = 2) -> BPETokenizer:
    """Train a byte-level BPE of `vocab_size` tokens (256 bytes + merges + ``<|endoftext|>``) on `texts`.

    Deterministic for the same texts in the same order. The vocabulary may end smaller when the
    text has too few pairs of at least `min_frequency` occurrences.
    """
    if not isinstance(vocab_size, int) or vocab_size < 258:
        raise ValueError(f"vocab_size must be an integer >= 258 (256 bytes + a merge + {EOS}), got {vocab_size!r}")
    tk = _tokenizers()
    tokenizer = tk.Tokenizer(tk.models.BPE())
    tokenizer.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[EOS],
        initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return BPETokenizer(tokenizer)
