"""How listing text becomes search terms: one analyser for Russian and English together.

People type "велосипеды", "палатку", "sony a7", "cameras" into one box, and a listing's title
mixes both ("Экшн-камера GoPro 12"), so both languages go through the same chain: words (letters
and digits), over-long tokens dropped (base64 junk, URLs), lowercase, Russian and English stop
words out, then the Russian Snowball stemmer (it leaves Latin words alone, and folds ё into е)
and the English one (it leaves Cyrillic alone). Query text is analysed by the same chain, so any
word form finds any other: "велосипедов" finds "велосипед"."""

from __future__ import annotations

from tantivy import Filter, Index, TextAnalyzer, TextAnalyzerBuilder, Tokenizer

ANALYZER = "ru_en"
WORDS = "words"
_WORD = r"\w+"
_LONGEST_TERM = 40


def build_analyzer() -> TextAnalyzer:
    return (
        TextAnalyzerBuilder(Tokenizer.regex(_WORD))
        .filter(Filter.remove_long(_LONGEST_TERM))
        .filter(Filter.lowercase())
        .filter(Filter.stopword("russian"))
        .filter(Filter.stopword("english"))
        .filter(Filter.stemmer("russian"))
        .filter(Filter.stemmer("english"))
        .build()
    )


def build_word_analyzer() -> TextAnalyzer:
    """Words as typed, lowercased: the vocabulary that search suggestions complete to."""
    return (
        TextAnalyzerBuilder(Tokenizer.regex(_WORD))
        .filter(Filter.remove_long(_LONGEST_TERM))
        .filter(Filter.lowercase())
        .build()
    )


def register(index: Index) -> None:
    """Every index that uses the schema's text fields needs this before writing or searching."""
    index.register_tokenizer(ANALYZER, build_analyzer())
    index.register_tokenizer(WORDS, build_word_analyzer())


def terms(text: str) -> list[str]:
    """The terms `text` is indexed (and searched) as."""
    return list(build_analyzer().analyze(text))
