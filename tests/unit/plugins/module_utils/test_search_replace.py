"""Hand-written cases for the serialization-aware search-replace engine, one rule at a time."""

import copy
import pickle
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.wfu.multisite.plugins.module_utils import search_replace
from ansible_collections.wfu.multisite.plugins.module_utils.search_replace import (
    SERIALIZED_PREFIXES,
    HostPair,
    expand_pairs,
    host_pair_regex,
    is_serialized,
    json_variants,
    plain_replace,
    replace_value,
)

DEV = "https://dev.example.edu"
UAT = "https://uat-www.example.edu"
URL_PAIRS = [(DEV, UAT)]
HOST = [HostPair("dev.example.edu", "uat.example.edu")]


def s(text):
    """A serialized PHP string; its length counts UTF-8 bytes."""
    return 's:%d:"%s";' % (len(text.encode("utf-8")), text)


def arr(*items):
    """A serialized PHP array from already serialized key, value, key, value, ..."""
    assert len(items) % 2 == 0
    return "a:%d:{%s}" % (len(items) // 2, "".join(items))


def obj(cls, *items):
    return 'O:%d:"%s":%d:{%s}' % (len(cls), cls, len(items) // 2, "".join(items))


# --- strings and their byte lengths -------------------------------------------------------------

def test_string_length_is_recomputed_in_bytes():
    assert replace_value(s(DEV + "/x"), URL_PAIRS) == s(UAT + "/x")


@pytest.mark.parametrize("text", [
    "Café at %s/menu" % DEV,                  # 2-byte characters
    "日本語 %s 日本語" % DEV,                      # 3-byte characters
    "🎉🎉 party at %s 🎉" % DEV,                 # 4-byte characters (astral plane)
])
def test_multibyte_text_keeps_exact_byte_lengths(text):
    result = replace_value(arr(s("k"), s(text)), URL_PAIRS)
    assert result == arr(s("k"), s(text.replace(DEV, UAT)))
    assert is_serialized(result)


def test_replacement_introducing_multibyte_characters_counts_bytes():
    result = replace_value(s("see dev"), [("dev", "dév 🎉")])
    assert result == 's:%d:"see dév 🎉";' % len("see dév 🎉".encode("utf-8"))
    assert result == 's:13:"see dév 🎉";'


def test_string_payload_containing_quote_semicolon_brace_is_edited_by_length():
    payload = 'say ";} and ";s:3:"x"; then %s' % DEV
    value = arr(s("a"), s(payload), s("b"), s('";}'))
    assert replace_value(value, URL_PAIRS) == arr(s("a"), s(payload.replace(DEV, UAT)), s("b"), s('";}'))


def test_empty_strings_and_empty_arrays_are_copied():
    value = arr(s(""), s(""), s("url"), s(DEV), s("list"), "a:0:{}")
    assert replace_value(value, URL_PAIRS) == arr(s(""), s(""), s("url"), s(UAT), s("list"), "a:0:{}")


def test_replacement_by_the_empty_string():
    assert replace_value(arr(i(0), s(DEV)), [(DEV, "")]) == arr(i(0), s(""))


def i(number):
    return "i:%d;" % number


def test_long_strings_beyond_the_short_pair_pattern():
    for size in (63, 64, 65, 511, 512, 513, 5000):
        key = ("k" * size)[: max(size - len(DEV), 0)] + DEV
        text = ("x" * size) + DEV
        value = arr(s(key), s(text), i(1), s(text))
        assert replace_value(value, URL_PAIRS) == arr(s(key), s(text.replace(DEV, UAT)), i(1),
                                                      s(text.replace(DEV, UAT))), size


def test_lengths_with_leading_zeros_are_read_and_rewritten_only_when_edited():
    value = 'a:2:{i:0;s:05:"hello";i:1;s:0%d:"%s";}' % (len(DEV), DEV)
    assert is_serialized(value)
    assert replace_value(value, URL_PAIRS) == 'a:2:{i:0;s:05:"hello";i:1;%s}' % s(UAT)


# --- what is copied byte for byte --------------------------------------------------------------

def test_string_keys_are_not_replaced_but_their_values_are():
    value = arr(s(DEV), s(DEV), s("plain"), s("x"))
    assert replace_value(value, URL_PAIRS) == arr(s(DEV), s(UAT), s("plain"), s("x"))


def test_value_whose_only_occurrence_is_in_a_key_comes_back_as_the_same_object():
    value = arr(s(DEV + "/key"), i(1))
    assert replace_value(value, URL_PAIRS) is value


def test_numeric_string_keys_and_negative_int_keys():
    value = arr(s("123"), s(DEV), i(-5), s(DEV), s("-0"), i(-42))
    assert replace_value(value, URL_PAIRS) == arr(s("123"), s(UAT), i(-5), s(UAT), s("-0"), i(-42))


def test_scalars_are_copied_with_their_exact_spelling():
    value = arr(s("price"), "d:64.950000000000003;", s("neg"), "i:-17;", s("plus"), "i:+3;",
                s("exp"), "d:1.0E+25;", s("inf"), "d:-INF;", s("nan"), "d:NAN;", s("dot"), "d:.5;",
                s("t"), "b:1;", s("f"), "b:0;", s("null"), "N;", s("url"), s(DEV))
    expected = value.replace(s(DEV), s(UAT))
    assert replace_value(value, URL_PAIRS) == expected


def test_objects_of_unknown_classes_are_entered_and_property_names_kept():
    mods = obj("WP_Theme_Mods", s("header_image"), s(DEV + "/h.jpg"), s("\0*\0" + DEV), s(DEV),
               s("nested"), obj("stdClass", s("url"), s(DEV)))
    result = replace_value(mods, URL_PAIRS)
    assert result == obj("WP_Theme_Mods", s("header_image"), s(UAT + "/h.jpg"), s("\0*\0" + DEV), s(UAT),
                         s("nested"), obj("stdClass", s("url"), s(UAT)))
    assert result.startswith('O:13:"WP_Theme_Mods":3:{')


def test_object_with_integer_property_names():
    value = obj("stdClass", i(0), s(DEV))
    assert replace_value(value, URL_PAIRS) == obj("stdClass", i(0), s(UAT))


def test_custom_serialized_payload_is_copied_even_when_it_holds_the_search_string():
    payload = 'x:i:0;a:1:{s:3:"url";%s};m:a:0:{}' % s(DEV)
    custom = 'C:11:"ArrayObject":%d:{%s}' % (len(payload), payload)
    value = arr(s("custom"), custom, s("url"), s(DEV))
    assert replace_value(value, URL_PAIRS) == arr(s("custom"), custom, s("url"), s(UAT))


def test_enum_cases_are_copied():
    value = arr(s("suit"), 'E:11:"Suit:Hearts";', s("url"), s(DEV))
    assert replace_value(value, URL_PAIRS) == arr(s("suit"), 'E:11:"Suit:Hearts";', s("url"), s(UAT))


def test_enum_with_the_search_string_in_its_name_is_copied():
    enum = 'E:%d:"%s";' % (len("Host:dev"), "Host:dev")
    assert replace_value(arr(i(0), enum), [("dev", "uat")]) == arr(i(0), enum)


def test_references_are_copied():
    value = arr(s("a"), obj("stdClass", s("url"), s(DEV)), s("b"), "r:2;", s("c"), "R:3;")
    result = replace_value(value, URL_PAIRS)
    assert result == arr(s("a"), obj("stdClass", s("url"), s(UAT)), s("b"), "r:2;", s("c"), "R:3;")


def test_many_edited_payloads_in_one_value_each_keep_their_own_edges():
    value = arr(i(0), s("webdev.example.edu"), i(1), s("dev.example.edu"), i(2), s("dev.example.edu-old"),
                i(3), s("a\0dev.example.edu\0b"), i(4), s("dev.example.edu/x"))
    assert replace_value(value, HOST) == arr(
        i(0), s("webdev.example.edu"), i(1), s("uat.example.edu"), i(2), s("dev.example.edu-old"),
        i(3), s("a\0uat.example.edu\0b"), i(4), s("uat.example.edu/x"))


@pytest.mark.parametrize("pairs", [[("dev\0", "uat")], [("dev", "u\0t")], [HostPair("dev", "u\0t")]])
def test_pairs_with_nul_characters(pairs):
    search, replace = pairs[0]
    value = arr(i(0), s("a dev\0 b"), i(1), s("dev\0"), i(2), s("x"))
    assert replace_value(value, pairs) == arr(i(0), s("a dev\0 b".replace(search, replace)),
                                              i(1), s("dev\0".replace(search, replace)), i(2), s("x"))


# --- serialized data inside strings ------------------------------------------------------------

def test_double_serialized_option_is_edited_at_both_levels():
    inner = arr(s("url"), s(DEV + "/a"), s("title"), s("Café"))
    outer = arr(s("widget"), s(inner), s("self"), s(DEV))
    expected_inner = arr(s("url"), s(UAT + "/a"), s("title"), s("Café"))
    assert replace_value(outer, URL_PAIRS) == arr(s("widget"), s(expected_inner), s("self"), s(UAT))


@pytest.mark.parametrize("pairs", [URL_PAIRS, [HostPair("dev.example.edu", "staging.example.edu")]],
                         ids=["plain pair", "host pair"])
def test_serialized_payload_after_a_plain_one_is_edited_as_serialized_data(pairs):
    # Every payload with a hit but the first holds serialized data: none of them may get the plain replacement.
    target = plain_replace(DEV, pairs)
    inner = arr(s("url"), s(DEV + "/a"), s("title"), s("Café"))
    expected_inner = arr(s("url"), s(target + "/a"), s("title"), s("Café"))
    outer = arr(s("self"), s(DEV), s("widget"), s(inner), i(3), s(DEV + "/b"), s("list"), s(arr(i(0), s(DEV))))
    assert replace_value(outer, pairs) == arr(s("self"), s(target), s("widget"), s(expected_inner), i(3),
                                              s(target + "/b"), s("list"), s(arr(i(0), s(target))))


def test_top_level_string_holding_serialized_data():
    inner = arr(s(DEV), s(DEV))                    # the key keeps its text, the value changes
    assert replace_value(s(inner), URL_PAIRS) == s(arr(s(DEV), s(UAT)))


def test_serialized_string_three_levels_deep():
    level3 = arr(i(0), s(DEV))
    level2 = arr(i(0), s(level3))
    level1 = s(level2)
    assert replace_value(level1, URL_PAIRS) == s(arr(i(0), s(arr(i(0), s(UAT)))))


def test_payload_that_only_looks_serialized_gets_plain_replacement():
    broken = 'a:1:{s:3:"url";s:99:"%s";}' % DEV    # wrong inner length: not serialized
    value = arr(i(0), s(broken))
    assert replace_value(value, URL_PAIRS) == arr(i(0), s(broken.replace(DEV, UAT)))


def test_nested_payload_whose_search_string_is_only_in_keys_is_kept():
    value = arr(i(0), s(arr(s(DEV), i(1))), i(1), s(DEV))
    assert replace_value(value, URL_PAIRS) == arr(i(0), s(arr(s(DEV), i(1))), i(1), s(UAT))


# --- what is not serialized --------------------------------------------------------------------

def test_false_alone_is_serialized_and_unchanged():
    assert is_serialized("b:0;")
    assert replace_value("b:0;", [("b:0", "b:1")]) == "b:0;"


def test_false_followed_by_text_is_plain():
    assert not is_serialized("b:0;x")
    assert replace_value("b:0;x", [("x", "y")]) == "b:0;y"


def test_text_starting_like_an_int_is_not_truncated():
    value = "i:1; and then %s/page continues" % DEV
    assert not is_serialized(value)
    assert replace_value(value, URL_PAIRS) == value.replace(DEV, UAT)


def test_corrupt_length_gets_plain_replacement():
    value = 'a:1:{i:0;s:10:"%s";}' % DEV
    assert not is_serialized(value)
    assert replace_value(value, URL_PAIRS) == value.replace(DEV, UAT)


def test_wrong_element_count_gets_plain_replacement():
    value = 'a:2:{i:0;%s}' % s(DEV)
    assert not is_serialized(value)
    assert replace_value(value, URL_PAIRS) == value.replace(DEV, UAT)


def test_trailing_whitespace_is_allowed_and_kept():
    value = s(DEV) + " \r\n\t"
    assert is_serialized(value)
    assert replace_value(value, URL_PAIRS) == s(UAT) + " \r\n\t"


def test_trailing_text_makes_the_value_plain():
    value = s(DEV) + " tail"
    assert not is_serialized(value)
    assert replace_value(value, URL_PAIRS) == value.replace(DEV, UAT)


def test_leading_whitespace_makes_the_value_plain():
    value = " " + s(DEV)
    assert not is_serialized(value)
    assert replace_value(value, URL_PAIRS) == value.replace(DEV, UAT)


@pytest.mark.parametrize("value", [
    "N;", "b:1;", "i:0;", "i:-12;", "i:+7;", "d:0.1;", "d:-1.5E-7;", "d:1.;", "d:.5;", "d:INF;",
    "d:-INF;", "d:NAN;", 's:0:"";', "a:0:{}", 'O:8:"stdClass":0:{}', 'O:3:"A\\B":0:{}', 'E:3:"A:B";',
    'C:11:"ArrayObject":0:{}', "a:1:{i:0;R:1;}", 'a:1:{i:0;O:1:"A":1:{s:1:"x";r:2;}}',
    'O:8:"stdClass":+1:{s:1:"a";i:1;}', 'C:1:"A":+1:{x}', "a:01:{i:0;i:1;}", "a:2:{i:0;i:5;i:1;R:2;}",
])
def test_is_serialized_accepts(value):
    assert is_serialized(value)
    assert value[:2] in SERIALIZED_PREFIXES


@pytest.mark.parametrize("value", [
    "", "N", "N;;", "b:2;", "b:;", "i:;", "i:1.5;", "i:1", "d:;", "d:1e;", "d:+INF;", "d:inf;",
    's:1:"";', 's:1:"ab";', 's:-1:"";', 's:1:"a"', 'S:1:"a";', "a:1:{}", "a:0:{i:0;i:1;}",
    "a:1:{i:0;}", "a:1:{b:1;i:0;}", "a:1:{d:1.5;i:0;}", "a:1:{N;i:0;}", "a:1:{a:0:{}i:0;}",
    "a:1:{i:0;i:1;", "a:-1:{}", 'O:0:"":0:{}', 'O:1:"\\":0:{}', 'O:2:"A":0:{}', 'O:1:"A":1:{}',
    'O:1:"-":0:{}', "R:1;", "r:1;", "a:1:{i:0;R:0;}", "a:1:{i:0;R:2;}", 'E:0:"";', 'E:3:"ABC";',
    'C:1:"A":5:{x}', "{}", "x", "i:1;i:2;", "\ufeffi:1;", 'O:1:"A":-1:{}', 'C:1:"A":-1:{}',
    'a:2:{i:0;O:8:"stdClass":0:{}i:1;r:3;}', "a:2:{i:0;i:5;i:1;R:3;}",
])
def test_is_serialized_rejects(value):
    assert not is_serialized(value)


def test_every_serialized_value_starts_with_a_listed_prefix():
    assert set(SERIALIZED_PREFIXES) == {"a:", "O:", "s:", "i:", "d:", "b:", "N;", "C:", "E:", "r:", "R:"}
    assert not is_serialized(" i:1;")
    assert not is_serialized("\ni:1;")


# --- plain text, JSON and HTML -----------------------------------------------------------------

def test_plain_text_and_html():
    html = '<a href="%s/a">x</a> <img src="%s/b.jpg">' % (DEV, DEV)
    assert replace_value(html, URL_PAIRS) == html.replace(DEV, UAT)


def test_json_with_escaped_slashes():
    value = '{"url":"https:\\/\\/dev.example.edu\\/wp-content\\/a.jpg","raw":"https://dev.example.edu"}'
    expected = '{"url":"https:\\/\\/uat-www.example.edu\\/wp-content\\/a.jpg","raw":"https://uat-www.example.edu"}'
    assert replace_value(value, URL_PAIRS) == expected


def test_json_with_unicode_escapes():
    pairs = [("https://café.example.edu/é", "https://cafe.example.edu/e")]
    value = ('{"a":"https:\\/\\/caf\\u00e9.example.edu\\/\\u00e9","b":"https://caf\\u00e9.example.edu/\\u00e9",'
             '"c":"https://café.example.edu/é","d":"https:\\/\\/café.example.edu\\/é"}')
    expected = ('{"a":"https:\\/\\/cafe.example.edu\\/e","b":"https://cafe.example.edu/e",'
                '"c":"https://cafe.example.edu/e","d":"https:\\/\\/cafe.example.edu\\/e"}')
    assert replace_value(value, pairs) == expected


def test_json_inside_a_serialized_string():
    json_text = '{"link":"https:\\/\\/dev.example.edu\\/x"}'
    assert replace_value(arr(s("data"), s(json_text)), URL_PAIRS) == arr(
        s("data"), s('{"link":"https:\\/\\/uat-www.example.edu\\/x"}'))


def test_astral_characters_become_surrogate_pairs():
    assert json_variants("/🎉é") == ["\\/\\ud83c\\udf89\\u00e9", "\\/🎉é", "/\\ud83c\\udf89\\u00e9", "/🎉é"]


def test_json_forms_escape_quotes_backslashes_and_control_characters_in_every_form():
    assert json_variants('a"b\\c\n\x01\u2028') == ['a\\"b\\\\c\\n\\u0001\\u2028'] * 4


def test_expand_pairs_lists_each_pairs_forms_longest_first_without_duplicates():
    assert expand_pairs([("a/b", "c/d"), ("plain", "text"), ("é", "e/f")]) == [
        ("a\\/b", "c\\/d"), ("a/b", "c/d"),
        ("plain", "text"),
        ("\\u00e9", "e\\/f"), ("é", "e/f"),
    ]


def test_a_form_where_the_plain_search_string_equals_a_json_one_gets_the_plain_replacement():
    # "é/x" has no escaped slash in its JSON_UNESCAPED_SLASHES form, but the replacement has one to escape.
    assert expand_pairs([("a/b", "é")]) == [("a\\/b", "\\u00e9"), ("a/b", "é")]


def test_expand_pairs_keeps_the_kind_of_each_pair():
    expanded = expand_pairs([HostPair("dév.example.edu", "uat.example.edu"), ("x/y", "z")])
    assert expanded == [("d\\u00e9v.example.edu", "uat.example.edu"), ("dév.example.edu", "uat.example.edu"),
                        ("x\\/y", "z"), ("x/y", "z")]
    assert [pair.__class__ for pair in expanded] == [HostPair, HostPair, tuple, tuple]


def test_json_escaped_quotes_match_and_get_the_replacement_escaped():
    pairs = [('say "dev"', 'say "uat" ✓')]
    value = '{"a":"say \\"dev\\" now","b":"say \\"dev\\""}, say "dev"'
    assert replace_value(value, pairs) == ('{"a":"say \\"uat\\" \\u2713 now","b":"say \\"uat\\" \\u2713"}, '
                                           'say "uat" ✓')


def test_replacement_is_escaped_like_the_form_that_matched():
    pairs = [("https://dev.example.edu/é", "https://uat.example.edu/ü")]
    value = ('"https:\\/\\/dev.example.edu\\/\\u00e9" "https:\\/\\/dev.example.edu\\/é" '
             '"https://dev.example.edu/\\u00e9" "https://dev.example.edu/é"')
    assert replace_value(value, pairs) == (
        '"https:\\/\\/uat.example.edu\\/\\u00fc" "https:\\/\\/uat.example.edu\\/ü" '
        '"https://uat.example.edu/\\u00fc" "https://uat.example.edu/ü"')


def test_an_escaped_form_containing_the_plain_one_is_replaced_first():
    # "\\/wp-content" holds "/wp-content": replaced the other way round, the JSON would get "\\https://...".
    pairs = [("/wp-content", "https://cdn.example.edu/media")]
    assert replace_value('{"src":"\\/wp-content\\/a.jpg"} /wp-content/b.jpg', pairs) == (
        '{"src":"https:\\/\\/cdn.example.edu\\/media\\/a.jpg"} https://cdn.example.edu/media/b.jpg')


def test_backslashes_in_a_search_string_match_their_json_form():
    pairs = [("C:\\dev\\site", "D:\\uat\\site")]
    assert replace_value('{"path":"C:\\\\dev\\\\site"} C:\\dev\\site', pairs) == (
        '{"path":"D:\\\\uat\\\\site"} D:\\uat\\site')


def test_expand_pairs_keeps_user_duplicates():
    assert expand_pairs([("a", "aa"), ("a", "aa")]) == [("a", "aa"), ("a", "aa")]


def test_plain_replace_applies_the_expanded_pairs_in_order():
    value = "https://dev.example.edu and https:\\/\\/dev.example.edu in s:3:\"abc\";"
    assert plain_replace(value, URL_PAIRS) == value.replace(DEV, UAT).replace(
        "https:\\/\\/dev.example.edu", "https:\\/\\/uat-www.example.edu")


def test_plain_replace_does_not_parse_serialized_data():
    assert plain_replace(s(DEV), URL_PAIRS) == 's:%d:"%s";' % (len(DEV), UAT)


# --- pairs -------------------------------------------------------------------------------------

def test_pairs_are_applied_in_order_and_chain():
    pairs = [("dev", "uat"), ("uat", "prod")]
    assert replace_value("dev uat", pairs) == "prod prod"
    assert replace_value(arr(i(0), s("dev uat")), pairs) == arr(i(0), s("prod prod"))
    assert replace_value("dev uat", list(reversed(pairs))) == "uat prod"


def test_matching_is_case_sensitive():
    assert replace_value("DEV dev", [("dev", "uat")]) == "DEV uat"


def test_replacement_is_left_to_right_without_overlap():
    assert replace_value("aaaa", [("aa", "b")]) == "bb"
    assert replace_value(s("aaa"), [("aa", "b")]) == s("ba")


def test_a_pair_may_be_a_list_and_pairs_a_generator():
    assert replace_value("dev", (pair for pair in [["dev", "uat"]])) == "uat"


@pytest.mark.parametrize("pairs, error", [
    ([("", "x")], ValueError),
    ([("a",)], TypeError),
    ([("a", "b", "c")], TypeError),
    ([("a", None)], TypeError),
    ([(b"a", "b")], TypeError),
    (["ab"], TypeError),
])
def test_bad_pairs_are_refused(pairs, error):
    with pytest.raises(error):
        replace_value("abc", pairs)


def test_fast_path_returns_the_same_object():
    for value in ["nothing to see", s("nothing"), arr(i(0), s("x")), "", "b:0;"]:
        assert replace_value(value, URL_PAIRS) is value


def test_unchanged_result_is_the_same_object():
    value = arr(i(0), s(DEV))
    assert replace_value(value, [(DEV, DEV)]) is value
    text = "plain " + DEV
    assert replace_value(text, [(DEV, DEV)]) is text


def test_bytes_values_are_edited_the_same_way():
    value = arr(s("url"), s("Café " + DEV)).encode("utf-8")
    assert replace_value(value, URL_PAIRS) == arr(s("url"), s("Café " + UAT)).encode("utf-8")
    latin1 = b"caf\xe9 " + DEV.encode()
    assert replace_value(latin1, URL_PAIRS) == b"caf\xe9 " + UAT.encode()
    assert replace_value(b"nothing", URL_PAIRS) == b"nothing"


# --- host-name pairs ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("https://dev.example.edu/x", "https://uat.example.edu/x"),
    ('"dev.example.edu"', '"uat.example.edu"'),
    ("a@dev.example.edu", "a@uat.example.edu"),
    ("dev.example.edu", "uat.example.edu"),
    ("dev.example.edu:8080 dev.example.edu.", "uat.example.edu:8080 uat.example.edu."),
    ("//dev.example.edu_x", "//uat.example.edu_x"),
    ("webdev.example.edu", "webdev.example.edu"),
    ("news.dev.example.edu", "news.dev.example.edu"),
    ("dev.example.edu-old", "dev.example.edu-old"),
    ("dev.example.edus", "dev.example.edus"),
    ("-dev.example.edu", "-dev.example.edu"),
    ("DEV.example.edu", "DEV.example.edu"),
    ("édev.example.edu", "éuat.example.edu"),
])
def test_host_pair_boundaries(text, expected):
    assert replace_value(text, HOST) == expected
    assert replace_value(arr(i(0), s(text)), HOST) == arr(i(0), s(expected))


