# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Search-replace on one column value, aware of PHP serialization.

``replace_value(value, pairs)`` applies (search, replace) pairs in order:

* A value that parses *completely* as one PHP-serialized value (optionally
  followed by ASCII whitespace, which is kept) is edited byte for byte: only
  the payloads of ``s:N:"...";`` values that contain a search string change,
  and their N is recomputed in UTF-8 bytes.  A payload that is itself a
  complete serialized value (double-serialized options) is edited the same
  way; any other payload gets the plain replacement below.  Everything else
  is copied unchanged: array keys and property names (string keys too),
  class names, ints, floats (``d:64.950000000000003;`` keeps its spelling),
  bools, nulls, references, ``C:`` payloads and ``E:`` enum names.  Objects
  of any class are entered; their property values are edited like array values.
* Every other value (plain text, JSON, HTML, or text that merely looks
  serialized: ``i:1;trailing``, a wrong length, a wrong count) gets the plain
  replacement: the pairs of ``expand_pairs(pairs)`` applied one after the
  other, each as a left-to-right, non-overlapping replacement like
  ``str.replace``.

Matching is case-sensitive and exact.  A pair is a plain 2-tuple, or a
``HostPair`` whose search string only matches as a whole host name (see
``HostPair``).  ``expand_pairs`` puts in place of each pair the pair and the
forms its strings take inside JSON (see ``json_variants``), longest first.

