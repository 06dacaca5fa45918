"""Rendering: escaping per field, strict variables named with their path, sandboxing, syntax
errors with lines, webhooks as JSON, and a version rendered with locale fallback."""

from __future__ import annotations

import pytest

from services.notifications.domain import message
from services.notifications.domain import render as r
from services.notifications.domain.template import Version
from services.notifications.domain.variant import EMAIL, SMS, WEBHOOK, Variant


def test_html_is_escaped_text_is_not() -> None:
    data = {"name": "<b>Tom & Jerry</b>"}
    assert r.render_part(r.HTML, "html", "<p>{{ name }}</p>", data) == (
        "<p>&lt;b&gt;Tom &amp; Jerry&lt;/b&gt;</p>"
    )
    assert r.render_part(r.TEXT, "text", "Hi {{ name }}", data) == "Hi <b>Tom & Jerry</b>"


@pytest.mark.parametrize(
    ("source", "data", "named"),
    [
        ("Hi {{ first_name }}", {}, "'first_name'"),
        ("Hi {{ contact.first_name }}", {"contact": {}}, "'contact.first_name'"),
        ("{{ cart.items[2].sku }}", {"cart": {"items": [{"sku": 1}]}}, "'cart.items[2]'"),
        (
            "{% for i in cart.items %}{{ i.name }}{% endfor %}",
            {"cart": {"items": [{}]}},
            "'cart.items[0].name'",
        ),
    ],
)
def test_a_missing_variable_is_an_error_naming_it(
    source: str, data: dict[str, object], named: str
) -> None:
    with pytest.raises(r.RenderFailure) as info:
        r.render_part(r.TEXT, "text", source, data)
    assert named in info.value.message
    assert info.value.line == 1


def test_the_error_gives_the_line() -> None:
    with pytest.raises(r.RenderFailure) as info:
        r.render_part(r.TEXT, "body", "line one\nline two\n{{ nope }}", {})
    assert info.value.line == 3 and info.value.part == "body"


def test_data_keys_win_over_dict_methods() -> None:
    data = {"cart": {"items": [{"sku": "A"}, {"sku": "B"}]}}
    src = "{% for i in cart.items %}{{ i.sku }}{% endfor %}"
    assert r.render_part(r.TEXT, "text", src, data) == "AB"


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",  # the sandbox refuses private attributes
        "{{ 'x' * 2000000 }}",
        "{{ 10 ** 1000 }}",
        "{% for i in range(200000) %}{% endfor %}",
        "{{ 1 / 0 }}",
        "{% for i in range(100000) %}{{ 'xxxxxxxxxxxxxxxxxxxxxxxxxx' }}{% endfor %}",
    ],
)
def test_what_a_template_does_wrong_is_a_render_failure(source: str) -> None:
    with pytest.raises(r.RenderFailure):
        r.render_part(r.TEXT, "text", source, {})


@pytest.mark.timeout(20)  # without the budget these run for hours
@pytest.mark.parametrize(
    "source",
    [
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{% for a in items %}{% for b in items %}{% for c in items %}{% endfor %}{% endfor %}"
        "{% endfor %}",
    ],
)
def test_nested_loops_run_out_of_their_budget(source: str) -> None:
    with pytest.raises(r.RenderFailure, match="loop iterations"):
        r.render_part(r.TEXT, "text", source, {"items": list(range(1000))})


def test_loops_within_the_budget_render_and_each_field_has_its_own() -> None:
    src = "{% for i in range(1000) %}{% for j in range(999) %}{% endfor %}{% endfor %}ok"
    assert r.render_part(r.TEXT, "text", src, {}) == "ok"
    assert r.render_part(r.TEXT, "text", src, {}) == "ok"
    loop = "{% for i in items %}{{ loop.index }}{{ i }}{% if loop.last %}/{{ loop.length }}{% endif %}{% endfor %}"
    assert r.render_part(r.HTML, "html", loop, {"items": ["a", "b"]}) == "1a2b/2"