def test_host_pair_boundaries_inside_serialized_payload_are_the_payload_edges():
    value = arr(s("dev.example.edu"), s("dev.example.edu"))
    assert replace_value(value, HOST) == arr(s("dev.example.edu"), s("uat.example.edu"))


def test_host_pair_with_non_alphanumeric_ends_checks_no_boundary_there():
    pairs = [HostPair("%2Fdev.example.edu", "%2Fuat.example.edu")]
    assert replace_value("x%2Fdev.example.edu", pairs) == "x%2Fuat.example.edu"
    assert replace_value("x%2Fdev.example.edus", pairs) == "x%2Fdev.example.edus"
    assert replace_value("a.b/", [HostPair("a.b/", "c")]) == "c"
    assert replace_value("xa.b/", [HostPair("a.b/", "c")]) == "xa.b/"


def test_host_pair_replacement_with_backslashes_is_literal():
    assert replace_value("dev.example.edu", [HostPair("dev.example.edu", "a\\1\\g<0>")]) == "a\\1\\g<0>"


def test_host_pair_regex_is_pcre_compatible_and_exact():
    assert host_pair_regex("dev.example.edu") == "(?<![A-Za-z0-9.-])dev\\.example\\.edu(?![A-Za-z0-9-])"
    assert host_pair_regex("%2Fdev_x") == "\\%2Fdev\\_x(?![A-Za-z0-9-])"
    assert host_pair_regex("dév/") == "(?<![A-Za-z0-9.-])dév\\/"
    assert re.fullmatch(host_pair_regex("a+b(c)"), "a+b(c)")


