"""Generated inputs: type-aware mutation of the traced seeds, and Hypothesis strategies inferred from them.

Everything here is deterministic from one integer seed: the same seeds and the same seed give the same cases
(random.Random for mutation, Hypothesis's `@seed` with no example database for the strategies). A case is plain
data: {"entry": "pkg.mod:f", "args": <encoded list>, "kwargs": <encoded dict>}, encoded by probe.encode.
"""

from __future__ import annotations

import contextlib
import math
import random
import string
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from scoring.core.critics.discriminator.probe import Unrepresentable, canonical, decode, encode

#: Size caps of one generated case: characters of its encoded form, items of a container, characters of a string.
MAX_CASE_CHARS = 4000
MAX_ITEMS = 64
MAX_STRING = 256
#: Integers at the edges that code often gets wrong.
INT_EDGES = (0, 1, -1, 2, -2, 10, 100, -100, 255, 256, 2**31 - 1, -(2**31), 2**63 - 1)
FLOAT_EDGES = (0.0, -0.0, 0.5, -0.5, 1e-9, 1e9, 0.1, 1.0, -1.0)
_EXTRA_CHARS = " -_.,!?'\"\t\nAZaz09éÉüßçñ€✓\u00a0"
#: Share of the generated cases (after seeds and the author's inputs) that mutation makes; Hypothesis the rest.
MUTATION_SHARE = 0.6


