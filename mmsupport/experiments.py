"""A/B variants: part of the traffic gets other settings (a prompt, a search mode, a model or adapter).

``settings.variants`` names a YAML file (``MMSUPPORT_VARIANTS``)::

    variants:
      control: {weight: 1}
      fts: {weight: 1, search_mode: fts, top_k: 3, prompt_file: prompts_b.yaml, no_match_threshold: 0.35}

Each variant has a ``weight`` (its share of the traffic is its weight over the sum) and any of the settings in
:data:`OVERRIDES`. The variant named ``control``, or else the first one, is the control. Without a file there is one
variant, ``control``, with the app's own settings. A file that cannot be used is refused when the app starts, with
the line and the key that are wrong.

Assignment is deterministic: :meth:`Experiments.assign` hashes its key (the browser's visitor id, or the API's
session id) to a number in [0, 1) and walks the cumulative weights, so the same key always gets the same variant.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from mmsupport.config import SEARCH_MODES, Settings
from mmsupport.errors import InvalidInput

#: Name of the variant that gets the app's own settings.
CONTROL = "control"
#: Most items a variant may retrieve per turn (the chat's limit).
MAX_TOP_K = 50


def _search_mode(value):
    if value not in SEARCH_MODES:
        raise ValueError(f"must be one of {', '.join(SEARCH_MODES)}")
    return value


def _top_k(value):
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOP_K:
        raise ValueError(f"must be a whole number from 1 to {MAX_TOP_K}")
    return value


def _text(value):
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    return value


def _fraction(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError("must be a number from 0 to 1")
    return float(value)


#: The settings a variant may change, each with its check (which raises ``ValueError`` saying what it must be).
OVERRIDES = {"search_mode": _search_mode, "top_k": _top_k, "prompt_file": _text, "model": _text,
             "adapter": _text, "no_match_threshold": _fraction}


@dataclass(frozen=True)
class Variant:
    """One arm of the experiment: its ``name``, ``weight`` and the settings it changes (``overrides``)."""

    name: str
    weight: float = 1.0
    overrides: dict = field(default_factory=dict)

    def apply(self, settings: Settings) -> Settings:
        """``settings`` with this variant's overrides."""
        return dataclasses.replace(settings, **self.overrides) if self.overrides else settings


class Experiments:
    """The variants of the running app (at least one) and the rule that assigns one to a visitor or session."""

    def __init__(self, variants: list[Variant]):
        if not variants:
            raise ValueError("at least one variant is needed")
        self.variants = variants
        self.control = next((v for v in variants if v.name == CONTROL), variants[0])
        total = sum(v.weight for v in variants)
        self._bounds, running = [], 0.0
        for variant in variants:
            running += variant.weight / total
            self._bounds.append(running)

    @classmethod
    def from_settings(cls, settings: Settings) -> Experiments:
        """The variants of ``settings.variants`` (a YAML file), or just ``control`` when it is not set."""
        if settings.variants is None:
            return cls([Variant(CONTROL)])
        return cls(load_variants(Path(settings.variants)))

    def assign(self, key: str) -> Variant:
        """The variant for ``key``: always the same one for the same key, each with its share of keys."""
        point = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64
        for variant, bound in zip(self.variants, self._bounds):
            if point < bound:
                return variant
        return self.variants[-1]  # float rounding can leave the last bound a hair under 1

    def get(self, name: str) -> Variant:
        """The variant called ``name`` (the control when there is none, e.g. after the file changed)."""
        return next((v for v in self.variants if v.name == name), self.control)


# -- the YAML file ---------------------------------------------------------------------------------------------------

def _refuse(path: Path, node, message: str) -> InvalidInput:
    line = f", line {node.start_mark.line + 1}" if node is not None else ""
    return InvalidInput(f"{path}{line}: {message}.", hint="Fix the variants file (MMSUPPORT_VARIANTS) and restart.")


def _mapping(path: Path, node, what: str) -> list[tuple]:
    """The ``(key node, value node)`` pairs of a mapping node, or a refusal naming ``what`` should be a mapping."""
    import yaml

    if not isinstance(node, yaml.MappingNode):
        raise _refuse(path, node, f"{what} must be a mapping")
    return node.value


def load_variants(path: Path) -> list[Variant]:
    """Read and check a variants file; raises :class:`InvalidInput` naming the line and key of the first problem."""
    import yaml

    try:
        root = yaml.compose(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InvalidInput(f"Cannot read the variants file {path}: {error.strerror}.",
                           hint="Check MMSUPPORT_VARIANTS.") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise InvalidInput(f"{path}{where}: not valid YAML ({getattr(error, 'problem', error)}).",
                           hint="Fix the variants file (MMSUPPORT_VARIANTS) and restart.") from None
    top = {k.value: (k, v) for k, v in _mapping(path, root, "the file")}
    if set(top) != {"variants"}:
        extra = next((k for name, (k, _) in top.items() if name != "variants"), root)
        raise _refuse(path, extra, "the file must have one key, 'variants'"
                      + (f", not {extra.value!r}" if extra is not root else ""))
    key, body = top["variants"]
    pairs = _mapping(path, body, "'variants'")
    if not pairs:
        raise _refuse(path, key, "'variants' lists no variant")
    variants = [_variant(path, name, value) for name, value in pairs]
    seen = set()
    for (name, _), variant in zip(pairs, variants):
        if variant.name in seen:
            raise _refuse(path, name, f"variant {variant.name!r} is listed twice")
        seen.add(variant.name)
    return variants


def _variant(path: Path, name_node, node) -> Variant:
    import yaml

    name = name_node.value
    if not isinstance(name_node, yaml.ScalarNode) or not name or len(name) > 64:
        raise _refuse(path, name_node, "a variant's name must be text of 1 to 64 characters")
    weight, overrides = None, {}
    for key_node, value_node in _mapping(path, node, f"variant {name!r}"):
        key = key_node.value
        value = yaml.safe_load(yaml.serialize(value_node))
        if key == "weight":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise _refuse(path, value_node, f"variant {name!r}: weight must be a number above 0, not {value!r}")
            weight = float(value)
        elif key in OVERRIDES:
            try:
                overrides[key] = OVERRIDES[key](value)
            except ValueError as error:
                raise _refuse(path, value_node, f"variant {name!r}: {key} {error}, not {value!r}") from None
            if key == "prompt_file":
                overrides[key] = _prompt_file(path, value_node, name, value)
        else:
            raise _refuse(path, key_node, f"variant {name!r}: unknown key {key!r} (use weight, "
                                          f"{', '.join(OVERRIDES)})")
    if weight is None:
        raise _refuse(path, name_node, f"variant {name!r} has no weight")
    return Variant(name, weight, overrides)


def _prompt_file(path: Path, node, name: str, value: str) -> Path:
    """The prompt file, relative to the variants file's folder, checked now so a typo fails at start."""
    from mmsupport.agent import load_prompts

    prompt_path = (path.parent / value).resolve()
    try:
        load_prompts(prompt_path)
    except InvalidInput as error:
        raise _refuse(path, node, f"variant {name!r}: prompt_file: {error.message}") from None
    return prompt_path