def test_host_pair_is_a_tuple():
    pair = HostPair("dev.example.edu", "uat.example.edu")
    search, replace = pair
    assert (search, replace) == ("dev.example.edu", "uat.example.edu")
    assert (pair.search, pair.replace) == (search, replace)
    assert repr(pair) == "HostPair('dev.example.edu', 'uat.example.edu')"
    assert pickle.loads(pickle.dumps(pair)) == pair
    assert copy.deepcopy(pair).__class__ is HostPair


def test_host_pair_and_plain_pair_with_the_same_strings_are_not_confused():
    assert replace_value("webdev.example.edu", [("dev.example.edu", "uat.example.edu")]) == "webuat.example.edu"
    assert replace_value("webdev.example.edu", HOST) == "webdev.example.edu"
    assert replace_value("webdev.example.edu", [("dev.example.edu", "uat.example.edu")]) == "webuat.example.edu"


def test_host_pair_json_variant_is_a_host_pair():
    pairs = [HostPair("dév.example.edu", "uat.example.edu")]
    assert replace_value('"d\\u00e9v.example.edu" wd\\u00e9v.example.edu', pairs) == '"uat.example.edu" wd\\u00e9v.example.edu'


# --- size and depth ----------------------------------------------------------------------------

def test_ten_megabyte_value():
    chunk = "lorem ipsum %s/page dolor sit amet. " % DEV
    text = chunk * (10_000_000 // len(chunk))
    value = arr(s("content"), s(text), s("other"), s(text))
    result = replace_value(value, URL_PAIRS)
    expected_text = text.replace(DEV, UAT)
    assert result == arr(s("content"), s(expected_text), s("other"), s(expected_text))


def test_ten_megabyte_array_of_small_items():
    count = 200_000
    value = "a:%d:{%s}" % (count, "".join(i(n) + s("%s/%d" % (DEV, n)) for n in range(count)))
    result = replace_value(value, URL_PAIRS)
    assert result == "a:%d:{%s}" % (count, "".join(i(n) + s("%s/%d" % (UAT, n)) for n in range(count)))


def test_hundred_thousand_deep_nesting():
    depth = 100_000
    value = "a:1:{i:0;" * depth + s(DEV) + "}" * depth
    result = replace_value(value, URL_PAIRS)
    assert result == "a:1:{i:0;" * depth + s(UAT) + "}" * depth
    assert not is_serialized(value[:-1])


def test_deeply_nested_serialized_strings():
    value = s(DEV)
    expected = s(UAT)
    for _level in range(2_000):
        value = s(value)
        expected = s(expected)
    assert replace_value(value, URL_PAIRS) == expected


# --- pairs that keep lengths: the one-pass check against the full parse -------------------------

SAME_LENGTH_PAIRS = [(DEV, "https://uat.example.edu"), HostPair("dev.example.edu", "uat.example.edu"), ("é", "ü")]
FRAGMENTS = [DEV + "/x", "dev.example.edu", "webdev.example.edu", "é", "plain", '";}', "s:3:", "a:1:{", "\\", " "]


def _exact(value, pairs):
    """What the full parse gives: the serialized edit, or the plain replacement when the value is not serialized."""
    edited = search_replace._rewrite(value.encode("utf-8", "surrogatepass"), search_replace._plan_for(pairs))
    return plain_replace(value, pairs) if edited is None else edited.decode("utf-8", "surrogatepass")


def _text():
    long_fragments = st.sampled_from(FRAGMENTS).map(lambda fragment: fragment * 300)   # past the regex's lengths
    return st.lists(st.one_of(st.sampled_from(FRAGMENTS), long_fragments, st.text(max_size=3)), max_size=4).map(
        "".join)


def _serialized():
    scalars = st.one_of(st.integers(-3, 10**6).map("i:%d;".__mod__), st.sampled_from(["b:1;", "N;", "d:0.5;"]),
                        _text().map(s))
    keys = st.one_of(st.integers(0, 9).map("i:%d;".__mod__), _text().map(s))

    def containers(children):
        pairs = st.lists(st.tuples(keys, children), max_size=4)
        return st.one_of(pairs.map(lambda items: arr(*[part for item in items for part in item])),
                         pairs.map(lambda items: obj("Cls", *[part for item in items for part in item])),
                         children.map(s))      # a string holding serialized data
    return st.recursive(scalars, containers, max_leaves=12)


# Ways a serialized value can fail to parse, or parse with parts only the full parse knows.
DAMAGES = [
    lambda value: value,
    lambda value: re.sub(r"a:(\d+)", lambda count: "a:%d" % (int(count[1]) + 1), value, count=1),
    lambda value: re.sub(r's:(\d+):"', lambda size: 's:%d:"' % (int(size[1]) + 1), value, count=1),
    lambda value: value[:-1],
    lambda value: value + "x",
    lambda value: value.replace("i:0;", 'r:1;', 1),
    lambda value: value.replace("i:1;", 'C:3:"Foo":5:{%s}' % DEV[:5], 1),
    lambda value: value.replace("N;", 'E:7:"Foo:Bar";', 1),
    lambda value: value.replace("s:5:", "s:05:", 1),
]


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_serialized(), st.sampled_from(range(len(DAMAGES))))
def test_the_one_pass_check_gives_what_the_full_parse_gives(value, damage):
    value = DAMAGES[damage](value)
    assert replace_value(value, SAME_LENGTH_PAIRS) == _exact(value, SAME_LENGTH_PAIRS)


