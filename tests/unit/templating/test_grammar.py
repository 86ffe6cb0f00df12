from __future__ import annotations

import pytest

from webhook.templating.grammar import (
    Reference,
    Selector,
    SelectorKind,
    TemplateError,
    is_candidate,
    parse,
    parse_reference,
    parse_selector,
)


def ref(text: str) -> Reference:
    return parse(text).reference


# --- the seed form -------------------------------------------------------------


def test_seed_form_with_spaces_in_name() -> None:
    t = parse('{{ mlflow.blob["iris demo1"] }}')
    assert t.registry == "mlflow"
    assert t.profile == "blob"
    assert t.reference == Reference("iris demo1", Selector(SelectorKind.DEFAULT))
    assert t.text == '{{ mlflow.blob["iris demo1"] }}'


@pytest.mark.parametrize(
    "text",
    [
        '{{mlflow.s3["fraud@champion"]}}',
        "{{ mlflow.s3['fraud@champion'] }}",
        '{{   mlflow  .  s3  [  "fraud@champion"  ]   }}',
        '{{\tmlflow.s3[\n"fraud@champion"\n]}}',
        '  {{ mlflow.s3["fraud@champion"] }}  ',
    ],
)
def test_whitespace_and_quotes_are_free(text: str) -> None:
    t = parse(text)
    assert (t.registry, t.profile) == ("mlflow", "s3")
    assert t.reference == Reference("fraud", Selector(SelectorKind.ALIAS, "champion"))


def test_quote_of_the_other_kind_is_part_of_the_name() -> None:
    assert ref("""{{ r.p["it's"] }}""").name == "it's"


def test_registry_and_profile_names_may_hold_dashes_and_digits() -> None:
    t = parse('{{ team-2_reg.model_car-1["m/1"] }}')
    assert (t.registry, t.profile) == ("team-2_reg", "model_car-1")


# --- the models:/ form ---------------------------------------------------------


def test_models_uri_uses_configured_defaults() -> None:
    t = parse("models:/fraud/Production")
    assert t.registry is None
    assert t.profile is None
    assert t.reference == Reference("fraud", Selector(SelectorKind.STAGE, "Production"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("models:/iris demo1@champion", Reference("iris demo1", Selector(SelectorKind.ALIAS, "champion"))),
        ("models:/fraud/7", Reference("fraud", Selector(SelectorKind.VERSION, "7"))),
        ("models:/fraud/007", Reference("fraud", Selector(SelectorKind.VERSION, "7"))),
        ("models:/fraud/Production", Reference("fraud", Selector(SelectorKind.STAGE, "Production"))),
        ("models:/fraud/production", Reference("fraud", Selector(SelectorKind.STAGE, "Production"))),
        ("models:/fraud/STAGING", Reference("fraud", Selector(SelectorKind.STAGE, "Staging"))),
        ("models:/fraud/archived", Reference("fraud", Selector(SelectorKind.STAGE, "Archived"))),
        ("models:/fraud/None", Reference("fraud", Selector(SelectorKind.STAGE, "None"))),
        ("models:/fraud/latest", Reference("fraud", Selector(SelectorKind.LATEST, "latest"))),
        ("models:/fraud/Latest", Reference("fraud", Selector(SelectorKind.LATEST, "latest"))),
        ("models:/fraud", Reference("fraud", Selector(SelectorKind.DEFAULT))),
        ("models:/a@b@c", Reference("a@b", Selector(SelectorKind.ALIAS, "c"))),
    ],
)
def test_reference_forms(text: str, expected: Reference) -> None:
    assert ref(text) == expected


def test_selector_strings_and_pinning() -> None:
    assert str(ref("models:/m@champ")) == "m@champ"
    assert str(ref("models:/m/3")) == "m/3"
    assert str(ref("models:/m/production")) == "m/Production"
    assert str(ref("models:/m/latest")) == "m/latest"
    assert str(ref("models:/m")) == "m"
    assert ref("models:/m/3").selector.pinned
    assert not ref("models:/m@champ").selector.pinned
    assert not ref("models:/m/Production").selector.pinned
    assert not ref("models:/m/latest").selector.pinned


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("{{ x", True),
        ("   {{", True),
        ("models:/x", True),
        (" models:/x", True),
        ("s3://bucket/models:/x", False),
        ("prefix {{ mlflow.s3['x'] }}", False),
        ("{ {", False),
        ("models:x", False),
        ("", False),
    ],
)
def test_is_candidate(value: str, expected: bool) -> None:
    assert is_candidate(value) is expected


# --- errors, with the column of the offending character --------------------------


def _error(text: str) -> TemplateError:
    with pytest.raises(TemplateError) as info:
        parse(text)
    return info.value


