"""Reading R2R's single-call JSON answers (the teacher's, and a listwise re-ranker's with `prompt: reasoning`).

The answer asked for (`bench.r2r.prompts.reasoning_messages`) is one JSON object:
`{"keywords": [...], "ranked_passages": [{"identifier", "direct_reason", "comparative_reason"}, ...]}`.
What a model gives back is repaired by a documented rule, and every deviation is counted (RankLLM's
response analysis, as for the plain RankGPT answers of `bench.rerank.listwise`):

1. The JSON is the text from the answer's first `{` to its last `}` (code fences and words around it are
   ignored). It must parse as an object with a list `ranked_passages`; otherwise the answer is a
   **parse error** (counted).
2. The ranking is the entries' identifiers in their order (an integer, or a string such as "3" or "[3]"),
   repaired by RankLLM's rule: a repeated identifier counts once (its first entry), one outside [1, n]
   or unreadable is ignored (`out_of_range`), and passages never named are appended in the window's
   previous order (`missing`).
3. Reasons: a passage's direct reason is the `direct_reason` of the first entry naming it; the
   `comparative_reason` of an entry belongs to the pair (its passage, the next passage named after it).
   Empty or non-string reasons are missing (counted); appended passages have none.
4. A parse error falls back to the identifiers in the text: `"identifier": n` occurrences, else `[n]`
   marks, repaired by the same rule; with none at all the window keeps its order (`malformed`). No reason
   is taken from an unparseable answer (the R2R teacher then asks for them with the separate prompts,
   `r2r.teacher.json_fallback: separate`).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

_ID_FIELD = re.compile(r'"identifier"\s*:\s*"?\[?(\d+)')
_BRACKET = re.compile(r"\[(\d+)\]")


@dataclass
class ReasoningAnswer:
    order: list[int]  # a permutation of range(n): the repaired ranking (window positions, best first)
    parse_error: str = ""  # why the answer was not a JSON object of the asked shape ("" when it was)
    malformed: bool = False  # no identifier at all: the window keeps its order
    repeated: int = 0
    missing: int = 0
    out_of_range: int = 0
    keywords: list[str] = field(default_factory=list)
    direct: dict[int, str] = field(default_factory=dict)  # window position -> direct-relevance reason
    comparative: dict[tuple[int, int], str] = field(default_factory=dict)  # (higher, lower) positions -> reason
    missing_reasons: int = 0  # named passages without a usable direct or comparative reason


def _identifier(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*\[?\s*(\d+)\s*\]?\s*", value)
        return int(m.group(1)) if m else None
    return None


def _json_object(text: str) -> tuple[dict | None, str]:
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None, "no JSON object in the answer"
    try:
        obj = json.loads(text[start:end + 1])
    except ValueError as e:
        return None, f"invalid JSON ({str(e).split(':')[0]})"
    if not isinstance(obj, dict) or not isinstance(obj.get("ranked_passages"), list):
        return None, "JSON without a 'ranked_passages' list"
    return obj, ""


def _rank(numbers: list[int | None], n: int) -> tuple[list[int], list[int], int, int, int]:
    """(order, named positions in order, repeated, missing, out_of_range) by RankLLM's rule."""
    named: list[int] = []
    repeated = out_of_range = 0
    for num in numbers:
        if num is None or not 1 <= num <= n:
            out_of_range += 1
        elif num - 1 in named:
            repeated += 1
        else:
            named.append(num - 1)
    missing = [i for i in range(n) if i not in named]
    return named + missing, named, repeated, len(missing), out_of_range


def parse_reasoning_answer(text: str | None, n: int) -> ReasoningAnswer:
    """The answer's ranking, keywords and reasons, repaired by the module's rule (counts kept)."""
    text = text or ""
    obj, error = _json_object(text)
    if obj is None:
        numbers = [int(x) for x in _ID_FIELD.findall(text)] or [int(x) for x in _BRACKET.findall(text)]
        if not numbers:
            return ReasoningAnswer(list(range(n)), parse_error=error, malformed=True, missing=n)
        order, _, repeated, missing, out = _rank(numbers, n)
        return ReasoningAnswer(order, parse_error=error, repeated=repeated, missing=missing, out_of_range=out)
    entries = [e for e in obj["ranked_passages"] if isinstance(e, dict)]
    numbers = [_identifier(e.get("identifier")) for e in entries]
    order, named, repeated, missing, out = _rank(numbers, n)
    if not named:
        return ReasoningAnswer(order, malformed=True, repeated=repeated, missing=missing, out_of_range=out,
                               missing_reasons=0)
    first_entry: dict[int, dict] = {}
    for num, entry in zip(numbers, entries):
        if num is not None and 1 <= num <= n and num - 1 not in first_entry:
            first_entry[num - 1] = entry
    ans = ReasoningAnswer(order, repeated=repeated, missing=missing, out_of_range=out)
    keywords = obj.get("keywords")
    ans.keywords = [str(k).strip() for k in keywords if str(k).strip()] if isinstance(keywords, list) else []

    def reason(entry: dict, key: str) -> str:
        value = entry.get(key)
        return " ".join(value.split()) if isinstance(value, str) else ""

    for i, pos in enumerate(named):
        direct = reason(first_entry[pos], "direct_reason")
        if direct:
            ans.direct[pos] = direct
        else:
            ans.missing_reasons += 1
        if i + 1 < len(named):
            comparative = reason(first_entry[pos], "comparative_reason")
            if comparative:
                ans.comparative[(pos, named[i + 1])] = comparative
            else:
                ans.missing_reasons += 1
    return ans
