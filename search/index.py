"""One tantivy index of published listings and its single writer.

tantivy allows one writer per index directory; a replica owns its index, so all writes go
through here. Changes become visible to searches at `commit` (the reader reloads then), which the
replica calls once per batch of events - the freshness budget is spent there, not per document.
An index directory is immutable in identity: a rebuild writes a new directory next to it and
the replica swaps (search/store.py)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tantivy import Document, Index, IndexWriter, Searcher

from search.analysis import register
from search.schema import build_schema

_WRITER_HEAP_BYTES = 64_000_000
_BULK_WRITER_HEAP_BYTES = 256_000_000


class ListingIndex:
    def __init__(self, path: Path | None, *, bulk: bool = False) -> None:
        """An index at `path` (opened if it exists, created if not), or in memory for None.
        `bulk` gives the writer more memory and threads, for building a whole index at once."""
        self.path = path
        self.schema = build_schema()
        if path is not None:
            path.mkdir(parents=True, exist_ok=True)
        self._index = Index(self.schema, str(path) if path is not None else None)
        register(self._index)
        # The reader reloads when we say so (after our own commits), not on a timer.
        self._index.config_reader(reload_policy="Manual")
        heap, threads = (_BULK_WRITER_HEAP_BYTES, 2) if bulk else (_WRITER_HEAP_BYTES, 1)
        self._writer: IndexWriter | None = self._index.writer(heap, threads)
        self._searcher = self._index.searcher()

    @property
    def writer(self) -> IndexWriter:
        if self._writer is None:
            raise RuntimeError("this index was closed")
        return self._writer

    def put(self, listing_id: str, document: Document) -> None:
        """Add or replace the listing's document (visible after `commit`)."""
        self.writer.delete_documents_by_term("id", listing_id)
        self.writer.add_document(document)

    def put_new(self, document: Document) -> None:
        """Add a document known not to be in the index (a fresh build)."""
        self.writer.add_document(document)

    def delete(self, listing_ids: Iterable[str]) -> None:
        for listing_id in listing_ids:
            self.writer.delete_documents_by_term("id", listing_id)

    def commit(self) -> None:
        self.writer.commit()
        self._index.reload()
        self._searcher = self._index.searcher()

    def searcher(self) -> Searcher:
        """The searcher as of the last commit; hold it for the whole of one query."""
        return self._searcher

    @property
    def num_docs(self) -> int:
        return int(self._searcher.num_docs)

    def close(self) -> None:
        """Let merges finish and release the directory's writer lock."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.wait_merging_threads()
