"""The vocabulary map: exact strings, byte-level 'Ġ' and sentencepiece '▁' spellings."""

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from distil.align import Vocabulary, token_bytes, vocabulary_map
from distil.align.vocab import spelling
from distil.models import DEMO_TEACHER_DIR, byte_tokenizer


def sentencepiece_style(tokens):
    """A word-level tokenizer spelling spaces as '▁', with '<0xC3>'-style byte tokens."""
    vocab = {token: i for i, token in enumerate(["<unk>", "</s>", *tokens])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="</s>", unk_token="<unk>")


def test_token_bytes_decodes_each_spelling():
    assert token_bytes("Ġ7", "byte_level") == b" 7"
    assert token_bytes("Ã©", "byte_level") == "é".encode()
    assert token_bytes("Ċ", "byte_level") == b"\n"
    assert token_bytes("▁7", "sentencepiece") == b" 7"
    assert token_bytes("<0xC3>", "sentencepiece") == b"\xc3"
    assert token_bytes("ab", "plain") == b"ab"
    assert token_bytes(" 7", "text") == b" 7" and token_bytes("\ufffd", "text") is None


def test_identical_tokenizers_map_every_token_to_itself():
    tokenizer = AutoTokenizer.from_pretrained(DEMO_TEACHER_DIR)
    found = vocabulary_map(tokenizer, tokenizer, teacher_width=520)
    assert found.exact == len(tokenizer) and found.normalised == 0
    assert found.teacher_to_student[: len(tokenizer)].tolist() == list(range(len(tokenizer)))
    assert (found.teacher_to_student[len(tokenizer) :] == -1).all()  # padded head rows


def test_byte_level_pair_maps_shared_strings_and_only_those():
    teacher = AutoTokenizer.from_pretrained(DEMO_TEACHER_DIR)  # BPE with merges
    student = byte_tokenizer()  # the 256 bytes only
    found = vocabulary_map(teacher, student)
    mapping, teacher_vocab, student_vocab = found.teacher_to_student, teacher.get_vocab(), student.get_vocab()
    assert mapping[teacher_vocab["Ġ"]] == student_vocab["Ġ"]
    assert mapping[teacher_vocab["<|end|>"]] == student.eos_token_id
    assert mapping[teacher_vocab["Ġ7"]] == -1  # a merge the student does not have
    assert found.exact == int((mapping >= 0).sum()) and found.normalised == 0
    images = mapping[mapping >= 0]
    assert len(set(images.tolist())) == len(images)  # one-to-one


def test_sentencepiece_and_byte_level_meet_after_normalising():
    teacher = sentencepiece_style(["▁7", "▁is", "▁seven", "<0x0A>", "a"])
    assert spelling(teacher) == "sentencepiece" and spelling(byte_tokenizer()) == "byte_level"
    student = byte_tokenizer()
    student.add_tokens(["Ġis"])  # an added token keeps its spelling as written
    found = vocabulary_map(teacher, student)
    teacher_vocab, student_vocab = teacher.get_vocab(), student.get_vocab()
    mapping = found.teacher_to_student
    assert mapping[teacher_vocab["<0x0A>"]] == student_vocab["Ċ"]  # the newline byte
    assert mapping[teacher_vocab["a"]] == student_vocab["a"]
    assert mapping[teacher_vocab["▁seven"]] == -1
    assert mapping[teacher_vocab["</s>"]] == student.eos_token_id
    assert found.exact == 1 and found.normalised == 3  # eos; then "<0x0A>", "a", "▁is"


def test_decoded_text_from_an_api_meets_every_spelling():
    """A store captured through an API names tokens by their text (" 7", not "Ġ7")."""
    texts = ["<|end|>", " 7", " is", "a", "\ufffd", "\n", "<|user|>", " seven"]
    api = Vocabulary({text: i for i, text in enumerate(texts)}, frozenset({"<|end|>"}), 0, "text")
    student = byte_tokenizer()
    student.add_tokens(["Ġ7"])
    student.add_special_tokens({"additional_special_tokens": ["<|user|>"]})
    found = vocabulary_map(api, student)
    mapping, vocab = found.teacher_to_student, student.get_vocab()
    assert mapping.tolist() == [
        student.eos_token_id,
        vocab["Ġ7"],
        -1,
        vocab["a"],
        -1,
        vocab["Ċ"],
        vocab["<|user|>"],
        -1,
    ]  # U+FFFD: unknown bytes, never mapped
    assert found.exact == 2 and found.normalised == 3  # eos, and a special read as itself
    pieces = sentencepiece_style(["▁7", "▁is", "<0x0A>"])
    mapping = vocabulary_map(api, pieces).teacher_to_student
    spelled = pieces.convert_tokens_to_ids(["▁7", "▁is", "<0x0A>"])
    assert [mapping[i].item() for i in (0, 1, 2, 5)] == [pieces.eos_token_id, *spelled]


def test_an_api_vocabulary_maps_like_the_tokenizer_it_decodes():
    teacher = AutoTokenizer.from_pretrained(DEMO_TEACHER_DIR)
    texts = {teacher.decode([i]): i for i in range(len(teacher))}  # later ids win a shared text
    api = Vocabulary(
        {text: i for i, text in enumerate(texts)},
        frozenset({teacher.eos_token}),
        list(texts).index(teacher.eos_token),
        "text",
    )
    student = byte_tokenizer()
    by_id, by_text = vocabulary_map(teacher, student), vocabulary_map(api, student)
    for text, position in zip(texts, range(len(texts)), strict=True):
        if "\ufffd" not in text:
            assert by_text.teacher_to_student[position] == by_id.teacher_to_student[texts[text]], text
