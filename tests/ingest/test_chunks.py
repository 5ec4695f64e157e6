"""Chunking: properties over generated Swedish-like reports, exact small cases, the embedder's veto.

The properties: no text lost or invented, chunks never cross a section, the cl100k budget and the
overlap hold, offsets point at the chunk text, and the `fits` callback makes chunks that the
embedding model accepts.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from rag.errors import ConfigError
from rag.index.build import build_index
from rag.index.build import context as _context
from rag.ingest.chunks import chunk_document, count_tokens
from rag.ingest.documents import Document, read_documents
from rag.ingest.sections import Section, parse_report
from rag.settings import Settings
from rag.types import Chunk
from tests.fakes import FakeEmbedder

DATA = Path(__file__).resolve().parents[2] / "data"
TITLE = "Kommundirektörens rapport maj 2017"

# -- generated documents -----------------------------------------------------------------------

WORDS = [
    "kommunen",
    "Tyresö",
    "förskola",
    "budget",
    "och",
    "att",
    "med",
    "för",
    "samverkan",
    "försörjningsstödsenheten",
    "2,4",
    "procent",
    "70-tal",
    "bl.a.",
    "t.ex.",
    "kap.",
    "år",
    "ökad",
    "säkerhet",
    "e-post",
    "Södertörn",
    "arbetsmarknadsnämnden",
    "är",
    "i",
    "på",
    "över",
    "krisledningsgruppen",
    "”tabletop-övning”",
    "(bilaga)",
    "2012",
    "nr",
    "16.00",
    "kl.",
    "m.m.",
    "s.k.",
    "Öppet",
    "Ålder",
    "ändå",
    "IT-avdelningen",
    "medborgarna",
    "servicecenter",
    "62:a",
    "1",
    "maj",
    "Bo",
    "lokaler",
    "ska",
    "har",
    "kommer",
]
LONG_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyzåäö", min_size=40, max_size=160)
WORD = st.one_of(st.sampled_from(WORDS), st.sampled_from(WORDS), st.sampled_from(WORDS), LONG_WORD)


@st.composite
def sentence(draw) -> str:
    words = draw(st.lists(WORD, min_size=1, max_size=35))
    words[0] = words[0][:1].upper() + words[0][1:]
    return " ".join(words) + draw(st.sampled_from([".", ".", ".", "!", "?", ":"]))


@st.composite
def paragraph(draw) -> str:
    if draw(st.integers(0, 5)) == 0:  # a list item, no full stop
        return "- " + " ".join(draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=12)))
    joiner = draw(st.sampled_from([" ", " ", "  ", "\n"]))
    return joiner.join(draw(st.lists(sentence(), min_size=1, max_size=5)))


HEADING = st.lists(st.sampled_from(["Budget", "Skolan", "Ny", "förskola", "i", "Bollmora", "Krisövning",
                                    "Henning", "Avtal", "12", "Lokalförsörjning"]), min_size=1, max_size=5)  # fmt: skip


@st.composite
def direct_document(draw) -> Document:
    """A Document built by hand: sections with exact offsets, arbitrary whitespace inside bodies."""
    text = TITLE
    sections = []
    for _ in range(draw(st.integers(1, 4))):
        heading = " ".join(draw(HEADING)).capitalize()
        body = draw(st.sampled_from(["\n\n", "\n"])).join(draw(st.lists(paragraph(), min_size=1, max_size=4)))
        text += "\n\n" + heading + "\n\n"
        sections.append(Section(heading, body, len(text), len(text) + len(body)))
        text += body
    return Document("gen.txt", TITLE, "2017-05", "2017/KS 0001 001", text + "\n", tuple(sections), "0" * 64)


@st.composite
def parsed_document(draw) -> Document:
    """Raw report text with headings, parsed by the real layout parser."""
    parts = ["Diarienummer", "2017/ KS 0001 001", TITLE]
    for _ in range(draw(st.integers(1, 4))):
        parts.append(" ".join(draw(HEADING)).capitalize())
        parts.extend(draw(st.lists(paragraph(), min_size=1, max_size=4)))
    parsed = parse_report("\n\n".join(parts) + "\n\nBo Renman\nKommundirektör\n")
    return Document("gen.txt", parsed.title, parsed.date, parsed.diarienummer, parsed.text, parsed.sections,
                    "0" * 64)  # fmt: skip


DOCUMENT = st.one_of(direct_document(), parsed_document())


@st.composite
def budget(draw) -> tuple[int, int]:
    max_tokens = draw(st.integers(8, 160))
    return max_tokens, draw(st.integers(0, max_tokens - 1))


PROPERTY = hsettings(max_examples=100, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip


# -- the properties ----------------------------------------------------------------------------


def _section_of(doc: Document, chunk: Chunk) -> Section:
    owners = [s for s in doc.sections if s.start <= chunk.start and chunk.end <= s.end]
    assert len(owners) == 1, f"chunk {chunk.id} {chunk.start}-{chunk.end} is not inside exactly one section"
    return owners[0]


def check_coverage(doc: Document, chunks: list[Chunk]) -> None:
    """No text lost or invented; chunks inside one section; offsets and sentence spans consistent."""
    text = doc.text
    covered = bytearray(len(text))
    quoted = bytearray(len(text))
    for number, chunk in enumerate(chunks):
        assert chunk.id == f"{doc.id}#{number}"
        assert (chunk.doc_id, chunk.title, chunk.date, chunk.diarienummer) == (
            doc.id, doc.title, doc.date, doc.diarienummer)  # fmt: skip
        assert chunk.text == text[chunk.start : chunk.end]
        assert chunk.text.strip()
        section = _section_of(doc, chunk)
        assert chunk.section == section.heading
        spans = chunk.sentences
        assert spans and spans[0][0] == chunk.start and spans[-1][1] == chunk.end
        for (_, e1), (s2, _) in pairwise(spans):
            assert e1 <= s2
        for s, e in spans:
            assert chunk.start <= s < e <= chunk.end
            assert text[s:e].strip()
            quoted[s:e] = b"\x01" * (e - s)
        covered[chunk.start : chunk.end] = b"\x01" * (chunk.end - chunk.start)
    for section in doc.sections:
        for i in range(section.start, section.end):
            if not text[i].isspace():
                assert covered[i], f"character {i} {text[i]!r} of {section.heading!r} is in no chunk"
                assert quoted[i], f"character {i} {text[i]!r} of {section.heading!r} is in no sentence"


def check_budget(chunks: list[Chunk], max_tokens: int) -> None:
    """The cl100k budget holds for the chunk text, unless the chunk is one word longer than the budget."""
    for chunk in chunks:
        tokens = count_tokens(chunk.text)
        assert tokens <= max_tokens or len(chunk.text.split()) == 1, (tokens, max_tokens, chunk.text)


def check_overlap(doc: Document, chunks: list[Chunk], overlap: int) -> None:
    """Neighbours in one section share at most `overlap` tokens of sentences: the first's end, the second's start."""
    for first, second in pairwise(chunks):
        assert first.start <= second.start
        if _section_of(doc, first) != _section_of(doc, second):
            assert second.start >= first.end
            continue
        shared = set(first.sentences) & set(second.sentences)
        assert sum(count_tokens(doc.text[s:e]) for s, e in shared) <= overlap
        if shared:
            n = len(shared)
            assert sorted(shared) == list(first.sentences[-n:]) == list(second.sentences[:n])
        else:
            assert second.start >= first.end


@PROPERTY
@given(doc=DOCUMENT, sizes=budget())
def test_chunks_lose_and_invent_no_text(doc, sizes):
    check_coverage(doc, chunk_document(doc, *sizes))


@PROPERTY
@given(doc=DOCUMENT, sizes=budget())
def test_chunks_respect_the_token_budget(doc, sizes):
    check_budget(chunk_document(doc, *sizes), sizes[0])


@PROPERTY
@given(doc=DOCUMENT, sizes=budget())
def test_overlap_between_neighbours_is_within_settings(doc, sizes):
    check_overlap(doc, chunk_document(doc, *sizes), sizes[1])


def _fake_limit(doc: Document, sizes: tuple[int, int], extra: int) -> FakeEmbedder:
    """A fake model whose word limit every single sentence (piece) with the title meets."""
    longest_sentence = max(
        len(doc.text[a:b].split()) for c in chunk_document(doc, *sizes) for a, b in c.sentences
    )
    return FakeEmbedder(max_tokens=longest_sentence + len(doc.title.split()) + extra)


@PROPERTY
@given(doc=DOCUMENT, sizes=budget(), extra=st.integers(0, 30))
def test_fits_callback_splits_until_the_embedder_accepts(doc, sizes, extra):
    embedder = _fake_limit(doc, sizes, extra)
    chunks = chunk_document(doc, *sizes, fits=lambda c: embedder.fits(c.text, c.title))
    assert all(embedder.fits(c.text, c.title) for c in chunks)
    check_coverage(doc, chunks)
    # only split where needed: a chunk stops where the next sentence would break the budget or the veto
    # (not "inside a chunk made without the veto": greedy packing may place boundaries elsewhere then)
    for chunk, following in _with_next_span(doc, chunks):
        if following is not None:
            grown = doc.text[chunk.start : following[1]]
            assert count_tokens(grown) > sizes[0] or not embedder.fits(grown, chunk.title), chunk.id
    plain = chunk_document(doc, *sizes)
    if embedder.max_tokens >= max(len(s.text.split()) for s in doc.sections) + len(doc.title.split()):
        assert chunks == plain


def _with_next_span(doc, chunks):
    """Each chunk with the sentence span that follows its last one in the same section (None at the end).
    Sections are told apart by their place in the document: two may share a heading."""
    section_of = lambda chunk: next(i for i, s in enumerate(doc.sections) if s.start <= chunk.start < s.end)
    spans: dict[int, set] = {}
    for chunk in chunks:
        spans.setdefault(section_of(chunk), set()).update(chunk.sentences)
    for chunk in chunks:
        later = sorted(s for s in spans[section_of(chunk)] if s[0] >= chunk.end)
        yield chunk, later[0] if later else None


@PROPERTY
@given(doc=DOCUMENT, sizes=budget(), extra=st.integers(0, 30))
def test_fits_split_chunks_stay_in_order_and_within_overlap(doc, sizes, extra):
    """After the veto halves a window, the next window must not step back into an earlier piece
    (which yields out-of-order chunks and passages wholly repeated in another chunk)."""
    embedder = _fake_limit(doc, sizes, extra)
    chunks = chunk_document(doc, *sizes, fits=lambda c: embedder.fits(c.text, c.title))
    check_overlap(doc, chunks, sizes[1])
    for a in chunks:
        assert not any(b is not a and b.start <= a.start and a.end <= b.end for b in chunks), a.id


@PROPERTY
@given(doc=DOCUMENT, sizes=budget())
def test_fits_always_true_changes_nothing(doc, sizes):
    assert chunk_document(doc, *sizes, fits=lambda c: True) == chunk_document(doc, *sizes)


def _doc(body: str, heading: str = "Rubrik") -> Document:
    text = f"{TITLE}\n\n{heading}\n\n{body}\n"
    start = len(TITLE) + 4 + len(heading)
    return Document("x.txt", TITLE, "2017-05", None, text, (Section(heading, body, start, start + len(body)),),
                    "0" * 64)  # fmt: skip


def test_a_long_sentence_is_split_until_the_model_accepts_it():
    """The embedder's limit is in its own tokens; one sentence past it must still be cut to fit."""
    body = "Kommunen " + " ".join(["samverkar med regionen om trygghet"] * 12) + "."
    doc = _doc(body)
    embedder = FakeEmbedder(max_tokens=20)
    chunks = chunk_document(doc, 200, 40, fits=lambda c: embedder.fits(c.text, c.title))
    assert all(embedder.fits(c.text, c.title) for c in chunks), [len(c.text.split()) for c in chunks]
    check_coverage(doc, chunks)