def test_a_key_holding_a_search_string_is_kept_with_pairs_that_keep_lengths():
    value = arr(s(DEV), s(DEV), i(1), s("dev.example.edu"))
    assert replace_value(value, SAME_LENGTH_PAIRS) == arr(s(DEV), s("https://uat.example.edu"), i(1),
                                                          s("uat.example.edu"))


def test_a_nested_key_holding_a_search_string_is_kept_with_pairs_that_keep_lengths():
    inner = arr(s(DEV), s(DEV))
    assert replace_value(arr(i(0), s(inner)), SAME_LENGTH_PAIRS) == arr(i(0), s(arr(s(DEV), s("https://uat.example.edu"))))


def test_big_and_deep_values_with_pairs_that_keep_lengths():
    target = "https://uat.example.edu"
    text = ("lorem %s/page " % DEV) * 100_000
    assert replace_value(arr(s("content"), s(text)), SAME_LENGTH_PAIRS) == arr(s("content"), s(text.replace(DEV, target)))
    deep = "a:1:{i:0;" * 100_000 + s(DEV) + "}" * 100_000
    assert replace_value(deep, SAME_LENGTH_PAIRS) == deep.replace(DEV, target)
    nested = s(DEV)
    for _level in range(200):
        nested = s(arr(i(0), nested))
    assert replace_value(nested, SAME_LENGTH_PAIRS) == nested.replace(DEV, target)