What counts as "parses completely" is PHP's unserialize() grammar, read
strictly (see ``is_serialized``).  The value is worked on as UTF-8 bytes
(lone surrogates pass through as their 3-byte form), so byte lengths are exact
for any text, including 4-byte characters.  The parser keeps its own stack, so
deep nesting cannot exhaust Python's; and before any parsing, a value in which
no search string occurs is returned as it is.  When the pairs keep lengths, one
pass of a regular expression can show that the plain replacement is the exact
edit (see ``_plain_is_exact``), and no parsing is needed.
"""

from __future__ import annotations

import functools
import itertools
import operator
import re

SERIALIZED_PREFIXES = ("a:", "O:", "s:", "i:", "d:", "b:", "N;", "C:", "E:", "r:", "R:")

_BYTE_PREFIX_TUPLE = tuple(prefix.encode("ascii") for prefix in SERIALIZED_PREFIXES)
_BYTE_PREFIXES = frozenset(_BYTE_PREFIX_TUPLE)
_TEXT_PREFIXES = frozenset(SERIALIZED_PREFIXES)

_SCALAR = rb"N;|b:[01];|i:[+-]?\d+;|d:(?:[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|NAN|-?INF);"
_CLASS_NAME = rb"[A-Za-z0-9_\x80-\xff][A-Za-z0-9_\x80-\xff\\]*"
# One value token, told apart by the group that matched last (``Match.lastindex``).
_STRING, _SCALAR_VALUE, _ARRAY, _OBJECT, _REFERENCE, _CUSTOM, _ENUM = 1, 2, 3, 6, 8, 11, 12
_VALUE_TOKEN = re.compile(
    rb's:(\d+):"'
    rb"|(" + _SCALAR + rb")"
    rb"|a:(\d+):\{"
    rb'|O:(\d+):"(' + _CLASS_NAME + rb')":([+-]?\d+):\{'
    rb"|([rR]):(\d+);"
    rb'|C:(\d+):"(' + _CLASS_NAME + rb')":([+-]?\d+):\{'
    rb'|E:(\d+):"'
)
_KEY_TOKEN = re.compile(rb's:(\d+):"|i:[+-]?\d+;')
_STRING_END = b'";'
_CLOSE = b"}"
_S = ord("s")
# Positions past any real value; ends the occurrence lists so lookups need no bounds check.
_BEYOND = float("inf")

# Most pairs in real data are a short key and a short string or scalar value, or an array; _scan
# reads such a pair with one match of the pattern below.  The string lengths are spelled out as a
# tree of digits (``s:1:".{1}";``, ``s:12:".{12}";`` ...), so the regular expression checks them.
_SHORT_KEY_LIMIT = 64
_SHORT_VALUE_LIMIT = 512
_PAIR_VALUE, _PAIR_ARRAY = 1, 2


def _by_length(limit, leaf, first_digits="0123456789"):
    """Regex source branching on a decimal number below ``limit`` (no leading zeros), then ``leaf(number)``.

    A tree of digits, so that the regular expression itself checks a length it has just read.
    """
    def after(digits):
        branches = [leaf(int(digits))]
        if digits != "0":
            branches += [digit + after(digits + digit) for digit in "0123456789" if int(digits + digit) < limit]
        return "(?:%s)" % "|".join(branches)
    return "(?:%s)" % "|".join(digit + after(digit) for digit in first_digits if int(digit) < limit)


def _sized_strings(limit):
    """Regex source for a whole ``s:N:"...";`` token with N below ``limit``."""
    return "s:" + _by_length(limit, lambda size: ':".{%d}";' % size)


@functools.lru_cache(maxsize=None)
def _short_pair():
    key = r"i:[+-]?\d+;|" + _sized_strings(_SHORT_KEY_LIMIT)
    value = _sized_strings(_SHORT_VALUE_LIMIT) + "|" + _SCALAR.decode("ascii")
    return re.compile((r"(?:%s)(?:(%s)|a:(\d+):\{)" % (key, value)).encode("ascii"), re.DOTALL)


class HostPair(tuple):
    """A (search, replace) pair whose search string must match as a whole host name.

    A match counts only when it is not preceded by a character in
    ``[A-Za-z0-9.-]`` and not followed by one in ``[A-Za-z0-9-]``; the first
    check applies only when ``search`` starts with an ASCII letter or digit, the
    second only when it ends with one.  So ``HostPair("dev.example.edu", ...)``
    changes ``https://dev.example.edu/x``, ``"dev.example.edu"`` and
    ``a@dev.example.edu`` but not ``webdev.example.edu``,
    ``news.dev.example.edu`` or ``dev.example.edu-old``.
    """

    __slots__ = ()

    def __new__(cls, search, replace):
        return super().__new__(cls, (search, replace))

    def __getnewargs__(self):
        return tuple(self)

    def __repr__(self):
        return "HostPair(%r, %r)" % tuple(self)

    search = property(operator.itemgetter(0), doc="The host name searched for.")
    replace = property(operator.itemgetter(1), doc="What replaces it.")


def host_pair_regex(search):
    """The regular expression a ``HostPair`` with this search string matches.

    It reads the same in Python's ``re`` and in PCRE (MariaDB's
    ``REGEXP_REPLACE``): the literal, with a backslash before every ASCII
    character that is not a letter or digit, between the guards
    ``(?<![A-Za-z0-9.-])`` and ``(?![A-Za-z0-9-])`` where they apply.
    """
    before = "(?<![A-Za-z0-9.-])" if _is_ascii_alnum(search[:1]) else ""
    return before + _host_literal(search) + _host_after(search)


def _host_literal(search):
    return "".join("\\" + char if char < "\x80" and not char.isalnum() else char for char in search)


def _host_after(search):
    return "(?![A-Za-z0-9-])" if _is_ascii_alnum(search[-1:]) else ""


def _is_ascii_alnum(char):
    return char.isascii() and char.isalnum()


def json_variants(text):
    """The forms ``text`` takes inside a JSON string, as PHP's ``json_encode`` writes it.

    One form for each of the four ways its flags can treat ``/`` and
    non-ASCII characters, in this order:

    1. default flags (``json_encode``, ``wp_json_encode``): ``/`` as ``\\/``,
       every non-ASCII character as ``\\uXXXX`` (lower-case hex, characters
       beyond U+FFFF as surrogate pairs);
    2. ``JSON_UNESCAPED_UNICODE``: ``/`` as ``\\/``, non-ASCII as it is;
    3. ``JSON_UNESCAPED_SLASHES``: ``/`` as it is, non-ASCII as ``\\uXXXX``;
    4. both flags: ``/`` and non-ASCII as they are.

    In every form ``"`` is ``\\"``, ``\\`` is ``\\\\``, the control characters
    are ``\\b \\f \\n \\r \\t`` or ``\\u00XX``, and U+2028 and U+2029 are escaped
    (as PHP does unless ``JSON_UNESCAPED_LINE_TERMINATORS``).  Forms may be
    equal to each other and to ``text``.
    """
    forms = []
    for slashes in (True, False):
        for unicode in (True, False):
            forms.append("".join(_json_char(char, slashes, unicode) for char in text))
    return forms


_JSON_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _json_char(char, slashes, unicode):
    if char in _JSON_ESCAPES:
        return _JSON_ESCAPES[char]
    if char == "/":
        return "\\/" if slashes else char
    code = ord(char)
    if code < 0x20 or code in (0x2028, 0x2029) or (unicode and code >= 0x80):
        if code < 0x10000:
            return "\\u%04x" % code
        code -= 0x10000
        return "\\u%04x\\u%04x" % (0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF))
    return char


def expand_pairs(pairs):
    """The exact, ordered list of pairs that plain replacement applies.

    Each pair is replaced by itself and its JSON forms (``json_variants``
    applied to the search and to the replace string alike, so a match of an
    escaped form gets the replacement escaped the same way), of the same kind
    (plain tuple or ``HostPair``).  A form whose search string equals the
    pair's own or an earlier form's is left out: the plain form wins over the
    JSON ones, the default flags over the others.  The forms of one pair are
    listed longest search string first, so that a form is replaced before any
    form it contains (``\\/wp-content`` before ``/wp-content``).
    """
    expanded = []
    for pair in _checked_pairs(pairs):
        host = isinstance(pair, HostPair)
        search, replace = pair
        forms = {}
        for form_search, form_replace in zip([search] + json_variants(search), [replace] + json_variants(replace)):
            forms.setdefault(form_search, form_replace)
        for form_search in sorted(forms, key=len, reverse=True):
            form = (form_search, forms[form_search])
            expanded.append(HostPair(*form) if host else form)
    return expanded


def _checked_pairs(pairs):
    for pair in pairs:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError("a replacement pair must be (search, replace), got %r" % (pair,))
        search, replace = pair
        if not isinstance(search, str) or not isinstance(replace, str):
            raise TypeError("search and replace must be text, got %r" % (pair,))
        if not search:
            raise ValueError("a search string must not be empty")
        yield pair


def _encode(text):
    return text.encode("utf-8", "surrogatepass")


def _step(search, replace, host, as_bytes):
    """One expanded pair as (search, replace, compiled regular expression or None, re.sub() template).

    The regular expression of a ``HostPair`` starts with the literal, which ``re`` finds fast; the guard
    before the match is a look-behind over the literal and one character more.  It matches exactly what
    ``host_pair_regex(search)`` matches.
    """
    convert = _encode if as_bytes else str
    if not host:
        return (convert(search), convert(replace), None, None)
    literal = _host_literal(search)
    before = "(?<![A-Za-z0-9.-]%s)" % literal if _is_ascii_alnum(search[:1]) else ""
    # re.sub() reads backslashes in its replacement; doubled, they stay literal.
    return (convert(search), convert(replace), _LazyPattern(convert(literal + before + _host_after(search))),
            convert(replace.replace("\\", "\\\\")))


def _apply_steps(steps, value):
    for search, replace, pattern, template in steps:
        if pattern is None:
            value = value.replace(search, replace)
        elif search in value:
            value = pattern.sub(template, value)
    return value


def shortest_needles(needles):
    """The distinct search strings that contain no other one, in their first order.

    A network of hundreds of subdomain sites has thousands of search strings: instead of testing every pair,
    each string's substrings of the lengths the strings have are looked up in a set of the strings of that
    length (the strings are short; their distinct lengths are few).
    """
    needles = tuple(dict.fromkeys(needles))
    by_length = {}
    for needle in needles:
        by_length.setdefault(len(needle), set()).add(needle)
    lengths = sorted(by_length)

    def holds_another(needle):
        size = len(needle)
        for length in lengths:
            if length >= size:
                return False
            others = by_length[length]
            if any(needle[start:start + length] in others for start in range(size - length + 1)):
                return True
        return False

    return tuple(needle for needle in needles if not holds_another(needle))


class _LazyPattern:
    """A regular expression compiled when first used: of a network's thousands of host forms, a site's values
    hold few, and compiling them all would cost every site's process most of a second."""

    __slots__ = ("source", "compiled")

    def __init__(self, source):
        self.source = source
        self.compiled = None

    def compile(self):
        if self.compiled is None:
            self.compiled = re.compile(self.source)
        return self.compiled

    def sub(self, template, value):
        return self.compile().sub(template, value)