# -- exact small cases -------------------------------------------------------------------------

SIX = ["Ett två tre.", "Fyra fem sex.", "Vi bygger nytt.", "Det regnar idag."]  # 6 cl100k tokens each


def test_greedy_windows_with_overlap():
    assert [count_tokens(s) for s in SIX] == [6, 6, 6, 6]
    doc = _doc(" ".join(SIX))
    assert [c.text for c in chunk_document(doc, 12, 6)] == [
        "Ett två tre. Fyra fem sex.", "Fyra fem sex. Vi bygger nytt.", "Vi bygger nytt. Det regnar idag."]  # fmt: skip
    assert [c.text for c in chunk_document(doc, 12, 5)] == [
        "Ett två tre. Fyra fem sex.", "Vi bygger nytt. Det regnar idag."]  # fmt: skip
    assert [c.text for c in chunk_document(doc, 200, 40)] == [" ".join(SIX)]


def test_chunk_offsets_and_sentences_exact():
    doc = _doc(" ".join(SIX))
    first, second = chunk_document(doc, 12, 0)
    base = len(TITLE) + 2 + len("Rubrik") + 2
    assert (first.id, first.start, first.end, first.sentences) == (
        "x.txt#0", base, base + 26, ((base, base + 12), (base + 13, base + 26)))  # fmt: skip
    assert (second.id, second.start, second.end, second.section) == (
        "x.txt#1",
        base + 27,
        base + 59,
        "Rubrik",
    )


