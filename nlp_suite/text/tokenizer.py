"""Subword tokenizer trained on our own corpus with Hugging Face `tokenizers`.

SentencePiece-style BPE (Metaspace marks word starts). Not WordPiece: its trainer assigns `##` subword ids in
hash-map order, so the same corpus gives a different vocabulary on each run (huggingface/tokenizers#1794);
BPE without a continuing-subword prefix is reproducible, and so are the models trained on it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

PAD, UNK, BOS, EOS = "[PAD]", "[UNK]", "[BOS]", "[EOS]"
SPECIAL_TOKENS = [PAD, UNK, BOS, EOS]  # PAD is id 0: the encoder's padding_idx


class TextTokenizer:
    """Thin wrapper that turns texts into id lists of bounded length, never empty."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.pad_id = tokenizer.token_to_id(PAD)
        self.unk_id = tokenizer.token_to_id(UNK)

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> "TextTokenizer":
        """Learn a lower-cased BPE vocabulary from `texts` (deterministic for the same texts)."""
        tokenizer = Tokenizer(models.BPE(unk_token=UNK))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Punctuation("isolated"),
                                                           pre_tokenizers.Metaspace()])
        tokenizer.decoder = decoders.Metaspace()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                      special_tokens=SPECIAL_TOKENS, show_progress=False)
        tokenizer.train_from_iterator(texts, trainer=trainer)
        return cls(tokenizer)

    @classmethod
    def from_json(cls, text: str) -> "TextTokenizer":
        """Rebuild from the JSON written by `to_json` (plain data, nothing executed)."""
        return cls(Tokenizer.from_str(text))

    def to_json(self) -> str:
        """Serialise vocabulary and pipeline."""
        return self.tokenizer.to_str()

    @classmethod
    def load(cls, path: Path) -> "TextTokenizer":
        """Read a tokenizer.json file."""
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    @property
    def vocab_size(self) -> int:
        """Number of ids the embedding table needs."""
        return self.tokenizer.get_vocab_size()

    def encode(self, texts: list[str], max_len: int) -> list[list[int]]:
        """Token ids per text, cut to `max_len`; an empty result becomes [UNK] so every length is ≥ 1."""
        encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [encoding.ids[:max_len] or [self.unk_id] for encoding in encodings]

    def tokens(self, text: str, max_len: int) -> list[str]:
        """Subword strings of one text (for explanations)."""
        return self.tokenizer.encode(text, add_special_tokens=False).tokens[:max_len]