@pytest.mark.parametrize("key", ["N;", "b:1;", "d:0.5;", "a:0:{}", 'O:8:"stdClass":0:{}'])
def test_a_key_that_is_no_int_or_string_makes_the_value_plain_text(key):
    # PHP's unserialize() refuses such keys; so the value gets the plain replacement, at any depth.
    pairs = [("dev.example.edu", "staging.example.edu")]
    value = 'a:1:{%ss:23:"https://dev.example.edu";}' % key
    assert not is_serialized(value)
    assert replace_value(value, pairs) == value.replace("dev.example.edu", "staging.example.edu")
    outer = 'a:1:{i:0;s:%d:"%s";}' % (len(value), value)
    assert replace_value(outer, pairs) == 'a:1:{i:0;s:%d:"%s";}' % (len(value) + 4, replace_value(value, pairs))


@settings(max_examples=1000, deadline=None, database=None)
@given(st.lists(st.sampled_from(["dev.example.edu", "dev.example.edu", "%2Fdev.example.edu", "dev.example.edudev",
                                 "a", "-", ".", "/", "é", "_", "9", " ", "dev.example.ed", "ev.example.edu"]),
                max_size=12).map("".join))
def test_plain_replacement_of_host_pairs_is_the_regular_expression_edit(text):
    pairs = [HostPair("dev.example.edu", "uat-x.example.edu"), HostPair("%2Fdev.example.edu", "%2Fs.example.edu")]
    expected = text
    for search, replace in pairs:
        expected = re.sub(host_pair_regex(search), replace.replace("\\", "\\\\"), expected)
    assert plain_replace(text, pairs) == expected
    assert plain_replace(text.encode("utf-8"), pairs) == expected.encode("utf-8")