def case(entry: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    """A case of plain values, or None when it cannot be carried as plain data or is past the size caps."""
    try:
        item = {"entry": entry, "args": encode(list(args)), "kwargs": encode(dict(kwargs))}
    except (Unrepresentable, RecursionError):
        return None
    return item if len(canonical(item)) <= MAX_CASE_CHARS else None


def generate(
    entry: str,
    seeds: Sequence[Mapping[str, Any]],
    *,
    count: int,
    seed: int,
    annotations: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Up to `count` new distinct cases for `entry`, none equal to a seed: mutation first, then Hypothesis."""
    rng = random.Random(f"{seed}:{entry}")  # noqa: S311 - reproducible inputs, not secrets
    decoded = []
    for item in seeds:
        try:
            decoded.append((decode(item["args"]), decode(item.get("kwargs") or {"t": "dict", "v": []})))
        except (Unrepresentable, KeyError, TypeError, ValueError):
            continue
    seen = {canonical(_key(item)) for item in seeds}
    out: list[dict[str, Any]] = []

    def add(args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        made = case(entry, args, kwargs)
        if made is not None and canonical(_key(made)) not in seen:
            seen.add(canonical(_key(made)))
            out.append(made)

    mutations = round(count * MUTATION_SHARE) if decoded else 0
    attempts = 0
    while decoded and len(out) < mutations and attempts < 30 * count:
        attempts += 1
        args, kwargs = rng.choice(decoded)
        add(*mutate_call(args, kwargs, rng))
    for args, kwargs in hypothesis_cases(decoded, annotations or {}, count=count - len(out), seed=seed):
        if len(out) >= count:
            break
        add(args, kwargs)
    while decoded and len(out) < count and attempts < 60 * count:  # Hypothesis found too few distinct cases
        attempts += 1
        args, kwargs = rng.choice(decoded)
        add(*mutate_call(args, kwargs, rng))
    return out


def _key(item: Mapping[str, Any]) -> dict[str, Any]:
    return {"entry": item["entry"], "args": item["args"], "kwargs": item.get("kwargs") or {"t": "dict", "v": []}}


# --- mutation ------------------------------------------------------------------------------------------------


def mutate_call(args: Sequence[Any], kwargs: Mapping[str, Any], rng: random.Random) -> tuple[list[Any], dict[str, Any]]:
    """A copy of the call with one to three of its arguments mutated (each a fresh copy)."""
    new_args, new_kwargs = [decode(encode(a)) for a in args], {k: decode(encode(v)) for k, v in kwargs.items()}
    slots: list[tuple[str, int | str]] = [("a", i) for i in range(len(new_args))] + [("k", k) for k in new_kwargs]
    if not slots:
        return new_args, new_kwargs
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        where, key = rng.choice(slots)
        if where == "a" and isinstance(key, int):  # always an int: the argument's position
            new_args[key] = mutate(new_args[key], rng)
        elif isinstance(key, str):  # always, for a ("k", name) slot: keyword names are strings
            new_kwargs[key] = mutate(new_kwargs[key], rng)
    return new_args, new_kwargs


def mutate(value: Any, rng: random.Random, depth: int = 0) -> Any:
    """A mutated copy of `value` that keeps its type: numbers nudged or at their edges; lists, sets and dicts grown,
    shrunk, emptied, shuffled, given duplicates or a mutated element; tuples (records) a mutated field; strings
    edited."""
    kind = type(value)
    if kind is bool:
        return not value
    if kind is int:
        return rng.choice((value + 1, value - 1, -value, value * 2, value // 2, rng.choice(INT_EDGES)))
    if kind is float:
        options = (value + 0.5, value - 0.5, -value, value * 2, value / 3, rng.choice(FLOAT_EDGES))
        return rng.choice([option for option in options if math.isfinite(option)] or [0.0])
    if kind is str:
        return _mutate_text(value, rng)
    if kind in (bytes, bytearray):
        return kind(_mutate_text(value.decode("latin-1"), rng).encode("latin-1", "replace"))
    if kind is list:
        return _mutate_sequence(value, rng, depth)
    if kind is tuple:
        # Tuples are records ((start, end)): their length is part of their type, so only a field changes.
        if not value:
            return value
        items = list(value)
        index = rng.randrange(len(items))
        items[index] = mutate(items[index], rng, depth + 1)
        return tuple(items)
    if kind in (set, frozenset):
        items = _mutate_sequence(sorted(value, key=lambda v: canonical(encode(v))), rng, depth)
        try:
            return kind(items)
        except TypeError:
            return value
    if kind is dict:
        return _mutate_dict(value, rng, depth)
    return value


def _mutate_sequence(items: list[Any], rng: random.Random, depth: int) -> list[Any]:
    items = list(items)
    choices = ["grow", "grow", "empty", "duplicate", "shuffle", "reverse", "shrink", "element", "element"]
    how = rng.choice(choices if items else ["grow_new"])
    if how == "grow_new" or (how == "grow" and not items):
        return [0]
    if how == "grow" and len(items) < MAX_ITEMS:
        items.insert(rng.randrange(len(items) + 1), mutate(rng.choice(items), rng, depth + 1))
    elif how == "empty":
        items = []
    elif how == "duplicate" and len(items) < MAX_ITEMS:
        items.insert(rng.randrange(len(items) + 1), rng.choice(items))
    elif how == "shuffle":
        rng.shuffle(items)
    elif how == "reverse":
        items.reverse()
    elif how == "shrink":
        items.pop(rng.randrange(len(items)))
    elif how == "element":
        index = rng.randrange(len(items))
        items[index] = mutate(items[index], rng, depth + 1)
    return items


def _mutate_dict(value: dict[Any, Any], rng: random.Random, depth: int) -> dict[Any, Any]:
    items = dict(value)
    if not items:
        return {"a": 0}
    how = rng.choice(("value", "value", "drop", "add", "empty"))
    key = rng.choice(list(items))
    if how == "value":
        items[key] = mutate(items[key], rng, depth + 1)
    elif how == "drop":
        items.pop(key)
    elif how == "add" and len(items) < MAX_ITEMS:
        new_key = mutate(key, rng, depth + 1)
        with contextlib.suppress(TypeError):  # an unhashable mutated key
            items[new_key] = mutate(items[key], rng, depth + 1)
    elif how == "empty":
        items = {}
    return items


def _mutate_text(text: str, rng: random.Random) -> str:
    how = rng.choice(("insert", "insert", "delete", "swap", "duplicate", "empty", "upper", "pad", "replace"))
    alphabet = (text or "") + _EXTRA_CHARS + string.ascii_letters
    position = rng.randrange(len(text) + 1)
    if how == "insert" and len(text) < MAX_STRING:
        return text[:position] + rng.choice(alphabet) + text[position:]
    if how == "delete" and text:
        index = rng.randrange(len(text))
        return text[:index] + text[index + 1 :]
    if how == "swap" and len(text) > 1:
        index = rng.randrange(len(text) - 1)
        return text[:index] + text[index + 1] + text[index] + text[index + 2 :]
    if how == "duplicate" and text and len(text) * 2 <= MAX_STRING:
        return text + text
    if how == "empty":
        return ""
    if how == "upper":
        return text.swapcase()
    if how == "pad":
        return rng.choice((" ", "  ", "\t", "-")) + text + rng.choice((" ", "", "\n", "-"))
    if how == "replace" and text:
        index = rng.randrange(len(text))
        return text[:index] + rng.choice(alphabet) + text[index + 1 :]
    return text + rng.choice(alphabet)


# --- shrinking ----------------------------------------------------------------------------------------------

#: Simplifications tried per value: elements dropped or simplified one at a time, characters dropped.
_SHRINK_WIDTH = 16


def size(item: Mapping[str, Any]) -> tuple[int, str]:
    """The order in which cases count as smaller: shorter encoded arguments first, then their text (shortlex)."""
    text = canonical([item["args"], item.get("kwargs") or {"t": "dict", "v": []}])
    return len(text), text


def shrinks(item: Mapping[str, Any], *, depth: int = 1, width: int = 64) -> list[dict[str, Any]]:
    """The cases up to `depth` simplifications away from `item` and smaller than it (`size`), smallest first,
    distinct; each level expands the `width` smallest of the one before.

    A simplification replaces one argument by a simpler value of the same type (`simpler`), or every number of
    the arguments by its simplest or its halfway value at once. Deterministic.
    """
    found = _one_step(item)
    frontier = found[:width]
    for _ in range(depth - 1):
        frontier = distinct(c for parent in frontier for c in _one_step(parent))[: width * width]
        found = distinct([*found, *frontier])
    bound = size(item)
    return sorted((c for c in found if size(c) < bound), key=size)


def _one_step(item: Mapping[str, Any]) -> list[dict[str, Any]]:
    try:
        args = decode(item["args"])
        kwargs = decode(item.get("kwargs") or {"t": "dict", "v": []})
    except (Unrepresentable, KeyError, TypeError, ValueError):
        return []
    # Every scalar at its simplest at once, shapes kept: a jump that saves a round per scalar when it still fails.
    made = [
        case(item["entry"], _deep(args, 0), _deep(kwargs, 0)),
        case(item["entry"], _deep(args, 1), _deep(kwargs, 1)),
    ]
    for index, value in enumerate(args):
        for simple in simpler(value):
            made.append(case(item["entry"], [*args[:index], simple, *args[index + 1 :]], kwargs))
    for key, value in kwargs.items():
        for simple in simpler(value):
            made.append(case(item["entry"], args, {**kwargs, key: simple}))
    bound = size(item)
    return sorted((m for m in distinct(m for m in made if m is not None) if size(m) < bound), key=size)


def _deep(value: Any, pick: int) -> Any:
    """`value` with every scalar replaced by its `pick`-th simpler value (0: the simplest, 1: halfway), shapes kept."""
    kind = type(value)
    if kind in (list, tuple):
        return kind(_deep(item, pick) for item in value)
    if kind is dict:
        return {key: _deep(item, pick) for key, item in value.items()}
    if kind in (set, frozenset, str, bytes, bytearray):
        return value  # their items are their identity (a set of zeros is one zero); one-step shrinks handle them
    options = simpler(value)
    return options[min(pick, len(options) - 1)] if options else value


def simpler(value: Any, depth: int = 0) -> list[Any]:
    """Simpler values of the same type: numbers towards 0, containers emptied, halved, an element dropped or
    simplified, strings emptied, halved or a character dropped; tuples (records) keep their length."""
    kind = type(value)
    if kind is bool:
        return [False] if value else []
    if kind is int:
        toward = [0, value // 2 if value > 0 else -(-value // 2), value - 1 if value > 0 else value + 1, -value]
        return [v for v in dict.fromkeys(toward) if abs(v) < abs(value) or (v == -value and value < 0)]
    if kind is float:
        if not math.isfinite(value):
            return [0.0]
        return [v for v in dict.fromkeys((0.0, float(int(value)), value / 2)) if abs(v) < abs(value)]
    if kind in (str, bytes, bytearray):
        if not value:
            return []
        half = len(value) // 2
        drops = [value[:i] + value[i + 1 :] for i in range(min(len(value), _SHRINK_WIDTH))]
        return list(dict.fromkeys([value[:0], value[:half], value[half:], *drops]))
    if depth > 3:
        return []
    if kind is tuple:
        return [
            (*value[:i], simple, *value[i + 1 :]) for i, item in enumerate(value) for simple in simpler(item, depth + 1)
        ]
    if kind in (list, set, frozenset):
        items = sorted(value, key=lambda v: canonical(encode(v))) if kind is not list else list(value)
        half = len(items) // 2
        options = [[], items[:half], items[half:]] if items else []
        options += [items[:i] + items[i + 1 :] for i in range(min(len(items), _SHRINK_WIDTH))]
        options += [
            [*items[:i], simple, *items[i + 1 :]]
            for i, item in enumerate(items[:_SHRINK_WIDTH])
            for simple in simpler(item, depth + 1)
        ]
        out = []
        for option in options:
            with contextlib.suppress(TypeError):  # an unhashable simplified element of a set
                out.append(kind(option))
        return out
    if kind is dict:
        keys = list(value)[:_SHRINK_WIDTH]
        smaller: list[dict[Any, Any]] = [{}] if value else []
        smaller += [{k: v for k, v in value.items() if k != key} for key in keys]
        smaller += [{**value, key: simple} for key in keys for simple in simpler(value[key], depth + 1)]
        return smaller
    return []


# --- Hypothesis --------------------------------------------------------------------------------------------


def hypothesis_cases(
    seeds: Sequence[tuple[list[Any], dict[str, Any]]], annotations: Mapping[str, str], *, count: int, seed: int
) -> list[tuple[list[Any], dict[str, Any]]]:
    """Up to `count` calls drawn from strategies inferred from the seeds (by call shape), or from annotations."""
    if count <= 0:
        return []
    from hypothesis import HealthCheck, Phase, given
    from hypothesis import seed as hypothesis_seed
    from hypothesis import settings as hypothesis_settings
    from hypothesis import strategies as st

    shapes: dict[tuple[int, tuple[str, ...]], list[tuple[list[Any], dict[str, Any]]]] = {}
    for args, kwargs in seeds:
        shapes.setdefault((len(args), tuple(sorted(kwargs))), []).append((args, kwargs))
    strategies = []
    for (arity, names), calls in sorted(shapes.items()):
        positional = [_infer(st, [call[0][i] for call in calls]) for i in range(arity)]
        named = {name: _infer(st, [call[1][name] for call in calls]) for name in names}
        strategies.append(st.tuples(st.tuples(*positional), st.fixed_dictionaries(named)))
    if not strategies:
        inferred = _from_annotations(st, annotations)
        if inferred is None:
            return []
        strategies.append(inferred)
    drawn: list[tuple[list[Any], dict[str, Any]]] = []

    @hypothesis_seed(seed)
    @hypothesis_settings(
        max_examples=count,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(st.one_of(strategies))
    def collect(call: tuple[tuple[Any, ...], dict[str, Any]]) -> None:
        drawn.append((list(call[0]), dict(call[1])))

    collect()
    return drawn


def _infer(st: Any, values: Sequence[Any]) -> Any:
    """A strategy for values like these: the same types, ranges around the observed ones, sizes a bit past them."""
    by_type: dict[type, list[Any]] = {}
    for value in values:
        by_type.setdefault(type(value), []).append(value)
    options = [_infer_type(st, kind, group) for kind, group in by_type.items()]
    options = [option for option in options if option is not None]
    return st.one_of(options) if options else st.none()


def _infer_type(st: Any, kind: type, values: list[Any]) -> Any:
    size = min(MAX_ITEMS, max([len(v) for v in values if hasattr(v, "__len__")] or [0]) * 2 + 4)
    if kind is bool:
        return st.booleans()
    if kind is int:
        low, high = min(values), max(values)
        span = max(10, high - low)
        return st.one_of(st.integers(low - 2 * span, high + 2 * span), st.integers(-(2**40), 2**40))
    if kind is float:
        return st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)
    if kind is str:
        alphabet = sorted(set("".join(values)) | set(_EXTRA_CHARS) | set(string.ascii_lowercase))
        return st.text(alphabet=alphabet, max_size=min(MAX_STRING, size))
    if kind is type(None):
        return st.none()
    if kind is list:
        return st.lists(_elements(st, [item for value in values for item in value]), max_size=size)
    if kind is tuple:
        by_length: dict[int, list[tuple[Any, ...]]] = {}
        for value in values:
            by_length.setdefault(len(value), []).append(value)
        return st.one_of([_record(st, n, group) for n, group in by_length.items()])
    if kind in (set, frozenset):
        make = st.sets if kind is set else st.frozensets
        return make(_elements(st, [item for value in values for item in value]), max_size=size)
    if kind is dict:
        keys = [key for value in values for key in value]
        items = [item for value in values for item in value.values()]
        return st.dictionaries(_elements(st, keys), _elements(st, items), max_size=size)
    return None


def _record(st: Any, length: int, group: list[tuple[Any, ...]]) -> Any:
    """Tuples of this length, field by field; when every observed one has ascending numbers ((start, end)),
    mostly ascending ones too, so that generated records are valid as often as the observed ones."""
    raw = st.tuples(*[_infer(st, [v[i] for v in group]) for i in range(length)])
    numeric = all(type(x) in (int, float) for v in group for x in v)
    if length > 1 and numeric and all(list(v) == sorted(v) for v in group):
        return st.one_of(raw.map(lambda v: tuple(sorted(v))), raw.map(lambda v: tuple(sorted(v))), raw)
    return raw


def _elements(st: Any, items: list[Any]) -> Any:
    return _infer(st, items) if items else st.integers(-100, 100)


_ANNOTATION_TYPES = {"int": 0, "float": 0.5, "str": "a", "bool": True, "list": [0], "dict": {"a": 0}, "tuple": (0,)}


def _from_annotations(st: Any, annotations: Mapping[str, str]) -> Any:
    """A strategy from simple annotations (int, float, str, bool, list, dict, tuple) when no call was traced."""
    names = [name for name in annotations if name != "return"]
    if not names:
        return None
    examples = []
    for name in names:
        base = str(annotations[name]).split("[", 1)[0].strip()
        if base not in _ANNOTATION_TYPES:
            return None
        examples.append(_ANNOTATION_TYPES[base])
    positional = [_infer(st, [example]) for example in examples]
    return st.tuples(st.tuples(*positional), st.just({}))


def distinct(items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """`items` without repeats (same entry point and arguments), in their first order."""
    seen: set[str] = set()
    out = []
    for item in items:
        key = canonical(_key(item))
        if key not in seen:
            seen.add(key)
            out.append(dict(_key(item)))
    return out
