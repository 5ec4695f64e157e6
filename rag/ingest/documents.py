"""Reading reports: a folder of .txt/.md/.pdf/.docx files, or a corpus.jsonl, -> Documents.

A file that cannot be read is skipped with a warning that names it; the rest are still read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from rag.errors import InputError
from rag.ingest.sections import Section, parse_report
from rag.types import Signature, is_real_date

log = logging.getLogger(__name__)

SUFFIXES = (".txt", ".md", ".pdf", ".docx")
PARTIAL_SUFFIXES = (".part", ".tmp", ".crdownload", ".swp", ".partial")


@dataclass(frozen=True, slots=True)
class Document:
    id: str
    title: str
    date: str | None  # ISO: YYYY-MM-DD, YYYY-MM or YYYY
    diarienummer: str | None
    text: str
    sections: tuple[Section, ...]
    sha256: str  # of the source bytes, so the index can tell what changed
    signed_by: Signature | None = None  # the closing signature block, when the report has one


@dataclass(frozen=True, slots=True)
class Skipped:
    source: str
    reason: str


def read_documents(path: Path, *, allow_outside_links: bool = False,
                   max_chars: int = 2_000_000) -> tuple[list[Document], list[Skipped]]:  # fmt: skip
    """All documents under `path` (a folder or a corpus.jsonl), plus the files that were skipped:
    symbolic links that lead outside the folder (unless allowed), and files with more than
    `max_chars` characters of text."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"No data at {path}. Point --data at a folder of reports or a corpus.jsonl.")
    if path.is_file():
        if path.suffix == ".jsonl":
            return _read_jsonl(path)
        raise InputError(f"{path} is a file but not a .jsonl corpus. Pass the folder that holds it.")
    documents, skipped = [], []
    folder = path.resolve()
    for file in report_files(path):
        if file.suffix.lower() not in SUFFIXES:
            skipped.append(Skipped(str(file), f"unsupported file type {file.suffix or '(none)'}"))
            continue
        if not allow_outside_links and not file.resolve().is_relative_to(folder):
            skipped.append(Skipped(str(file), "a symbolic link to a file outside the data folder; copy the file "
                                              "in, or set RAG_ALLOW_OUTSIDE_LINKS=1 to index what links point at"))
            continue
        try:
            documents.append(read_file(file, max_chars=max_chars, doc_id=file.relative_to(path).as_posix()))
        except (InputError, OSError) as error:  # unreadable: skip it, keep the rest
            skipped.append(Skipped(str(file), str(error)))
    for item in skipped:
        log.warning("Skipped %s: %s", item.source, item.reason)
    return documents, skipped


def report_files(folder: Path) -> list[Path]:
    """The files under `folder`, subfolders included, in a stable order; hidden files and folders, and
    the partial files that editors and downloads leave while writing (~$x.docx, x.part, x.tmp), are not
    reports."""
    folder = Path(folder)
    found = []
    for file in folder.rglob("*"):
        parts = file.relative_to(folder).parts
        if any(part.startswith(".") for part in parts) or not file.is_file():
            continue
        if file.name.startswith("~$") or file.suffix.lower() in PARTIAL_SUFFIXES:
            continue
        found.append(file)
    return sorted(found, key=lambda f: f.relative_to(folder).as_posix())


def read_file(file: Path, *, max_chars: int = 2_000_000, doc_id: str | None = None) -> Document:
    """One report file as a Document (its id: `doc_id`, by default the file name; a folder's files are
    named by their path under it, so two "rapport.pdf" in two subfolders stay two reports). Raises
    InputError when it cannot be read as text or is too long."""
    if file.stat().st_size > 20 * max_chars:  # not even read: no format packs text 20 times
        raise _too_long(file, f"{file.stat().st_size:,} bytes", max_chars)
    data = file.read_bytes()
    raw = _extract_text(file, data, max_chars)
    if not raw.strip():
        raise InputError(f"{file.name} holds no text.")
    if len(raw) > max_chars:
        raise _too_long(file, f"{len(raw):,} characters of text", max_chars)
    parsed = parse_report(raw, fallback_title=file.stem)
    return Document(
        id=doc_id or file.name,
        title=parsed.title,
        date=parsed.date,
        diarienummer=parsed.diarienummer,
        text=parsed.text,
        sections=parsed.sections,
        sha256=hashlib.sha256(data).hexdigest(),
        signed_by=Signature(parsed.signature[0], " ".join(parsed.signature[1:]) or None) if parsed.signature else None,
    )


def _too_long(file: Path, size: str, max_chars: int) -> InputError:
    return InputError(f"{file.name} has {size}, more than the limit of {max_chars:,} characters "
                      f"(RAG_MAX_DOCUMENT_CHARS). Split it into smaller files, or raise the limit.")  # fmt: skip