def test_chunks_never_cross_sections():
    text = f"{TITLE}\n\nA\n\nEtt två tre.\n\nB\n\nFyra fem sex."
    a = text.index("Ett")
    b = text.index("Fyra")
    doc = Document("x", TITLE, None, None, text, (Section("A", "Ett två tre.", a, a + 12),
                                                  Section("B", "Fyra fem sex.", b, b + 13)), "0")  # fmt: skip
    assert [(c.section, c.text) for c in chunk_document(doc, 200, 40)] == [("A", "Ett två tre."),
                                                                          ("B", "Fyra fem sex.")]  # fmt: skip


def test_list_items_count_against_the_budget_with_their_separators():
    doc = _doc("\n\n".join(["- punkt ett"] * 12))
    chunks = chunk_document(doc, 8, 0)
    assert all(count_tokens(c.text) <= 8 for c in chunks), [count_tokens(c.text) for c in chunks]


def test_single_word_longer_than_the_budget_is_its_own_chunk():
    word = "försörjningsstödsenhetens" * 4
    doc = _doc(f"Kort mening. {word} slutar här.")
    texts = [c.text for c in chunk_document(doc, 8, 0)]
    assert word in texts
    assert all(count_tokens(t) <= 8 or t == word for t in texts)


@pytest.mark.parametrize("max_tokens, overlap", [(200, 40), (60, 20), (30, 29), (8, 0)])
def test_real_reports_satisfy_the_properties(max_tokens, overlap):
    documents, _ = read_documents(DATA)
    for doc in documents:
        chunks = chunk_document(doc, max_tokens, overlap)
        check_coverage(doc, chunks)
        check_overlap(doc, chunks, overlap)
        check_budget(chunks, max_tokens)