@pytest.mark.parametrize(
    ("text", "column", "reason"),
    [
        ('{{ mlflow blob["x"] }}', 11, "expected '.' between registry and profile, found 'b'"),
        ('{{ mlflow.blob("x") }}', 15, "expected '[' after profile, found '('"),
        ("{{ mlflow.blob[iris] }}", 16, "expected a quoted model reference, found 'i'"),
        ('{{ mlflow.blob["iris" }}', 23, "expected ']' after the model reference, found '}'"),
        ('{{ mlflow.blob["iris"] ', 24, "expected '}}', found end of text"),
        ('{{ mlflow.blob["iris"] }', 24, "expected '}}', found '}'"),
        ('{{ mlflow.blob["iris@a"] }} extra', 29, "unexpected text after '}}', found 'e'"),
        ("{{ 42 }}", 4, "expected registry name, found '4'"),
        ("{{ }}", 4, "expected registry name, found '}'"),
        ("{{", 3, "expected registry name, found end of text"),
        ("{{garbage", 10, "expected '.' between registry and profile, found end of text"),
        ("{{ mlflow.[x] }}", 11, "expected profile name, found '['"),
    ],
)
def test_scanner_errors(text: str, column: int, reason: str) -> None:
    err = _error(text)
    assert err.column == column
    assert err.reason == reason
    assert str(err) == f"{reason} at column {column}"


def test_unterminated_quote_points_past_the_end() -> None:
    text = '{{ mlflow.blob["iris demo1 }}'
    err = _error(text)
    assert err.reason == 'unterminated " string'
    assert err.column == len(text) + 1


def test_unterminated_single_quote() -> None:
    text = "{{ mlflow.blob['iris\"] }}"
    err = _error(text)
    assert err.reason == "unterminated ' string"
    assert err.column == len(text) + 1


def test_unknown_stage_points_at_the_selector() -> None:
    text = '{{ mlflow.blob["iris/Prod"] }}'
    err = _error(text)
    assert err.column == text.index("Prod") + 1 == 22
    assert err.reason.startswith("unknown selector 'Prod'")
    assert "Staging, Production, Archived, None" in err.reason


@pytest.mark.parametrize(
    ("text", "column", "reason"),
    [
        ("models:/iris@", 14, "expected an alias after '@'"),
        ('{{ mlflow.blob["iris@"] }}', 22, "expected an alias after '@'"),
        ("models:/ir:is/1", 11, "model names never hold ':'"),
        ('{{ m.p["a:b@c"] }}', 10, "model names never hold ':'"),
        ("models:/iris@ch:amp", 16, "unexpected ':' in alias"),
        ("models:/iris/0", 14, "model versions start at 1"),
        ("models:/iris/000", 14, "model versions start at 1"),
        ("models:/iris/", 14, "expected a version, stage or 'latest' after '/'"),
        ("models:/iris/1/2", 15, "unexpected '/' in selector"),
        ("models:/iris/1@x", 15, "unexpected '@' in selector"),
        ("models:/", 9, "empty model reference"),
        ('{{ m.p[""] }}', 9, "empty model reference"),
        ("models:/@champion", 9, "empty model name"),
        ("models:/ /1", 9, "empty model name"),
        ('{{ m.p[" iris/1"] }}', 9, "model name has leading or trailing whitespace"),
        ("models:/iris ", 13, "trailing whitespace after models:/ URI"),
    ],
)
def test_reference_errors(text: str, column: int, reason: str) -> None:
    err = _error(text)
    assert (err.column, err.reason) == (column, reason)


def test_the_column_points_at_the_offending_character() -> None:
    err = _error("models:/iris/0")
    assert err.column == 14 and err.text[err.column - 1] == "0"


def test_template_error_is_a_value_error() -> None:
    assert issubclass(TemplateError, ValueError)


def test_parse_reference_offsets_columns_by_start() -> None:
    with pytest.raises(TemplateError) as info:
        parse_reference("0123456789iris/0", 10, "iris/0")
    assert info.value.column == 16


def test_non_ascii_digit_version_is_a_template_error() -> None:
    with pytest.raises(TemplateError):
        parse("models:/iris/²")


# --- whitespace, sizes and the parse cache ----------------------------------


def test_every_unicode_whitespace_before_a_template_makes_a_candidate() -> None:
    from webhook.templating.grammar import WHITESPACE

    assert len(WHITESPACE) == 29  # White_Space (25) and U+001C..U+001F
    for ws in WHITESPACE:
        assert is_candidate(ws + "models:/x"), hex(ord(ws))
        assert is_candidate(ws * 3 + "{{"), hex(ord(ws))
        assert parse(ws + "models:/fraud/2").reference.name == "fraud"
    # not whitespace: a zero-width space or a word joiner hides nothing
    assert not is_candidate("\u200bmodels:/x") and not is_candidate("\u2060{{")


def test_mlflow_sized_names_and_aliases_parse_and_longer_ones_do_not() -> None:
    from webhook.templating.grammar import MAX_ALIAS_CHARS, MAX_NAME_CHARS

    name, alias = "\U0001d518" * MAX_NAME_CHARS, "\U0001d51e" * MAX_ALIAS_CHARS
    assert parse(f'{{{{ mlflow.blob["{name}@{alias}"] }}}}').reference.name == name
    with pytest.raises(TemplateError, match="model name longer than"):
        parse(f"models:/{name}x@a")
    with pytest.raises(TemplateError, match="alias longer than"):
        parse(f"models:/n@{alias}x")
    with pytest.raises(TemplateError, match="longer than 19 digits"):
        parse("models:/n/" + "9" * 20)
    assert parse("models:/n/" + "0" * 30 + "7").reference.selector.value == "7"


