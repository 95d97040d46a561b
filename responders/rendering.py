"""Jinja2 templates per language: an operator's override directory first, then ours.

Templates are ours or the operator's; text from a mail is only ever a variable,
never template source, so a player cannot write template code. HTML templates
(``*.html.j2``) are autoescaped; plain-text ones are not, as escaping would show.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    DictLoader,
    Environment,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    Template,
    TemplatesNotFound,
)

__all__ = ["DEFAULT_LANGUAGE", "Templates"]

DEFAULT_LANGUAGE = "en"
_LANGUAGE = re.compile(r"[a-z]{2,3}")


def _is_html(name: str | None) -> bool:
    return name is not None and name.endswith((".html.j2", ".html", ".htm"))


def _sources(loader: BaseLoader) -> dict[str, str]:
    """Every template's source, the override's where it has one."""
    probe = Environment(loader=loader)
    return {name: loader.get_source(probe, name)[0]
            for name in loader.list_templates() if name.endswith(".j2")}


class _FrozenEnvironment(Environment):
    """An environment whose globals are not changed once it is made (a frozen ``Templates``
    never changes them): each template gets them as a plain dict rather than the ChainMap
    that follows later changes, which every render would copy key by key (a good part of
    the cost of rendering a short template, thousands of times in a pass of the SLA
    monitor)."""

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        return {**self.globals, **(d or {})}


class Templates:
    """``render("ack.txt.j2", "kk", ...)`` reads ``kk/ack.txt.j2``, else the brand's default
    language's (``default_language``), else ``en/ack.txt.j2``.

    For each name the override directory is tried before the packaged templates, so an
    operator may override one language and leave the others ours.
    """

    def __init__(self, override_dir: str | None = None, *, frozen: bool = False,
                 default_language: str = DEFAULT_LANGUAGE) -> None:
        """`frozen` reads every template now and never looks at the files again: the desk's
        running value keeps the templates it was built with until a reload builds another,
        however the files change meanwhile. `default_language` is the brand's: what a player
        whose language we have no templates for reads."""
        loaders: list[BaseLoader] = [FileSystemLoader(override_dir)] if override_dir else []
        loaders.append(PackageLoader("responders", "templates"))
        loader: BaseLoader = ChoiceLoader(loaders)
        if frozen:
            loader = DictLoader(_sources(loader))
        self._env = (_FrozenEnvironment if frozen else Environment)(
            loader=loader,
            autoescape=_is_html,
            undefined=StrictUndefined,  # a misspelt variable fails the test, not the mail
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=not frozen,
        )
        self.default_language = _primary(default_language) or DEFAULT_LANGUAGE
        self._languages = self._listed() if frozen else None  # frozen: the files never change
        # Codes that are their own answer in language(): the frozen languages' primary codes.
        self._exact = frozenset(code for code in self._languages or ()
                                if _primary(code) == code)
        # Frozen: the template chosen for (name, language) never changes either, so it is
        # looked up once (a pass of the SLA monitor renders thousands of the same two).
        # A name none of the languages has keeps the names looked for, to raise again.
        self._chosen: dict[tuple[str, str], Template | tuple[str, ...]] | None = \
            {} if frozen else None

    def _listed(self) -> frozenset[str]:
        return frozenset(name.split("/", 1)[0] for name in self._env.list_templates()
                         if "/" in name)

    def languages(self) -> frozenset[str]:
        """The languages that have templates here, the override's included."""
        return self._languages if self._languages is not None else self._listed()

    def language(self, code: str | None) -> str:
        """The language to write in for a player's `code`: "ru-RU" → "ru" when we have Russian
        templates, else the brand's default language, else English."""
        if code in self._exact:  # already one of ours, as render() is mostly given
            return code  # type: ignore[return-value]
        have = self.languages()
        for language in (_primary(code), self.default_language):
            if language and language in have:
                return language
        return DEFAULT_LANGUAGE

    def check(self) -> None:
        """Compile every template now, so that a broken one is found when the settings are
        loaded (and a reload refused) rather than in the middle of composing a mail.
        Raises jinja2.TemplateSyntaxError naming the template and the line."""
        for name in self._env.list_templates(extensions=("j2",)):
            self._env.get_template(name)

    def render(self, name: str, language: str, **variables: Any) -> str:
        return self._template(name, self.language(language)).render(**variables)

    def _template(self, name: str, language: str) -> Template:
        key = (name, language)  # a language we have: bounded by the templates themselves
        if self._chosen is not None and key in self._chosen:
            chosen = self._chosen[key]
            if isinstance(chosen, tuple):  # frozen: still missing, as it was
                raise TemplatesNotFound(list(chosen))
            return chosen
        chain = dict.fromkeys((language, self.default_language, DEFAULT_LANGUAGE))
        try:
            template = self._env.select_template([f"{code}/{name}" for code in chain])
        except TemplatesNotFound as missing:
            # The acknowledgement asks for an FAQ of every new ticket's category, and most
            # categories have none: a frozen set answers that once, not per ticket.
            if self._chosen is not None:
                self._chosen[key] = tuple(map(str, missing.templates))
            raise
        if self._chosen is not None:
            self._chosen[key] = template
        return template


def _primary(code: str | None) -> str | None:
    """"pt-BR" → "pt"; None for anything that is not a language code."""
    primary = re.split(r"[-_]", (code or "").strip().lower(), maxsplit=1)[0]
    return primary if _LANGUAGE.fullmatch(primary) else None