# Plans of this many expanded pairs or fewer compile their host patterns at once (saving a call per use).
_EAGER_PATTERNS = 16


class _Plan:
    """Everything ``replace_value`` needs for one list of pairs, prepared once."""

    def __init__(self, pairs):
        text_steps, byte_steps = [], []
        for pair in expand_pairs(pairs):
            search, replace = pair
            host = isinstance(pair, HostPair)
            text_steps.append(_step(search, replace, host, False))
            byte_steps.append(_step(search, replace, host, True))
        if len(text_steps) <= _EAGER_PATTERNS:
            text_steps = [step[:2] + (step[2] and step[2].compile(),) + step[3:] for step in text_steps]
            byte_steps = [step[:2] + (step[2] and step[2].compile(),) + step[3:] for step in byte_steps]
        self.text_steps = tuple(text_steps)
        self.byte_steps = tuple(byte_steps)
        # Payloads can be replaced in one pass, joined by NULs, when no search or replace string has one.
        self.joinable = not any(b"\0" in step[0] or b"\0" in step[1] for step in self.byte_steps)
        # Whether a value holds some search string only needs the ones that hold no other.
        self.text_needles = shortest_needles(step[0] for step in self.text_steps)
        self.byte_needles = shortest_needles(step[0] for step in self.byte_steps)
        # See _plain_is_exact: pairs that keep lengths, and search strings no payload's quote can be part of.
        keeps_lengths = all(len(search) == len(replace) and b'"' not in search
                            for search, replace, _pattern, _template in self.byte_steps)
        self.marks = tuple((needle, _MARK + needle[1:]) for needle in self.byte_needles) if keeps_lengths else ()

    def plain(self, value):
        return _apply_steps(self.byte_steps if isinstance(value, bytes) else self.text_steps, value)

    def occurrences(self, data):
        """Where search strings occur in ``data``, for ``_scan``'s containment test.

        Returns two lists: the start of every occurrence, sorted, and for each
        index the smallest end among that occurrence and all later ones; both
        end with ``_BEYOND``.  A payload [start, end) holds a search string
        exactly when the first occurrence starting at or after ``start`` has a
        smallest end ``<= end``.  Occurrences are found left to right without
        overlap, which finds one inside every payload that holds one: such an
        occurrence could only be hidden by one reaching across the payload's
        opening quote.  Search strings containing a quote are therefore
        searched with overlaps.
        """
        starts, ends = [], []
        find = data.find
        for needle in self.byte_needles:
            size = len(needle)
            step = 1 if b'"' in needle else size
            position = find(needle)
            while position != -1:
                starts.append(position)
                ends.append(position + size)
                position = find(needle, position + step)
        if len(self.byte_needles) > 1:
            order = sorted(range(len(starts)), key=starts.__getitem__)
            starts = [starts[index] for index in order]
            ends = list(itertools.accumulate((ends[index] for index in reversed(order)), min))
            ends.reverse()
        starts.append(_BEYOND)
        ends.append(_BEYOND)
        return starts, ends


