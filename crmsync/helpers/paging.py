"""Following a paged listing without going round in circles.

:class:`Paginator` hands out the position of each page (a page number, a token, the last id of the page before)
and refuses a next position it has handed out already, or a page that repeats the records of the page before it
(an API ignoring the position, a caching proxy): without it, such a pull reads the same page forever or moves its
cursor past records it never received.

Import it from :mod:`crmsync.helpers`.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from typing import Generic, TypeVar

from crmsync.errors import FatalAPIError

P = TypeVar("P", bound=Hashable)


class Paginator(Generic[P]):
    """The positions of a paged listing, checked for loops.

    Iterate over it for the position of each page (``start`` first, ``None`` for "the first page"), fetch that page
    and call :meth:`advance` with the next position the answer names (``None`` when it says there is no next
    page) and the ids of the page's records::

        pages = Paginator("GET /crm/v3/objects/contacts")
        for after in pages:
            body = self.call("GET", "/crm/v3/objects/contacts", params={"limit": 100, "after": after})
            yield body["results"]                       # yield before advancing: the last page counts too
            pages.advance(body.get("paging", {}).get("next", {}).get("after"), [r["id"] for r in body["results"]])

    Raises:
        FatalAPIError: from :meth:`advance`, when the next position was handed out before or the page repeats the
            records of the page before it (the pull stops; the next run resumes from the last stored cursor).
        RuntimeError: when iteration goes on without :meth:`advance` being called for a page (a bug in the loop).
    """

    def __init__(self, what: str, start: P | None = None) -> None:
        self.what = what
        self.position: P | None = start
        self.finished = False
        self.pages = 0
        self._visited: set[P] = set() if start is None else {start}
        self._previous: frozenset[str] = frozenset()

    def __iter__(self) -> Iterator[P | None]:
        while not self.finished:
            before = self.pages
            yield self.position
            if self.pages == before:
                raise RuntimeError(f"{self.what}: advance() was not called after page {before + 1}")

    def advance(self, next_position: P | None, ids: Iterable[str] = ()) -> None:
        """The page just read named ``next_position`` (``None``: it was the last) and held records ``ids``."""
        self.pages += 1
        page_ids = frozenset(map(str, ids))
        if page_ids and page_ids <= self._previous:
            self.finished = True
            raise FatalAPIError(
                f"{self.what}: page {self.pages} repeats the records of the page before it (a caching proxy, or a "
                "next-page position the API ignores?); stopped so that no record is skipped, the next run resumes"
            )
        self._previous = page_ids
        if next_position is None or next_position == "":
            self.finished = True
            return
        if next_position in self._visited:
            self.finished = True
            raise FatalAPIError(
                f"{self.what}: page {self.pages} names a next page that was read already; stopped so that the pull "
                "does not go round in circles, the next run resumes"
            )
        self._visited.add(next_position)
        self.position = next_position
