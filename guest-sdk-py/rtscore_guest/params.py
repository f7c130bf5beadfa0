"""Plugin parameters as a typed object: the scenario's ``plugin.params`` JSON read into a
dataclass, as serde reads it into a struct in the Rust SDK with
``#[serde(default, deny_unknown_fields)]``: missing fields take their defaults, unknown ones
are an error, and each value must have the field's type."""

import dataclasses
import json
import typing


class ParamsError(ValueError):
    """Invalid ``plugin.params``: the host rejects the reference (``configure`` fails)."""


@dataclasses.dataclass
class NoParams:
    """Params of a scorer that takes none: absent, ``null`` or ``{}``; anything else is an error,
    so a misspelt parameter is reported rather than silently ignored."""


def _type_name(t):
    return getattr(t, "__name__", str(t))


def _check(name, value, t):
    """``value`` converted to the field type ``t``, or a :class:`ParamsError`."""
    origin = typing.get_origin(t)
    if t is typing.Any or t is None or isinstance(t, str):
        return value
    if t is float:
        # JSON has one number type: an integer is a valid float, a boolean is not.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif t is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif t is bool:
        if isinstance(value, bool):
            return value
    elif t is str:
        if isinstance(value, str):
            return value
    elif origin in (list, typing.List):
        if isinstance(value, list):
            (inner,) = typing.get_args(t) or (typing.Any,)
            return [_check(f"{name}[{k}]", v, inner) for k, v in enumerate(value)]
    elif origin in (dict, typing.Dict):
        if isinstance(value, dict):
            return value
    elif origin is typing.Union:
        args = typing.get_args(t)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _check(name, value, a)
            except ParamsError:
                pass
    elif isinstance(t, type) and isinstance(value, t):
        return value
    raise ParamsError(f"invalid type for field `{name}`: expected {_type_name(t)}, got {json.dumps(value)}")


def parse_params(cls, params_json):
    """Parses ``plugin.params`` JSON into an instance of the dataclass ``cls``; absent (empty)
    or ``null`` gives ``cls()`` (every field's default)."""
    text = (params_json or "").strip()
    if text in ("", "null"):
        return cls()
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise ParamsError(f"invalid plugin params {text}: {e}") from None
    if not isinstance(doc, dict):
        raise ParamsError(f"invalid plugin params {text}: expected an object")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in doc.items():
        if key not in fields:
            expected = ", ".join(f"`{n}`" for n in fields) or "none"
            raise ParamsError(f"invalid plugin params {text}: unknown field `{key}`, expected {expected}")
        try:
            kwargs[key] = _check(key, value, hints.get(key, typing.Any))
        except ParamsError as e:
            raise ParamsError(f"invalid plugin params {text}: {e}") from None
    return cls(**kwargs)
