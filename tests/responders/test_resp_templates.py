"""Templates: override directory first, English when a language is missing."""

from __future__ import annotations

from pathlib import Path

import pytest
from jinja2 import TemplateNotFound, UndefinedError

from responders.rendering import Templates


def test_missing_language_falls_back_to_english() -> None:
    templates = Templates()
    assert templates.render("ack_subject.txt.j2", "fr", subject="x").startswith("We received")
    assert templates.render("ack_subject.txt.j2", "ru-RU", subject="x").startswith("Ваше обращение")
    traversal = templates.render("ack_subject.txt.j2", "../../etc", subject="x")
    assert traversal.startswith("We received")


def test_override_dir_changes_the_text_of_one_language(tmp_path: Path) -> None:
    (tmp_path / "ru").mkdir()
    (tmp_path / "ru" / "ack_subject.txt.j2").write_text("Заявка принята: {{ subject }}", "utf-8")
    templates = Templates(str(tmp_path))
    assert templates.render("ack_subject.txt.j2", "ru", subject="x") == "Заявка принята: x"
    assert templates.render("ack_subject.txt.j2", "en", subject="x").startswith("We received")


def test_override_dir_may_add_a_language(tmp_path: Path) -> None:
    (tmp_path / "de").mkdir()
    (tmp_path / "de" / "ack_subject.txt.j2").write_text("Anfrage erhalten: {{ subject }}", "utf-8")
    rendered = Templates(str(tmp_path)).render("ack_subject.txt.j2", "de", subject="x")
    assert rendered == "Anfrage erhalten: x"


def test_html_is_escaped_and_text_is_not(tmp_path: Path) -> None:
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "t.html.j2").write_text("<p>{{ v }}</p>", "utf-8")
    (tmp_path / "en" / "t.txt.j2").write_text("{{ v }}", "utf-8")
    templates = Templates(str(tmp_path))
    assert templates.render("t.html.j2", "en", v="<b>&") == "<p>&lt;b&gt;&amp;</p>"
    assert templates.render("t.txt.j2", "en", v="<b>&") == "<b>&"


def test_player_text_is_never_template_source() -> None:
    rendered = Templates().render("ack_subject.txt.j2", "en", subject="{{ 7 * 7 }}")
    assert "{{ 7 * 7 }}" in rendered and "49" not in rendered


def test_misspelt_variable_fails_loudly() -> None:
    with pytest.raises(UndefinedError):
        Templates().render("ack_subject.txt.j2", "en")


def test_a_language_we_lack_falls_back_to_the_brands_language_then_english(tmp_path: Path) -> None:
    russian_brand = Templates(default_language="ru")
    assert russian_brand.language("fr") == "ru"  # durations and sizes follow the templates
    assert russian_brand.render("ack_subject.txt.j2", "fr", subject="x").startswith("Ваше")
    assert russian_brand.render("ack_subject.txt.j2", "de", subject="x").startswith("Wir haben")
    (tmp_path / "it").mkdir()  # an operator's language with one template of its own
    (tmp_path / "it" / "ack_subject.txt.j2").write_text("Ricevuta: {{ subject }}", "utf-8")
    italian = Templates(str(tmp_path), default_language="ru")
    assert italian.language("it-IT") == "it"
    assert italian.render("ack_subject.txt.j2", "it", subject="x") == "Ricevuta: x"
    assert italian.render("held.subject.txt.j2", "it").startswith("Письмо")  # then the brand's
    assert Templates(default_language="xx").render("held.subject.txt.j2", "fr").startswith("A mail")


def test_frozen_templates_keep_the_same_fallback(tmp_path: Path) -> None:
    frozen = Templates(str(tmp_path), frozen=True, default_language="kk")
    assert frozen.language("fr") == "kk" and frozen.language("uz-Latn") == "uz"
    assert frozen.render("held.subject.txt.j2", "fr").startswith("Сіздің")


@pytest.mark.parametrize("frozen", [False, True], ids=["live", "frozen"])
def test_a_template_no_language_has_is_missing_every_time(frozen: bool) -> None:
    """An FAQ for a category without one is asked for on every new ticket: each time it is
    TemplateNotFound naming where it was looked for, and the others still render."""
    templates = Templates(frozen=frozen)
    for _ in range(3):
        with pytest.raises(TemplateNotFound) as missing:
            templates.render("faq_no_such_category.txt.j2", "ru")
        assert "ru/faq_no_such_category.txt.j2" in str(missing.value)
        assert "en/faq_no_such_category.txt.j2" in str(missing.value)
        assert templates.render("faq_refund.txt.j2", "ru").strip()