_PLANS = {}
_PLAN_CACHE_SIZE = 32
# The pairs object of the last call, its items and its plan: callers pass the same pairs row after row.
# The pairs of the last call, their items and their plan, as one tuple: read and replaced in one step, so a
# thread never gets the plan of another thread's pairs.
_last = (None, (), None)


def _plan_for(pairs):
    global _last
    last_pairs, last_items, last_plan = _last
    if pairs is last_pairs:
        # A tuple of pairs (tuples themselves) cannot change; a list can, so its items are compared.
        if isinstance(pairs, tuple):
            return last_plan
        if len(pairs) == len(last_items):
            for item, last_item in zip(pairs, last_items):
                if item is not last_item:
                    break
            else:
                return last_plan
    items = tuple(pairs)
    key = (items, tuple(map(type, items)))
    try:
        plan = _PLANS.get(key)
    except TypeError:  # pairs given as lists cannot be a cache key
        return _Plan(items)
    if plan is None:
        if len(_PLANS) >= _PLAN_CACHE_SIZE:
            _PLANS.clear()
        plan = _PLANS[key] = _Plan(items)
    if isinstance(pairs, (list, tuple)):
        _last = (pairs, items, plan)
    return plan


def _scan(data, begin, end, starts=(_BEYOND,), smallest_ends=(_BEYOND,)):
    """Parse ``data[begin:end]`` as one complete serialized value.

    Returns None when it is not one; else the (header, payload start, payload
    end) of every ``s:`` *value* whose payload holds an occurrence listed in
    ``starts``/``smallest_ends`` (see ``_Plan.occurrences``), in order.

    The grammar is PHP's (ext/standard/var_unserializer.re), read strictly:
    keys are ``i:`` or ``s:``; a reference must point back at an earlier value
    (counted as PHP counts them); nothing but ASCII whitespace may follow.
    Unlike PHP there is no depth limit, and class names are not looked up.
    """
    value_match = _VALUE_TOKEN.match
    key_match = _KEY_TOKEN.match
    pair_match = _short_pair().match
    ends_with = data.startswith
    hits = []
    enclosing = []          # pairs still expected by each enclosing container
    remaining = 0           # pairs still expected by the innermost open container
    depth = 0
    values_seen = 0         # PHP's reference slots: every value except R: references
    occurrence = 0          # first occurrence that may still lie in a payload to come
    pos = begin
    while True:
        token = value_match(data, pos, end)
        if token is None:
            return None
        kind = token.lastindex
        if kind == _STRING:
            payload = token.end()
            pos = payload + int(token[1])
            if not ends_with(_STRING_END, pos, end):
                return None
            while starts[occurrence] < payload:
                occurrence += 1
            if smallest_ends[occurrence] <= pos:
                hits.append((token.start(), payload, pos))
            pos += 2
            values_seen += 1
        elif kind == _SCALAR_VALUE:
            pos = token.end()
            values_seen += 1
        elif kind == _ARRAY or kind == _OBJECT:
            remaining_here = int(token[kind])
            if kind == _OBJECT and (len(token[5]) != int(token[4]) or remaining_here < 0):
                return None
            if depth:
                enclosing.append(remaining)
            depth += 1
            remaining = remaining_here
            pos = token.end()
            values_seen += 1
        elif kind == _REFERENCE:
            target = int(token[8])
            if not depth or not 0 < target <= values_seen:
                return None
            pos = token.end()
            if token[7] == b"r":
                values_seen += 1
        elif kind == _CUSTOM:
            size = int(token[11])
            if len(token[10]) != int(token[9]) or size < 0:
                return None
            pos = token.end() + size
            if not ends_with(_CLOSE, pos, end):
                return None
            pos += 1
            # The class's own unserializer would count the values inside: unknown here.
            values_seen = _BEYOND
        else:
            payload = token.end()
            pos = payload + int(token[_ENUM])
            if pos == payload or not ends_with(_STRING_END, pos, end) or data.find(b":", payload, pos) == -1:
                return None
            pos += 2
            values_seen += 1
        # A value is complete or a container has opened: read keys (and the values the pair
        # pattern covers) and close containers until a value needs the general token above.
        while depth:
            if remaining:
                remaining -= 1
                token = pair_match(data, pos, end)
                if token is None:
                    token = key_match(data, pos, end)
                    if token is None:
                        return None
                    if token.lastindex:
                        pos = token.end() + int(token[1])
                        if not ends_with(_STRING_END, pos, end):
                            return None
                        pos += 2
                    else:
                        pos = token.end()
                    break
                pos = token.end()
                values_seen += 1
                if token.lastindex == _PAIR_ARRAY:
                    enclosing.append(remaining)
                    depth += 1
                    remaining = int(token[_PAIR_ARRAY])
                elif starts[occurrence] < pos:
                    # A search string starts in this pair: note the value if it lies inside it.
                    header = token.start(_PAIR_VALUE)
                    if data[header] == _S:
                        payload = data.index(b'"', header) + 1
                        while starts[occurrence] < payload:
                            occurrence += 1
                        if smallest_ends[occurrence] <= pos - 2:
                            hits.append((header, payload, pos - 2))
                    while starts[occurrence] < pos:
                        occurrence += 1
                continue
            if not ends_with(_CLOSE, pos, end):
                return None
            pos += 1
            depth -= 1
            if depth:
                remaining = enclosing.pop()
        else:
            if pos == end or data[pos:end].isspace():
                return hits
            return None


