"""The list catalogue: which mailing lists exist, what a person sees them called, and which
ones a signup joins when it names none. From settings (MAILPIPE_LISTS,
MAILPIPE_SIGNUP_DEFAULT_LISTS); the signup form, the preference center and the console read
it here, so a list's name is written in one place."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from shared.domain.errors import ConfigurationError, InvalidInput

DEFAULT_LISTS = (
    "newsletter=Weekly newsletter",
    "product-updates=Product updates",
    "offers=Offers and discounts",
)
DEFAULT_SIGNUP_LISTS = ("newsletter",)


@dataclass(frozen=True)
class MailingList:
    name: str  # what segments, documents and forms use
    display_name: str  # what a person reads


@dataclass(frozen=True)
class ListCatalog:
    lists: tuple[MailingList, ...]
    signup_defaults: tuple[str, ...]

    @classmethod
    def parse(cls, entries: Iterable[str], signup_defaults: Sequence[str]) -> ListCatalog:
        """From `name=Display name` entries (a bare name is its own display name); raises
        ConfigurationError for a duplicate or a default list that is not in the catalogue."""
        lists: dict[str, MailingList] = {}
        for entry in entries:
            name, _, display = (part.strip() for part in entry.partition("="))
            if not name or name in lists:
                raise ConfigurationError(f"MAILPIPE_LISTS: {entry!r} is empty or a duplicate")
            lists[name] = MailingList(name, display or name)
        unknown = [n for n in signup_defaults if n not in lists]
        if unknown:
            raise ConfigurationError(
                f"MAILPIPE_SIGNUP_DEFAULT_LISTS names {', '.join(unknown)}, which MAILPIPE_LISTS "
                f"does not: {', '.join(lists)}"
            )
        return cls(tuple(lists.values()), tuple(signup_defaults))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.lists)

    def display_name(self, name: str) -> str:
        """What a person sees; a list no longer in the catalogue shows its name."""
        return next((m.display_name for m in self.lists if m.name == name), name)

    def choose(self, raw: object) -> list[str]:
        """A form or JSON `lists` value (one name or a list of names) as known names, in order;
        InvalidInput naming what is allowed otherwise."""
        if raw in (None, ""):
            return []
        values = [raw] if isinstance(raw, str) else raw
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise InvalidInput("lists must be a list of names", field="lists")
        unknown = [v for v in values if v not in self.names]
        if unknown:
            raise InvalidInput(
                f"unknown lists: {', '.join(unknown)}; allowed: {', '.join(self.names)}",
                field="lists",
            )
        return list(dict.fromkeys(values))

    def for_signup(self, chosen: Sequence[str]) -> list[str]:
        """The lists a signup joins: those it chose, or the defaults when it chose none."""
        return list(chosen) if chosen else list(self.signup_defaults)
