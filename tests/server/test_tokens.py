"""Token strings and bytes: bytes are exact for byte-level and SentencePiece tokenizers."""

import math

from tokenizers import Tokenizer, decoders, models
from transformers import PreTrainedTokenizerFast

from distil.models import byte_tokenizer
from distil.server.tokens import LOGPROB_FLOOR, TokenText, legacy_logprobs
from distil.teachers import TokenLogprob, TopLogprob


def sentencepiece_tokenizer() -> PreTrainedTokenizerFast:
    """A Llama-2-style tokenizer: "▁" for spaces, <0xNN> byte fallback, a stripping decoder."""
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    vocab |= {f"<0x{value:02X}>": 3 + value for value in range(256)}
    vocab |= {piece: len(vocab) + i for i, piece in enumerate(["\u2581hello", "llo", "é"])}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], byte_fallback=True, unk_token="<unk>"))
    backend.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def test_byte_level_tokens_map_to_their_byte():
    tokenizer = byte_tokenizer()
    text = TokenText(tokenizer)
    ids = tokenizer("é!", add_special_tokens=False).input_ids  # 2 bytes of é, then !
    assert [text.text(i) for i in ids] == ["\ufffd", "\ufffd", "!"]
    assert [text.bytes(i) for i in ids] == [[0xC3], [0xA9], [0x21]]
    added = tokenizer.added_tokens_decoder
    every_byte = sorted(text.bytes(i)[0] for i in range(len(tokenizer)) if i not in added)
    assert every_byte == list(range(256))
    assert all(text.bytes(i) == list(token.content.encode()) for i, token in added.items())


def test_sentencepiece_tokens_keep_their_space_and_fallback_bytes():
    tokenizer = sentencepiece_tokenizer()
    text = TokenText(tokenizer)
    hello, c3, a9 = tokenizer.convert_tokens_to_ids(["\u2581hello", "<0xC3>", "<0xA9>"])
    assert text.text(hello) == "hello"  # decoded alone, the leading space is stripped ...
    assert text.bytes(hello) == list(b" hello")  # ... but the bytes keep it
    assert (text.text(c3), text.bytes(c3), text.bytes(a9)) == ("\ufffd", [0xC3], [0xA9])
    assert bytes(text.bytes(hello) + text.bytes(c3) + text.bytes(a9)).decode() == " helloé"


def test_legacy_logprobs_floor_infinities_and_keep_the_likelier_of_equal_strings():
    tokenizer = byte_tokenizer()
    text = TokenText(tokenizer)
    c3, a9 = tokenizer("é", add_special_tokens=False).input_ids  # both read "\ufffd"
    entry = TokenLogprob(
        c3, "\ufffd", -math.inf, (TopLogprob(c3, "\ufffd", -0.5), TopLogprob(a9, "\ufffd", -1.5))
    )
    logprobs = legacy_logprobs([None, entry], [a9, c3], 2, text)
    assert logprobs["token_logprobs"] == [None, LOGPROB_FLOOR]
    assert logprobs["top_logprobs"] == [None, {"\ufffd": -0.5}]
    assert logprobs["top_token_ids"] == [None, [c3, a9]]
    assert logprobs["top_token_logprobs"] == [None, [-0.5, -1.5]]
    assert logprobs["text_offset"] == [0, 1]
