"""Text front end: number normalization, pinyin and English symbols, vocabulary, clear errors."""

import sys

import numpy as np
import pytest

from speedy.errors import SpeedyError
from speedy.text import TextFrontEnd, normalize, vocabulary
from speedy.text.numbers import en_cardinal, en_ordinal, en_year, normalize_numbers, zh_cardinal

pytest.importorskip("pypinyin", reason="Chinese text needs the [text] extra (pypinyin)")


@pytest.fixture(scope="module")
def front_end() -> TextFrontEnd:
    return TextFrontEnd(vocabulary("zh_en_v1"))


def readable(symbols: list[str]) -> str:
    """Pinyin symbols in brackets, the rest as is: '[n][i3][h][ao3],hello'."""
    return "".join(f"[{s[3:]}]" if s.startswith("zh:") else s for s in symbols)


@pytest.mark.parametrize(
    ("n", "zh", "en"),
    [
        (0, "零", "zero"),
        (10, "十", "ten"),
        (12, "十二", "twelve"),
        (105, "一百零五", "one hundred five"),
        (112, "一百一十二", "one hundred twelve"),
        (1010, "一千零一十", "one thousand ten"),
        (20_300, "二万零三百", "twenty thousand three hundred"),
        (100_001, "十万零一", "one hundred thousand one"),
        (
            12_345_678,
            "一千二百三十四万五千六百七十八",
            "twelve million three hundred forty-five thousand six hundred seventy-eight",
        ),
        (300_000_000, "三亿", "three hundred million"),
    ],
)
def test_cardinals(n: int, zh: str, en: str) -> None:
    assert zh_cardinal(n) == zh
    assert en_cardinal(n) == en


def test_ordinals_and_years() -> None:
    assert [en_ordinal(n) for n in (1, 2, 3, 12, 20, 21, 100)] == [
        "first", "second", "third", "twelfth", "twentieth", "twenty-first", "one hundredth",
    ]  # fmt: skip
    assert [en_year(y) for y in (1905, 1999, 2000, 2008, 2024)] == [
        "nineteen oh five", "nineteen ninety-nine", "two thousand", "two thousand eight",
        "twenty twenty-four",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("我在2024年5月1日出生", "我在二零二四年五月一日出生"),
        ("占50%，约3.5元", "占百分之五十，约三点五元"),
        ("温度从-5度升到12度", "温度从负五度升到十二度"),
        ("电话13800138000。", "电话一三八零零一三八零零零。"),
        ("会议在10:30开始", "会议在十点三十分开始"),
        ("It costs $3.50.", "It costs three dollars and fifty cents."),
        ("on 2024-05-01 at 9:05", "on May first, twenty twenty-four at nine oh five"),
        (
            "the 21st of 3-4 items, 75% done",
            "the twenty-first of three-four items, seventy-five percent done",
        ),
        ("Call 007 in 1999", "Call zero zero seven in nineteen ninety-nine"),
        ("from 1,200,000 to -12", "from one million two hundred thousand to minus twelve"),
    ],
)
def test_numbers_read_in_the_surrounding_language(text: str, expected: str) -> None:
    assert " ".join(normalize_numbers(text).split()) == expected


def test_mixed_chinese_and_english(front_end: TextFrontEnd) -> None:
    symbols = front_end.symbols("你好，世界！Hello, Dr. Smith.")
    assert readable(symbols) == "[n][i3][h][ao3],[sh][i4][j][ie4]!hello, doctor smith."


def test_heteronyms_follow_context(front_end: TextFrontEnd) -> None:
    assert readable(front_end.symbols("银行")) == "[y][in2][h][ang2]"
    assert readable(front_end.symbols("行走")) == "[x][ing2][z][ou3]"


def test_punctuation_quotes_and_full_width(front_end: TextFrontEnd) -> None:
    assert readable(front_end.symbols("“嗯……好吧。”")) == "[n2].[h][ao3][b][a5]."
    assert readable(front_end.symbols("ＡＢＣ！ café")) == "abc! cafe"
    assert normalize("《红楼梦》").strip() == "红楼梦"


def test_unknown_symbols_dropped_with_notice(front_end: TextFrontEnd, capsys) -> None:
    ids = front_end.encode("Hi 😀 Привет", where="notes.txt:3")
    err = capsys.readouterr().err
    assert "notes.txt:3" in err and "😀" in err and "П" in err
    assert readable([front_end.vocabulary.symbols[i] for i in ids]) == "hi"


def test_encode_gives_int64_ids(front_end: TextFrontEnd) -> None:
    ids = front_end.encode("好。OK")
    assert ids.dtype == np.int64 and ids.min() > 0
    assert ids.max() < len(front_end.vocabulary)


@pytest.mark.parametrize("text", ["", "   ", "😀😀", "（）"])
def test_nothing_to_say_is_a_clear_error(front_end: TextFrontEnd, text: str) -> None:
    with pytest.raises(SpeedyError, match="nothing to say") as info:
        front_end.encode(text)
    assert "Chinese or English" in info.value.fix


def test_every_hanzi_maps_onto_the_vocabulary(front_end: TextFrontEnd) -> None:
    """The hard-coded pinyin inventory covers every reading pypinyin gives the CJK block."""
    hanzi = "".join(chr(c) for c in range(0x4E00, 0x9FA6))
    symbols = set(front_end.symbols(hanzi))
    unknown = {s for s in symbols if s not in front_end.vocabulary.ids}
    assert all(len(s) == 1 for s in unknown), sorted(unknown)[:5]  # unreadable characters only
    assert len(unknown) < 20
    used = {s for s in symbols if s.startswith("zh:")}
    assert len(used) > 150  # initials and most final/tone pairs occur


def test_unknown_vocabulary() -> None:
    with pytest.raises(SpeedyError, match="unknown vocabulary 'zh_en_v9'"):
        vocabulary("zh_en_v9")


def test_missing_pypinyin_is_a_clear_error(front_end: TextFrontEnd, monkeypatch) -> None:
    from speedy.text import pinyin

    pinyin._pypinyin.cache_clear()
    monkeypatch.setitem(sys.modules, "pypinyin", None)
    try:
        with pytest.raises(SpeedyError, match="pypinyin") as info:
            front_end.encode("你好")
        assert "openspeedy[text]" in info.value.fix
        assert readable(front_end.symbols("no Chinese, no pypinyin")) == "no chinese, no pypinyin"
    finally:
        pinyin._pypinyin.cache_clear()


def test_calibration_texts(front_end: TextFrontEnd, capsys) -> None:
    """~200 sentences, Chinese and English, every one speakable within the recipe's limits."""
    from speedy.data_source import text_lines
    from speedy.recipe import load_recipe

    recipe = load_recipe("sambert_zh_en")
    lines = text_lines(recipe.source.parent.parent / "calibration" / "texts_zh_en.txt")
    lengths = [front_end.encode(text, where).size for where, text in lines]
    assert capsys.readouterr().err == ""  # no symbol dropped anywhere
    texts = [text for _, text in lines]
    assert 190 <= len(texts) <= 230
    assert min(lengths) <= 2 and max(lengths) >= 150
    assert max(lengths) <= recipe.dims["tokens"].max
    hanzi = sum(any("\u4e00" <= c <= "\u9fff" for c in t) for t in texts)
    latin = sum(any(c.isascii() and c.isalpha() for c in t) for t in texts)
    assert hanzi >= 80 and latin >= 80
    assert sum(any(c.isdigit() for c in t) for t in texts) >= 25
    for mark in '，。！？；：“”（）《》!?;:"-':
        assert any(mark in t for t in texts), mark