# -- when the plain replacement is the exact one -------------------------------------------------------------------
# When every expanded pair keeps the byte length of what it replaces, editing a serialized value changes no
# length, and so gives the plain replacement whenever every occurrence of a search string lies in the payload
# of a string *value* (not a key, class name or other token) that does not hold serialized data itself: the
# pairs cannot match across a payload's quotes (no search string holds one), and the quotes around a payload
# are a host-name boundary just as its edges are.  That holds whether or not the value parses completely (when
# it does not, the plain replacement is the answer anyway), so the counts need no checking: one pass of a
# regular expression over a copy of the value in which occurrences are marked tells it.
_MARK = b"\xff"            # UTF-8 never has this byte; a value's own 0xFF bytes only count as occurrences too
_LEXED_LIMIT = 1000        # strings this long and longer are read by Python, one at a time
_NESTING_LIMIT = 32


@functools.lru_cache(maxsize=None)
def _lexer():
    """(one opener and the items after it, items), compiled on first use.

    Keys and class names may not hold a mark; a string value holding one may not start like serialized data.
    """
    mark_free = "s:" + _by_length(_LEXED_LIMIT, lambda size: ':"[^\xff]{%d}"' % size)
    # A payload that does not start like serialized data is stepped over at once, whatever it holds.
    value_string = "s:" + _by_length(_LEXED_LIMIT, lambda size: ':"(?:(?!%s).{%d}|[^\xff]{%d})"'
                                     % (_PREFIX_PATTERN, size, size))
    key = "(?:i:[+-]?\\d+|%s)" % mark_free
    scalar = _SCALAR.decode("ascii").replace(";", "")
    opener = '(?:a:\\d+|O:\\d+:"[A-Za-z0-9_\x80-\xfe][A-Za-z0-9_\x80-\xfe\\\\]*":[+-]?\\d+):\\{'
    items = "(?:%s;(?:(?:%s|%s);|%s)|\\})*+" % (key, value_string, scalar, opener)
    return (re.compile((opener + items).encode("latin-1"), re.DOTALL), re.compile(items.encode("latin-1"), re.DOTALL))