# -- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize("max_tokens, overlap", [(7, 0), (0, 0), (200, -1), (200, 200), (50, 80)])
def test_invalid_chunk_settings_raise_config_error(max_tokens, overlap):
    with pytest.raises(ConfigError):
        chunk_document(_doc("Ett två tre."), max_tokens, overlap)


def test_smallest_valid_settings():
    assert [c.text for c in chunk_document(_doc("Ett två tre."), 8, 7)] == ["Ett två tre."]


def test_index_with_invalid_chunk_settings_raises_config_error(tmp_path):
    settings = Settings(data_dir=DATA, index_dir=tmp_path / "index", cache_dir=tmp_path / "cache",
                        chunk_tokens=4, chunk_overlap=0)  # fmt: skip
    with pytest.raises(ConfigError):
        build_index(settings, FakeEmbedder(), progress=False)
    assert not (tmp_path / "index" / "CURRENT").exists()


# -- the real model's tokenizer ----------------------------------------------------------------


@pytest.fixture(scope="module")
def real_embedder():
    from rag.embedding.transformer import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder(Settings())
    _ = embedder.model  # load once (tens of seconds)
    return embedder


@pytest.mark.slow
@pytest.mark.parametrize("max_seq_length", [None, 64])
def test_chunks_fit_the_real_model(real_embedder, max_seq_length):
    """A chunk never runs past the embedding model's max sequence length in the model's own tokens."""
    model = real_embedder.model
    original = model.max_seq_length
    try:
        if max_seq_length is not None:
            model.max_seq_length = max_seq_length
        documents, _ = read_documents(DATA)
        settings = Settings()

        def fits(chunk: Chunk) -> bool:
            return real_embedder.fits(chunk.text, _context(chunk))

        chunks = [
            c
            for d in documents
            for c in chunk_document(d, settings.chunk_tokens, settings.chunk_overlap, fits)
        ]
        too_long = [c.id for c in chunks if not fits(c)]
        assert too_long == [], f"{len(too_long)} of {len(chunks)} chunks exceed {model.max_seq_length} tokens"
        for doc in documents:
            check_coverage(doc, [c for c in chunks if c.doc_id == doc.id])
    finally:
        model.max_seq_length = original