def test_syntax_errors_name_field_and_line() -> None:
    found = r.syntax_errors(
        EMAIL, {"subject": "ok", "text": "a\nb\n{% if %}", "html": "{{ x | no_such_filter }}"}
    )
    assert [(p.part, p.line) for p in found] == [("text", 3), ("html", 1)]


def test_webhook_placeholders_are_json_values() -> None:
    data = {"name": 'Ada "the" Countess', "n": 3, "tags": ["a"], "missing": None}
    out = r.render_part(
        r.JSON,
        "body",
        '{"name": {{ name }}, "n": {{ n }}, "t": {{ tags }}, "m": {{ missing }}}',
        data,
    )
    assert out == '{"name": "Ada \\"the\\" Countess", "n": 3, "t": ["a"], "m": null}'


def version(*variants: Variant) -> Version:
    return Version(1, "n", variants)


def test_render_follows_the_locale_fallback() -> None:
    v = version(
        Variant("", subject="Hello {{ n }}", text="Hello"),
        Variant("fr", subject="Bonjour {{ n }}", text="Bonjour"),
    )
    assert message.render(EMAIL, v, "fr-CA", {"n": 1}).subject == "Bonjour 1"
    assert message.render(EMAIL, v, "fr-CA", {"n": 1}).locale == "fr"
    assert message.render(EMAIL, v, "de", {"n": 1}).subject == "Hello 1"


def test_sms_render_measures_the_body() -> None:
    out = message.render(SMS, version(Variant("", body="{{ m }}")), "", {"m": "€" * 81})
    assert out.sms is not None and (out.sms.encoding, out.sms.segments) == ("GSM7", 2)


def test_a_subject_with_a_line_break_fails() -> None:
    v = version(Variant("", subject="Hi {{ n }}", text="x"))
    with pytest.raises(r.RenderFailure):
        message.render(EMAIL, v, "", {"n": "a\r\nBcc: x@example.com"})


def test_a_webhook_that_is_not_json_fails() -> None:
    with pytest.raises(r.RenderFailure):
        message.render(WEBHOOK, version(Variant("", body='{"a": "{{ n }}"}')), "", {"n": "x"})


@pytest.mark.parametrize(
    ("source", "fields"),
    [
        ("Hi {{ contact.first_name }} <{{ contact['email'] }}>", {"first_name", "email"}),
        (
            "{{ contact.first_name | upper }}{% if contact.phone is defined %}!{% endif %}",
            {"first_name", "phone"},
        ),
        ("{{ data.offer }}", set()),
        ("{{ contact }}", None),
        ("{% for k in contact %}{{ k }}{% endfor %}", None),
        ("{{ contact[data.field] }}", None),
    ],
)
def test_the_contact_fields_a_template_reads(source: str, fields: set[str] | None) -> None:
    """SendMessage hands a template only the profile fields it reads (None: all of them)."""
    assert r.fields_read(source, "contact") == fields


def test_what_a_template_reads_is_answered_afresh_each_time() -> None:
    """The answers are kept per source (they cost a parse): a caller changing the set it got
    changes nothing for the next caller, and another name gets its own answer."""
    source = "{{ contact.first_name }} {{ data.offer }}"
    first = r.fields_read(source, "contact")
    assert first == {"first_name"}
    first.add("email")
    assert r.fields_read(source, "contact") == {"first_name"}
    assert r.fields_read(source, "data") == {"offer"}
    names = r.names_read(source)
    names.clear()
    assert r.names_read(source) == {"contact", "data"}
    assert r.names_read("{% if x %}") == set()  # a syntax error reads nothing


def test_the_fields_a_variant_reads_across_its_parts() -> None:
    v = Version(
        1,
        "n",
        (Variant("", subject="{{ contact.first_name }}", text="{{ contact.email }}"),),
    )
    assert message.fields_read_by(v, "", "contact") == {"first_name", "email"}
    whole = Version(1, "n", (Variant("", subject="x", text="{{ contact }}"),))
    assert message.fields_read_by(whole, "fr", "contact") is None