_PREFIX_PATTERN = "[aOsidbCErR]:|N;"
_STRING_HEADER = re.compile(rb's:(\d+):"')


def _marked(data, marks):
    for needle, marked in marks:
        data = data.replace(needle, marked)
    return data


def _plain_is_exact(marked, begin=0, end=None, depth=0):
    """True when every mark in the serialized value ``marked[begin:end]`` lies in a string value's payload.

    Payloads holding a mark and serialized data are looked into the same way; strings the regular
    expression does not read (too long, or such payloads) are read here.  Marks after a complete
    top-level string can only be trailing text, which makes the whole value plain text.
    """
    end = len(marked) if end is None else end
    opened, items = _lexer()
    token = opened.match(marked, begin, end)
    if token is None:
        header = _STRING_HEADER.match(marked, begin, end)
        if header is None:
            return False
        return _payload_is_plain(marked, header.end(), header.end() + int(header[1]), end, depth)
    position = token.end()
    while marked.find(_MARK, position, end) != -1:
        key = _KEY_TOKEN.match(marked, position, end)
        if key is None:
            return False
        position = key.end()
        if key.lastindex:
            key_end = position + int(key[1])
            if not marked.startswith(b'";', key_end, end) or marked.find(_MARK, position, key_end) != -1:
                return False
            position = key_end + 2
        header = _STRING_HEADER.match(marked, position, end)
        if header is None:
            return False
        payload_end = header.end() + int(header[1])
        if not _payload_is_plain(marked, header.end(), payload_end, end, depth):
            return False
        position = items.match(marked, payload_end + 2, end).end()
    return True