def _extract_text(file: Path, data: bytes, max_chars: int) -> str:
    suffix = file.suffix.lower()
    try:
        if suffix == ".pdf":
            return _pdf_text(file, max_chars)
        if suffix == ".docx":
            return _docx_text(file, max_chars)
    except InputError:
        raise
    except Exception as error:  # third-party readers raise many types on damaged files
        raise InputError(f"{file.name} could not be read as {suffix}: {error}") from error
    if b"\x00" in data[:8192]:
        raise InputError(f"{file.name} looks binary, not text. Remove it or save it as .txt.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        return _not_quite_utf8(file, data, error)


# UTF-8 read as Windows-1252: "Ã¥" for å, "Ã¤" for ä, "Ã¶" for ö, "Â " for a no-break space.
_MOJIBAKE = re.compile("[ÃÂ][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2013-\u203a\u20ac\u2122]")


def _not_quite_utf8(file: Path, data: bytes, error: UnicodeDecodeError) -> str:
    """A file that is not valid UTF-8: Windows-1252 (older Word and Notepad files) is read as such;
    UTF-8 with a few broken bytes, which cp1252 would turn into "Ã¥"-style garbage, keeps its UTF-8
    text with the broken bytes replaced (U+FFFD), and the warning says where."""
    try:
        as_cp1252 = data.decode("cp1252")
    except UnicodeDecodeError:
        as_cp1252 = None
    if as_cp1252 is not None and not _MOJIBAKE.search(as_cp1252):
        log.warning("%s is not UTF-8; read it as Windows-1252. Save it as UTF-8 to be sure.", file.name)
        return as_cp1252
    text, valid = data.decode("utf-8", errors="replace"), data.decode("utf-8", errors="ignore")
    broken = text.count("\ufffd") - valid.count("\ufffd")
    if sum(ord(c) > 0x7F for c in valid) < broken:  # more broken than good non-ASCII: not UTF-8 at all
        _not_utf8(file)
    log.warning("%s is UTF-8 with %d invalid byte(s), the first at byte %d; they are shown as \ufffd. "
                "Save the file as UTF-8 again to fix it.", file.name, broken, error.start)  # fmt: skip
    return text


def _not_utf8(file: Path) -> str:
    raise InputError(f"{file.name} is not UTF-8 text. Save it as UTF-8 and index again.")


def _pdf_text(file: Path, max_chars: int) -> str:
    """Page by page, stopping at the first page past max_chars: a small PDF can hold pages of
    compressed text that take minutes to extract, and the rest would be refused anyway."""
    from pypdf import PdfReader

    pages, size = [], 0
    for number, page in enumerate(PdfReader(file).pages, 1):
        pages.append(page.extract_text() or "")
        size += len(pages[-1]) + (number > 1)  # the text as joined below
        if size > max_chars:
            raise _too_long(file, f"{size:,} characters of text in its first {number} page(s)", max_chars)
    return "\n".join(pages)


def _docx_text(file: Path, max_chars: int) -> str:
    import zipfile

    import docx

    # A .docx is a zip: check what it unpacks to before anything is extracted (a zip bomb of a few
    # kB unpacks to gigabytes). zipfile never yields more than an entry's declared file_size (and
    # then fails its CRC), so the declared sizes are a bound that holds.
    with zipfile.ZipFile(file) as archive:
        unpacked = sum(entry.file_size for entry in archive.infolist())
    if unpacked > 20 * max_chars:
        raise InputError(
            f"{file.name} unpacks to {unpacked:,} bytes, more than the limit of {20 * max_chars:,} bytes for a "
            f".docx (20 × RAG_MAX_DOCUMENT_CHARS = {max_chars:,}). Split it into smaller files, or raise the limit."
        )
    lines, size = [], 0
    for number, paragraph in enumerate(docx.Document(str(file)).paragraphs, 1):
        style = (paragraph.style.name or "").lower() if paragraph.style else ""
        # Word's own heading styles become markdown headings, which the layout parser trusts.
        prefix = "## " if style.startswith(("heading", "rubrik", "title")) else ""
        lines.append(prefix + paragraph.text)
        size += len(lines[-1]) + 2 * (number > 1)  # the text as joined below
        if size > max_chars:
            raise _too_long(file, f"{size:,} characters of text in its first {number} paragraph(s)", max_chars)
    return "\n\n".join(lines)


def _read_jsonl(path: Path) -> tuple[list[Document], list[Skipped]]:
    """A corpus of {"id","title","text"} rows; text is kept verbatim so given offsets stay valid."""
    documents, skipped, seen = [], [], set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            doc_id, title, text = str(row["id"]), str(row.get("title") or ""), row["text"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            skipped.append(Skipped(f"{path}:{number}", f"not a valid row: {error}"))
            continue
        problem = _row_problem(doc_id, text, seen)
        if problem:
            skipped.append(Skipped(f"{path}:{number}", problem))
            continue
        seen.add(doc_id)
        documents.append(_jsonl_document(doc_id, title, text, row))
    for item in skipped:
        log.warning("Skipped %s: %s", item.source, item.reason)
    return documents, skipped


def _row_problem(doc_id: str, text, seen: set[str]) -> str | None:
    if not isinstance(text, str) or not text.strip():
        return "its text is missing or empty"
    if doc_id in seen:
        return f"duplicate id {doc_id!r} (the first row with it is kept)"
    return None


def _iso_or_none(value) -> str | None:
    """A row's date if it is a real ISO date (YYYY, YYYY-MM or YYYY-MM-DD); anything else is ignored."""
    text = str(value or "")
    return text if is_real_date(text) else None


def _jsonl_document(doc_id: str, title: str, text: str, row: dict) -> Document:
    section = Section(title or doc_id, text, 0, len(text))
    digest = hashlib.sha256(json.dumps(row, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    return Document(
        id=doc_id,
        title=title or doc_id,
        date=_iso_or_none(row.get("date")),
        diarienummer=row.get("diarienummer"),
        text=text,
        sections=(section,),
        sha256=digest,
    )
