"""One frozen Settings object. Defaults here, environment (RAG_*) next, call arguments last."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from rag.errors import ConfigError

DEFAULT_MODEL = "embeddinggemma-300m"
# The reader model shipped with the package (`rag train-reader --out` writes a new one anywhere).
DEFAULT_READER = Path(__file__).parent / "answering" / "reader.json"


def _default_cache_dir() -> Path:
    import platformdirs  # cheap, but only needed when no override is given

    return Path(platformdirs.user_cache_dir("tyreso-rag"))


@dataclass(frozen=True, slots=True)
class Settings:
    # where things live
    data_dir: Path = Path("data")
    index_dir: Path = Path("index")
    cache_dir: Path = field(default_factory=_default_cache_dir)
    # where index versions live: "local" (files in index_dir) or a postgresql://… URL (rag/index/postgres.py)
    store: str = "local"

    # embedding model: the alias DEFAULT_MODEL, a sentence-transformers model id, or a local folder
    model: str = DEFAULT_MODEL
    embedding_dim: int | None = None  # Matryoshka truncation; None keeps the model's full size
    batch_size: int = 16

    # reading the data folder: a symbolic link to a file outside it is skipped unless allowed (a file
    # elsewhere on the server would be indexed and quoted); a report with more text than this is skipped
    # with a message (20 MB of text is ~40,000 chunks and hours of embedding)
    allow_outside_links: bool = False
    max_document_chars: int = 2_000_000

    # chunking, counted in cl100k_base tokens
    chunk_tokens: int = 200
    chunk_overlap: int = 40

    # retrieval and answering
    k: int = 10
    fusion_weights: tuple[float, float, float] = (0.7, 1.0, 0.5)  # passage, best sentence, BM25
    date_bonus: float = 0.1
    answer_passages: int = 5
    max_answer_sentences: int = 3
    max_answer_words: int = 40  # a quote longer than this is never given whole (its clauses are)
    # The learned reader (rag/answering/reader.py) and how often it may refuse an answerable question:
    # the abstention threshold is the one that refuses at most this share of the answerable questions
    # it was trained on (held-out). abstain_threshold, when set, overrides it with a fixed probability.
    reader_file: Path = DEFAULT_READER
    max_false_refusal: float = 0.05
    abstain_threshold: float | None = None
    reranker: str | None = None
    max_question_chars: int = 2000

    # how a follow-up question becomes a standalone one: "rules" (rag/answering/conversation.py) or "llm"
    # (the openai backend's server condenses it; the rules when it cannot)
    condense: str = "rules"

    # generation
    generator: str = "extractive"
    llm_base_url: str = "http://127.0.0.1:8080/v1"
    llm_model: str = "local"
    llm_api_key_env: str = "OPENAI_API_KEY"
    llm_timeout_s: float = 120.0
    llm_context_tokens: int = 3000

    # serving
    host: str = "127.0.0.1"
    port: int = 7860
    root_path: str = ""
    mount_path: str = "/"
    frame_ancestors: str = "'self'"
    auth_file: Path | None = None
    sso_header: str | None = None
    queue_limit: int = 64
    feedback_log: Path = Path("feedback/feedback.jsonl")
    concurrency_limit: int = 2  # answers computed at once (UI queue workers and API requests)
    # API questions that may wait for a worker; one more is a 503 with Retry-After at once, and a
    # waiting one gives up after api_queue_wait_s (also a 503), so a flood never ties up the server
    api_queue_limit: int = 8
    api_queue_wait_s: float = 20.0
    api_client_limit: int = 2  # of those places, how many one client address may hold
    feedback_store: str = "file"  # where feedback goes: "file" (feedback_log, JSON lines)
    # space-separated peer addresses whose X-Forwarded-For/-Proto/-Host are believed (the reverse proxy)
    trusted_proxies: str = "127.0.0.1 ::1"
    allowed_hosts: str = "*"  # space-separated Host names the app answers to; "*" = any
    # space-separated generators an API or UI user may pick; the site's `generator` is always allowed
    client_generators: str = ""
    # the accessibility statement's contact details and dates (static/tillganglighet.html); one left
    # empty is said plainly on the page to be not yet filled in by the site
    a11y_contact: str = ""  # e-mail address for accessibility problems
    a11y_phone: str = ""
    a11y_office: str = ""  # the responsible office (förvaltning) and its mailbox
    a11y_reply_days: str = ""  # working days to a reply, normally
    a11y_assessed: str = ""  # when the service was last assessed (YYYY-MM-DD)
    a11y_updated: str = ""  # when the statement was last updated (YYYY-MM-DD)

    # question embedding (rag/embedding/query_backends.py): fp32 | int8 | onnx | onnx-int8.
    # onnx (fp32 ONNX Runtime, ~3x faster than fp32 PyTorch) is the default because it
    # is reproducible: int8 activation rounding turns last-bit float differences between machines into
    # vectors ~0.007 apart in cosine, enough to flip answers near the abstention threshold (docs/evaluation.md).
    # onnx-int8 is ~3x faster again for sites that accept that. Both need `rag model export-onnx` once
    # (scripts/setup.sh runs it); until then questions use fp32.
    query_backend: str = "onnx"
    # document embedding at index time: onnx (the exported fp32 graph, batches of like length) | fp32
    # (PyTorch). The same vectors to rounding; the manifest records which one built an index, and an
    # index is never mixed (a build on the other path embeds everything again).
    document_backend: str = "onnx"
    # every embedded text's vector kept in cache_dir/vectors/ (per model and path), for any later build
    # into any folder or store on this machine; delete the folder to reclaim the space
    vector_cache: bool = True

    def replace(self, **overrides) -> Settings:
        """A copy with some fields changed; `None` values are ignored so CLI flags can pass through."""
        given = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(given) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"Unknown setting(s): {', '.join(sorted(unknown))}.")
        return dataclasses.replace(self, **{k: _coerce(self, k, v) for k, v in given.items()})

    @property
    def model_dir(self) -> Path:
        return self.cache_dir / "models"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides) -> Settings:
        """Defaults, then RAG_<FIELD> environment variables, then keyword overrides."""
        environ = os.environ if environ is None else environ
        from_env = {
            f.name: environ[f"RAG_{f.name.upper()}"]
            for f in dataclasses.fields(cls)
            if f"RAG_{f.name.upper()}" in environ
        }
        return cls().replace(**from_env).replace(**overrides)


def _coerce(settings: Settings, name: str, value):
    """Turn strings (from env or CLI) into the field's type, with a clear error."""
    current = getattr(settings, name)
    if not isinstance(value, str):
        return value
    try:
        if isinstance(current, bool):
            return value.strip().lower() in {"1", "true", "yes", "on"}
        if isinstance(current, int):
            return int(value)
        if isinstance(current, float) or name == "abstain_threshold":
            return float(value)
        if isinstance(current, tuple):  # "1,1,0.15"
            return tuple(float(part) for part in value.split(","))
        if isinstance(current, Path) or name in {"auth_file", "feedback_log", "reader_file"}:
            return Path(value)
        if name == "embedding_dim":
            return int(value) if value else None
    except ValueError:
        raise ConfigError(f"Setting {name}={value!r} is not a valid {type(current).__name__}.") from None
    return value or None if name in {"reranker", "sso_header"} else value