def _payload_is_plain(marked, payload, payload_end, end, depth):
    """True when the string payload ``marked[payload:payload_end]`` ends right and is edited as plain text."""
    if not marked.startswith(b'";', payload_end, end):
        return False
    if marked.find(_MARK, payload, payload_end) == -1 or not marked.startswith(_BYTE_PREFIX_TUPLE, payload, payload_end):
        return True
    return depth < _NESTING_LIMIT and _plain_is_exact(marked, payload, payload_end, depth + 1)


def _rewrite(data, plan):
    """``data`` edited as serialized data, ``data`` itself when nothing changed, None when not serialized."""
    starts, smallest_ends = plan.occurrences(data)
    hits = _scan(data, 0, len(data), starts, smallest_ends)
    if not hits:
        return hits if hits is None else data
    if plan.joinable:
        # The common case: no payload with a hit starts like serialized data (joined by NULs, the payloads show
        # it to one search), so each gets the plain replacement, all in one pass as in _edits.
        originals = [data[payload:payload_end] for _header, payload, payload_end in hits]
        joined = b"\0".join(originals)
        if (joined.count(b"\0") == len(originals) - 1 and not joined.startswith(_BYTE_PREFIX_TUPLE)
                and _NESTED_START.search(joined) is None):
            return _spliced(data, hits, originals, _apply_steps(plan.byte_steps, joined).split(b"\0"))
    # Payloads that are serialized themselves are edited by a frame of their own; frames sit on an
    # explicit stack so that serialized data nested in strings many levels deep needs no recursion.
    # A frame is [hits, next hit, edits, output pieces, copied up to, end of its range], where the
    # edit of a hit is its new payload, None when it stays, or the hits of a nested frame to run.
    frames = [[hits, 0, _edits(data, hits, plan, starts, smallest_ends), [], 0, len(data)]]
    while True:
        frame = frames[-1]
        hits, index, edits, pieces, copied, frame_end = frame
        for index in range(index, len(hits)):
            edit = edits[index]
            if edit is None:
                continue
            header, payload, payload_end = hits[index]
            if isinstance(edit, list):
                frame[1], frame[4] = index, copied
                frames.append([edit, 0, _edits(data, edit, plan, starts, smallest_ends), [], payload, payload_end])
                break
            pieces += (data[copied:header], b's:%d:"' % len(edit), edit)
            copied = payload_end
        else:
            frames.pop()
            if pieces:
                pieces.append(data[copied:frame_end])
            if not frames:
                return b"".join(pieces) if pieces else data
            parent = frames[-1]
            parent[2][parent[1]] = b"".join(pieces) if pieces else None


