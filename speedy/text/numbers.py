"""Number normalization: digits, decimals, ordinals, percentages, money, times and dates as words.

Each number is read in the language around it: Chinese when the nearest character on either
side is Chinese (a Hanzi or Chinese punctuation), English otherwise.
"""

import re

# fmt: off
_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
)
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
# fmt: on
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL_WORDS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}  # fmt: skip
_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip

_ZH_DIGITS = "零一二三四五六七八九"
_ZH_UNITS = ((10**8, "亿"), (10**4, "万"))
_ZH_SMALL = ((1000, "千"), (100, "百"), (10, "十"))

MAX_WORDED = 10**15  # larger numbers are read digit by digit


def _en_below_1000(n: int) -> str:
    words = []
    if n >= 100:
        words += [_ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(_TENS[n // 10] + (f"-{_ONES[n % 10]}" if n % 10 else ""))
    elif n or not words:
        words.append(_ONES[n])
    return " ".join(words)


def en_cardinal(n: int) -> str:
    """`123` -> "one hundred twenty-three"."""
    if n < 0:
        return "minus " + en_cardinal(-n)
    if n >= MAX_WORDED:
        return en_digits(str(n))
    words = []
    for scale, name in _SCALES:
        if n >= scale:
            words.append(f"{en_cardinal(n // scale)} {name}")
            n %= scale
    if n or not words:
        words.append(_en_below_1000(n))
    return " ".join(words)


def en_ordinal(n: int) -> str:
    """`21` -> "twenty-first"."""
    words = en_cardinal(n)
    head, sep, last = words.rpartition("-" if words.rfind("-") > words.rfind(" ") else " ")
    if last in _ORDINAL_WORDS:
        last = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + sep + last


def en_year(n: int) -> str:
    """`1999` -> "nineteen ninety-nine", `2005` -> "two thousand five"."""
    if n % 1000 < 10:
        return en_cardinal(n)
    if n % 100 == 0:
        return f"{en_cardinal(n // 100)} hundred"
    tail = n % 100
    return f"{en_cardinal(n // 100)} {'oh ' + _ONES[tail] if tail < 10 else en_cardinal(tail)}"


def en_digits(text: str) -> str:
    return " ".join(_ONES[int(d)] for d in text)


def zh_cardinal(n: int) -> str:
    """`105` -> "一百零五", `12` -> "十二", `100000` -> "十万"."""
    if n < 0:
        return "负" + zh_cardinal(-n)
    if n >= MAX_WORDED:
        return zh_digits(str(n))
    if n < 10:
        return _ZH_DIGITS[n]
    out, pending_zero = "", False
    for unit, name in _ZH_UNITS:
        if n >= unit:
            out += _zh_below_10000(n // unit, leading=not out) + name
            n %= unit
            pending_zero = 0 < n < unit // 10
    if n:
        out += ("零" if pending_zero else "") + _zh_below_10000(n, leading=not out)
    return out


def _zh_below_10000(n: int, leading: bool) -> str:
    out, zero = "", False
    for unit, name in _ZH_SMALL:
        digit = n // unit
        n %= unit
        if digit:
            if zero:
                out += "零"
            # "十二" at the start of a number, "一十二" inside one ("一百一十二").
            out += "" if digit == 1 and unit == 10 and leading and not out else _ZH_DIGITS[digit]
            out += name
            zero = False
        elif out:
            zero = True
    if n:
        out += ("零" if zero else "") + _ZH_DIGITS[n]
    return out


def zh_digits(text: str) -> str:
    return "".join(_ZH_DIGITS[int(d)] for d in text)


def _decimal(whole: str, fraction: str, zh: bool) -> str:
    if zh:
        return f"{zh_cardinal(int(whole))}点{zh_digits(fraction)}"
    return f"{en_cardinal(int(whole))} point {en_digits(fraction)}"


def _read_as_digits(number: str) -> bool:
    """Codes rather than amounts: a leading zero (007), or 7+ digits without grouping commas
    (phone numbers, IDs)."""
    return (len(number) > 1 and number.startswith("0")) or (len(number) >= 7 and "," not in number)


def _is_zh(char: str) -> bool:
    return (
        "\u4e00" <= char <= "\u9fff" or "\u3000" <= char <= "\u303f" or "\uff00" <= char <= "\uffef"
    )


def _zh_context(text: str, start: int, end: int) -> bool:
    before = text[:start].rstrip()
    after = text[end:].lstrip()
    return bool(before and _is_zh(before[-1])) or bool(after and _is_zh(after[0]))


_NUMBER = re.compile(
    r"(?P<date>(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2}))"
    r"|(?P<time>(?P<hh>\d{1,2}):(?P<mm>\d{2}))"
    r"|(?P<money>\$(?P<dollars>\d[\d,]*)(?:\.(?P<cents>\d{2}))?)"
    r"|(?P<sign>(?<![0-9A-Za-z.])-)?(?P<int>\d[\d,]*\d|\d)(?:\.(?P<frac>\d+))?"
    r"(?P<suffix>%|st\b|nd\b|rd\b|th\b|年)?"
)


def _english(m: re.Match) -> str:
    if m["date"]:
        month = int(m["m"])
        name = _MONTHS[month - 1] if 1 <= month <= 12 else en_cardinal(month)
        return f"{name} {en_ordinal(int(m['d']))}, {en_year(int(m['y']))}"
    if m["time"]:
        minutes = int(m["mm"])
        if minutes == 0:
            return f"{en_cardinal(int(m['hh']))} o'clock"
        tail = f"oh {_ONES[minutes]}" if minutes < 10 else en_cardinal(minutes)
        return f"{en_cardinal(int(m['hh']))} {tail}"
    if m["money"]:
        dollars = int(m["dollars"].replace(",", ""))
        words = f"{en_cardinal(dollars)} dollar{'s' * (dollars != 1)}"
        if m["cents"] and int(m["cents"]):
            cents = int(m["cents"])
            words += f" and {en_cardinal(cents)} cent{'s' * (cents != 1)}"
        return words
    digits, suffix = m["int"].replace(",", ""), m["suffix"] or ""
    if _read_as_digits(m["int"]):
        words = en_digits(digits)
    elif m["frac"]:
        words = _decimal(digits, m["frac"], zh=False)
    elif suffix in ("st", "nd", "rd", "th"):
        words = en_ordinal(int(digits))
    elif len(digits) == 4 and 1100 <= int(digits) <= 2099 and not m["sign"] and suffix != "%":
        words = en_year(int(digits))
    else:
        words = en_cardinal(int(digits))
    if m["sign"]:
        words = "minus " + words
    return words + (" percent" if suffix == "%" else " year" if suffix == "年" else "")


def _chinese(m: re.Match) -> str:
    if m["date"]:
        return f"{zh_digits(m['y'])}年{zh_cardinal(int(m['m']))}月{zh_cardinal(int(m['d']))}日"
    if m["time"]:
        minutes = int(m["mm"])
        return f"{zh_cardinal(int(m['hh']))}点" + (f"{zh_cardinal(minutes)}分" if minutes else "")
    if m["money"]:
        words = f"{zh_cardinal(int(m['dollars'].replace(',', '')))}美元"
        return words + (
            f"{zh_cardinal(int(m['cents']))}美分" if m["cents"] and int(m["cents"]) else ""
        )
    digits, suffix = m["int"].replace(",", ""), m["suffix"] or ""
    if suffix == "年":
        return zh_digits(digits) + "年"
    if _read_as_digits(m["int"]):
        words = zh_digits(digits)
    elif m["frac"]:
        words = _decimal(digits, m["frac"], zh=True)
    else:
        words = zh_cardinal(int(digits))
    if m["sign"]:
        words = "负" + words
    if suffix == "%":
        return "百分之" + words
    return words + ("" if suffix in ("", "%") else suffix)


def normalize_numbers(text: str) -> str:
    """Every number in `text` spelled out in the language around it."""
    parts, last = [], 0
    for m in _NUMBER.finditer(text):
        zh = m["suffix"] == "年" or _zh_context(text, m.start(), m.end())
        words = _chinese(m) if zh else _english(m)
        if not zh:  # keep words apart from letters they touched ("CA981" -> "CA nine ...")
            before, after = text[m.start() - 1 : m.start()], text[m.end() : m.end() + 1]
            words = " " * before.isalnum() + words + " " * after.isalnum()
        parts += [text[last : m.start()], words]
        last = m.end()
    parts.append(text[last:])
    return "".join(parts)