@settings(max_examples=400, deadline=None, database=None)
@given(st.lists(st.text(alphabet="ab./", min_size=1, max_size=7), min_size=1, max_size=40))
def test_shortest_needles_are_the_search_strings_that_hold_no_other(searches):
    # The definition, by testing every pair; a small alphabet makes strings inside others common.
    distinct = list(dict.fromkeys(searches))
    expected = [needle for needle in distinct if not any(other != needle and other in needle for other in distinct)]
    assert list(search_replace.shortest_needles(searches)) == expected


def test_a_network_of_hundreds_of_host_pairs_replaces_as_each_pair_does():
    # Every host form's pattern is compiled when first needed (the ones a value holds, in any order of use): one
    # plan of all the pairs gives what the pairs give applied one by one.
    pairs = []
    for number in range(300):
        pairs.append(("https://site%d.dev.example.edu" % number, "https://site%d.uat.example.edu" % number))
        pairs.append(HostPair("site%d.dev.example.edu" % number, "site%d.uat.example.edu" % number))
    values = [
        "<a href=\"https://site7.dev.example.edu/x\">site17.dev.example.edu</a> mail@site299.dev.example.edu",
        "xsite7.dev.example.edu site7.dev.example.edux {\"u\":\"https:\\/\\/site42.dev.example.edu\\/\"}",
        's:29:"https://site3.dev.example.edu/";',
        'a:2:{i:0;s:21:"site250.dev.example.edu";i:1;s:3:"abc";}',
    ]
    for value in values:
        one_by_one = value
        for pair in pairs:
            one_by_one = replace_value(one_by_one, [pair])
        assert replace_value(value, pairs) == one_by_one
    assert replace_value(values[0], pairs) == (
        "<a href=\"https://site7.uat.example.edu/x\">site17.uat.example.edu</a> mail@site299.uat.example.edu")
