"""PCRE2 -> Python `re` translation and nginx's error text for bad patterns."""

from __future__ import annotations

import pytest

from wsgate.config.regex import NginxRegexError, compile_nginx_regex, translate


@pytest.mark.parametrize("pattern, subject, groups", [
    (r"^/(?<app>\w+)/", "/chat/x", {"app": "chat"}),
    (r"^/(?'app'\w+)/", "/chat/x", {"app": "chat"}),
    (r"^/(?P<app>\w+)/", "/chat/x", {"app": "chat"}),
])
def test_named_groups(pattern: str, subject: str, groups: dict[str, str]) -> None:
    assert compile_nginx_regex(pattern).search(subject).groupdict() == groups


@pytest.mark.parametrize("pattern, subject, matches", [
    (r"(?<=a)b", "ab", True), (r"(?<!a)b", "ab", False),          # lookbehinds kept
    (r"(?<q>x)\k<q>", "xx", True), (r"(?<q>x)\k{q}", "xx", True), (r"(x)\g{1}", "xx", True),
    (r"(x)\g1", "xx", True),
    (r"^a\Q.*+\Eb$", "a.*+b", True), (r"^a\Q.*", "a.*", True), (r"^a\Q.*\Eb$", "axxb", False),
    (r"abc\z", "abc\n", False), (r"abc\Z", "abc\n", True), (r"abc$", "abc\n", True),
    (r"a\hb", "a\tb", True), (r"a\Hb", "a b", False), (r"[\h]", " ", True),
    (r"a\Rb", "a\r\nb", True), (r"a\Nb", "a\nb", False), (r"\e", "\x1b", True),
    (r"\x{41}", "A", True), (r"\o{101}", "A", True), (r"\cA", "\x01", True),
    (r"^[[:alpha:]]+[[:digit:]]$", "ab1", True), (r"^[[:xdigit:]]+$", "0fA", True),
    (r"^[[:punct:]]$", "!", True), (r"^[[:space:]]$", "a", False),
    (r"a{,2}", "a{,2}", True), (r"a{2}", "aa", True), (r"x{", "x{", True),
    (r"\w", "\xe9", False), (r"\d", "\u0663", False),               # ASCII classes
    (r"[]a]", "]", True), (r"[a&&b]", "&", True), (r"[a|~]", "~", True),
    (r"a++b", "aab", True), (r"(?>a+)b", "aab", True),              # possessive, atomic
    (r"(?i)ab", "AB", True),
])
def test_translation_matches_pcre_semantics(pattern: str, subject: str, matches: bool) -> None:
    assert (compile_nginx_regex(pattern).search(subject) is not None) is matches


def test_caseless_is_ascii_only() -> None:
    regex = compile_nginx_regex("^é$|^abc$", caseless=True)
    assert regex.search("ABC") and not regex.search("É")


def test_translate_is_plain_for_common_patterns() -> None:
    assert translate(r"^/api/v[0-9]+/(.*)$") == r"^/api/v[0-9]+/(.*)$"


@pytest.mark.parametrize("pattern, message", [
    ("^(foo", 'pcre2_compile() failed: missing closing parenthesis in "^(foo"'),
    ("[a-", 'pcre2_compile() failed: missing terminating ] for character class in "[a-"'),
    ("(?<1x>a)", 'pcre2_compile() failed: subpattern name must start with a non-digit '
                 'in "(?<1x>a)" at "1x>a)"'),
    ("[[:foo:]]", 'pcre2_compile() failed: unknown POSIX class name in "[[:foo:]]" '
                  'at "foo:]]"'),
    ("*a", 'pcre2_compile() failed: quantifier does not follow a repeatable item '
           'in "*a"'),
    ("a)", 'pcre2_compile() failed: unmatched closing parenthesis in "a)" at ")"'),
])
def test_errors_in_nginx_words(pattern: str, message: str) -> None:
    with pytest.raises(NginxRegexError) as info:
        compile_nginx_regex(pattern)
    assert str(info.value).startswith(message)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("pattern", [
    r"(?|a|b)", r"(?R)", r"(*UTF)a", r"a\Kb", r"\p{L}", r"a(?i)b", r"\g{-1}", r"[[:^alpha:]]",
])
def test_unsupported_constructs_are_refused_not_mismatched(pattern: str) -> None:
    with pytest.raises(NginxRegexError, match="pcre2_compile"):
        compile_nginx_regex(pattern)