def test_a_template_past_the_byte_limit_is_refused_before_parsing() -> None:
    from webhook.templating.grammar import MAX_TEMPLATE_BYTES, PARSE_CACHE

    before = len(PARSE_CACHE)
    with pytest.raises(TemplateError, match=f"longer than {MAX_TEMPLATE_BYTES} bytes") as err:
        parse("models:/" + "é" * MAX_TEMPLATE_BYTES)  # 2 bytes each: over the limit in bytes, not in characters
    assert len(err.value.text) < 100
    assert len(PARSE_CACHE) == before


def test_the_parse_cache_is_bounded_in_characters() -> None:
    from webhook.templating.grammar import PARSE_CACHE

    for i in range(2000):
        # whitespace inside the braces is free: about 3,500 characters each
        parse("{{ mlflow.blob['" + str(i) + "n" * 200 + "@" + "a" * 250 + "']" + " " * 3000 + "}}")
        assert PARSE_CACHE.chars <= PARSE_CACHE.max_chars
    assert len(PARSE_CACHE) < 2000 and PARSE_CACHE.chars > PARSE_CACHE.max_chars // 2


# --- MLflow 3 logged models -----------------------------------------------------

LOGGED = "m-074689226d3b40bfbbdf4c3ff35832cd"  # the form mlflow.<flavor>.log_model returns


@pytest.mark.parametrize("text", [f"models:/{LOGGED}", f'{{{{ mlflow.s3["{LOGGED}"] }}}}', f"  models:/{LOGGED}"])
def test_logged_model_id_is_a_pinned_logged_model_reference(text: str) -> None:
    found = ref(text)
    assert found == Reference(LOGGED, Selector(SelectorKind.LOGGED_MODEL, LOGGED))
    assert found.selector.pinned
    assert str(found) == LOGGED


@pytest.mark.parametrize(
    "name",
    [
        "m-demo",  # not hex
        "m-074689226D3B40BFBBDF4C3FF35832CD",  # MLflow writes lowercase hex only
        "m-074689226d3b40bfbbdf4c3ff35832c",  # 31 digits
        "m-074689226d3b40bfbbdf4c3ff35832cd0",  # 33 digits
        "M-074689226d3b40bfbbdf4c3ff35832cd",
        "xm-074689226d3b40bfbbdf4c3ff35832cd",
    ],
)
def test_names_not_of_the_exact_id_form_stay_registered_models(name: str) -> None:
    assert ref(f"models:/{name}") == Reference(name, Selector(SelectorKind.DEFAULT))


@pytest.mark.parametrize(
    ("suffix", "selector"),
    [
        ("/3", Selector(SelectorKind.VERSION, "3")),
        ("@champion", Selector(SelectorKind.ALIAS, "champion")),
        ("/latest", Selector(SelectorKind.LATEST, "latest")),
        ("/Production", Selector(SelectorKind.STAGE, "Production")),
    ],
)
def test_a_selector_makes_an_id_shaped_name_a_registered_model(suffix: str, selector: Selector) -> None:
    # the way to reach a registered model literally named like a logged model id
    assert ref(f"models:/{LOGGED}{suffix}") == Reference(LOGGED, selector)


def test_only_versions_and_logged_models_are_pinned() -> None:
    pinned = {kind for kind in SelectorKind if Selector(kind, "x").pinned}
    assert pinned == {SelectorKind.VERSION, SelectorKind.LOGGED_MODEL}


# --- default selectors, as configured --------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("champion", "invalid default selector 'champion': expected @alias or /version|stage|latest"),
        ("@", "invalid default selector '@': expected an alias after '@'"),
        ("@a/b", "invalid default selector '@a/b': an alias holds no '/', '@', ':' or outer spaces"),
        ("@champion/2", "invalid default selector '@champion/2': an alias holds no"),
        ("/0", "invalid default selector '/0': model versions start at 1"),
        ("/Prod", "invalid default selector '/Prod': unknown selector 'Prod'"),
        ("/", "invalid default selector '/': expected a version, stage or 'latest' after '/'"),
        ("/7@x", "invalid default selector '/7@x': expected @alias or /version|stage|latest"),
    ],
)
def test_invalid_selectors_are_named_with_their_cause(value: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_selector(value)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    ("value", "selector"),
    [
        ("@champion", Selector(SelectorKind.ALIAS, "champion")),
        ("/7", Selector(SelectorKind.VERSION, "7")),
        ("/production", Selector(SelectorKind.STAGE, "Production")),
        ("/latest", Selector(SelectorKind.LATEST, "latest")),
    ],
)
def test_valid_selectors(value: str, selector: Selector) -> None:
    assert parse_selector(value) == selector