_NESTED_START = re.compile(b"\\x00(?:[aOsidbCErR]:|N;)")   # after the first payload; see _rewrite


def _spliced(data, hits, originals, replaced):
    """``data`` with the payload of each hit that changed replaced and its length recomputed."""
    pieces = []
    copied = 0
    for (header, _payload, payload_end), original, new in zip(hits, originals, replaced):
        if new != original:
            pieces += (data[copied:header], b's:%d:"' % len(new), new)
            copied = payload_end
    if not pieces:
        return data
    pieces.append(data[copied:])
    return b"".join(pieces)


def _edits(data, hits, plan, starts, smallest_ends):
    """For each hit (see ``_scan``): its new payload, None when it stays, or the hits inside it."""
    edits = [None] * len(hits)
    plain = []
    for index, (_header, payload, payload_end) in enumerate(hits):
        if data.startswith(_BYTE_PREFIX_TUPLE, payload, payload_end):
            nested = _scan(data, payload, payload_end, starts, smallest_ends)
            if nested is not None:
                edits[index] = nested or None
                continue
        plain.append(index)
    originals = [data[hits[index][1]:hits[index][2]] for index in plain]
    replaced = None
    if plan.joinable and len(originals) > 1:
        # All payloads in one pass: no search string can match across the NUL between two, and the
        # host-name guards see the NUL as the payload's edge; so this equals one pass per payload.
        joined = b"\0".join(originals)
        if joined.count(b"\0") == len(originals) - 1:
            replaced = _apply_steps(plan.byte_steps, joined).split(b"\0")
    if replaced is None:
        replaced = [_apply_steps(plan.byte_steps, original) for original in originals]
    for index, original, new in zip(plain, originals, replaced):
        if new != original:
            edits[index] = new
    return edits


def replace_value(value, pairs):
    """Apply ``pairs`` to one column value; see the module documentation.

    ``value`` is text (``str``), or ``bytes`` for binary columns, edited the
    same way byte for byte; the result has the same type.  When nothing
    changes, ``value`` itself is returned.
    """
    # Called once per value of every row: the same tuple of pairs as in the last call needs no lookup.
    last = _last
    plan = last[2] if pairs is last[0] and isinstance(pairs, tuple) else _plan_for(pairs)
    if isinstance(value, bytes):
        is_text, steps, needles, prefixes = False, plan.byte_steps, plan.byte_needles, _BYTE_PREFIXES
    else:
        is_text, steps, needles, prefixes = True, plan.text_steps, plan.text_needles, _TEXT_PREFIXES
    for needle in needles:
        if needle in value:
            break
    else:
        return value
    if value[:2] in prefixes:
        data = _encode(value) if is_text else value
        if not (plan.marks and _plain_is_exact(_marked(data, plan.marks))):
            edited = _rewrite(data, plan)
            if edited is data:
                return value
            if edited is not None:
                return edited.decode("utf-8", "surrogatepass") if is_text else edited
    result = _apply_steps(steps, value)
    return value if result is value or result == value else result


def plain_replace(value, pairs):
    """The plain replacement alone: ``expand_pairs(pairs)`` applied in order.

    A plain pair is ``str.replace``; a ``HostPair`` replaces the matches of
    ``host_pair_regex(search)``.
    """
    result = _plan_for(pairs).plain(value)
    return value if result == value else result


def is_serialized(value):
    """True when ``value`` (text or bytes) parses completely as one PHP-serialized value.

    Trailing ASCII whitespace (space, tab, CR, LF, VT, FF) is allowed; leading
    whitespace is not, as PHP's unserialize() does not allow it either.
    """
    data = value if isinstance(value, bytes) else _encode(value)
    return data[:2] in _BYTE_PREFIXES and _scan(data, 0, len(data)) is not None
