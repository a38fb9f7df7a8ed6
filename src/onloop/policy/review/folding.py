"""The constant folder: computes a string however it is spelled, without running any of the code.

`suspicious_code` must catch a mechanism, not a spelling: `"py" + "test"`, `"%stest" % "py"`,
`"{}test".format("py")`, `f"{P}test"`, `"".join(map(chr, codes))`, `bytes.fromhex(...)`, base64,
rot13 or `"tsetyp"[::-1]` all name pytest. `Folder.fold` evaluates such an expression over a small,
closed set of operations (literals, `+`, `-`, `*`, `%`, f-strings, subscripts and slices, a few `str`
methods, `chr`/`str`/`bytes`/`map`/`reversed`, a comprehension over one sequence, the decoders below) and
returns None for anything else. Names are looked up in `env` (the scanner fills it with names bound
once to a folded value); functions are recognised by the dotted name the scanner's resolver gives them,
so that an aliased `b64decode` folds too.

Folding must stay cheap on hostile input, so every step is bounded before it runs, not after: strings
and tuples stop at `_MAX_FOLD`, integers at 2**64, products and repetitions are refused when their
result would be too large, formats with huge widths are not formatted, and codecs are limited to a safe
list. Any exception of the computation means "not a constant" (None), never a failure of the caller.
"""

from __future__ import annotations

import ast
import base64
import binascii
import codecs
import operator
import re
from collections.abc import Callable, Iterable


class _Unfoldable(Exception):
    """Internal: the expression is not a constant the folder computes."""


_MAX_FOLD = 10_000  # longest string or tuple the folder builds: a guard against `"x" * 10**9`
# `"%99999d"`, `"{:99999}"`, `"{:{}}"`: formats that could allocate without bound are not folded.
_WIDE_PERCENT = re.compile(r"%[-#0 +]*(?:\*|\d{4,})|%[-#0 +]*\d*\.(?:\*|\d{4,})")
_WIDE_BRACE = re.compile(r"\{[^{}]*:[^{}]*(?:\d{4,}|\{)")
_WIDE_SPEC = re.compile(r"\d{4,}")
_SAFE_CODECS = frozenset({"rot13", "rot_13", "rot-13", "hex", "hex_codec", "base64", "base64_codec", "utf-8",
                          "utf8", "ascii", "latin-1", "latin1"})
_STR_METHODS = frozenset({"lower", "upper", "strip", "lstrip", "rstrip", "replace", "swapcase", "casefold",
                          "capitalize", "title", "removeprefix", "removesuffix", "join", "format", "decode",
                          "encode"})
_DECODERS: dict[str, Callable[..., object]] = {
    "base64.b64decode": base64.b64decode, "base64.standard_b64decode": base64.standard_b64decode,
    "base64.urlsafe_b64decode": base64.urlsafe_b64decode, "base64.b32decode": base64.b32decode,
    "base64.b16decode": base64.b16decode, "base64.b85decode": base64.b85decode,
    "base64.a85decode": base64.a85decode, "binascii.unhexlify": binascii.unhexlify,
    "binascii.a2b_hex": binascii.a2b_hex, "binascii.a2b_base64": binascii.a2b_base64,
    "bytes.fromhex": bytes.fromhex, "bytearray.fromhex": bytes.fromhex,
}
_FOLD_ERRORS = (_Unfoldable, ArithmeticError, LookupError, TypeError, ValueError, RecursionError)


def _size(value: object) -> int:
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, tuple):
        return len(value) + sum(_size(v) for v in value)
    return 1


def _bounded(items: Iterable[object]) -> tuple[object, ...]:
    """A tuple built item by item, given up as soon as it grows past the limit (not after)."""
    built: list[object] = []
    total = 0
    for item in items:
        total += _size(item) + 1
        if total > _MAX_FOLD:
            raise _Unfoldable
        built.append(item)
    return tuple(built)


def _guard_product(receiver: object, args: object) -> None:
    # `"a" * 5000` replaced by a 5000-character string, or formatted 5000 times: each operand is small,
    # the result is not. Refused before it is built.
    if (_size(receiver) + 1) * (_size(args) + 1) > _MAX_FOLD * 100:
        raise _Unfoldable


def _checked(value: object) -> object:
    if isinstance(value, str | bytes | tuple) and _size(value) > _MAX_FOLD:
        raise _Unfoldable
    if isinstance(value, int) and abs(value) > 2**64:
        raise _Unfoldable
    if isinstance(value, bytearray):
        return bytes(value)
    if isinstance(value, str | bytes | int | float | tuple):
        return value
    raise _Unfoldable


def _subscript(value: object, index: object) -> object:
    if isinstance(value, str | bytes | tuple) and isinstance(index, int | slice):
        return value[index]
    raise _Unfoldable


def _codec(decode: bool, value: object, encoding: str) -> object:
    if not isinstance(value, str | bytes):
        raise _Unfoldable
    info = codecs.lookup(encoding)
    convert: Callable[..., tuple[object, int]] = info.decode if decode else info.encode
    return convert(value)[0]


def _convert(name: str, item: object) -> str:
    if name == "chr" and isinstance(item, int):
        return chr(item)
    if name == "str" and isinstance(item, str | int | float):
        return str(item)
    raise _Unfoldable


def _binop(op: ast.operator, left: object, right: object) -> object:
    if isinstance(op, ast.Mult) and isinstance(right, str | bytes | tuple) and isinstance(left, int):
        left, right = right, left
    if isinstance(op, ast.Mult) and isinstance(left, str | bytes | tuple) and isinstance(right, int):
        if len(left) * right > _MAX_FOLD:
            raise _Unfoldable
        return _checked(operator.mul(left, right))
    if isinstance(op, ast.Mod) and isinstance(left, str | bytes):
        if _WIDE_PERCENT.search(str(left)):
            raise _Unfoldable
        _guard_product(left, right)
        return _checked(operator.mod(left, right))
    numbers = isinstance(left, int | float) and isinstance(right, int | float)
    if isinstance(op, ast.Add) and (numbers or type(left) is type(right)):
        return _checked(operator.add(left, right))
    if isinstance(op, ast.Sub) and numbers:
        return _checked(operator.sub(left, right))
    raise _Unfoldable


class Folder:
    """Computes string constants however they are spelled, within small limits, without running code.

    `resolve` gives the dotted name a callee refers to (`b64decode` imported from base64 resolves to
    `base64.b64decode`); it is the scanner's, so that the folder and the scanner agree on names.
    """

    def __init__(self, resolve: Callable[[ast.expr], str | None]) -> None:
        self.env: dict[str, object] = {}
        self._resolve = resolve

    def fold(self, node: ast.expr) -> object | None:
        """The value of `node` if it is a constant the folder computes, else None."""
        try:
            return self._eval(node, self.env)
        except _FOLD_ERRORS:
            return None

    def _eval(self, node: ast.expr, env: dict[str, object]) -> object:
        if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes | int | float):
            return node.value
        if isinstance(node, ast.Name) and node.id in env:
            return env[node.id]
        if isinstance(node, ast.Tuple | ast.List):
            return _bounded(self._eval(e, env) for e in node.elts)
        if isinstance(node, ast.BinOp):
            return _binop(node.op, self._eval(node.left, env), self._eval(node.right, env))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return _checked(operator.neg(self._number(node.operand, env)))
        if isinstance(node, ast.JoinedStr):
            return _checked("".join(str(p) for p in _bounded(self._formatted(v, env) for v in node.values)))
        if isinstance(node, ast.Subscript):
            return _checked(_subscript(self._eval(node.value, env), self._index(node.slice, env)))
        if isinstance(node, ast.Call) and not node.keywords:
            return _checked(self._call(node, env))
        if isinstance(node, ast.GeneratorExp | ast.ListComp):
            return _checked(self._comprehension(node, env))
        raise _Unfoldable

    def _number(self, node: ast.expr, env: dict[str, object]) -> int | float:
        value = self._eval(node, env)
        if isinstance(value, int | float):
            return value
        raise _Unfoldable

    def _formatted(self, node: ast.expr, env: dict[str, object]) -> str:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if not isinstance(node, ast.FormattedValue):
            raise _Unfoldable
        value = self._eval(node.value, env)
        if node.conversion == ord("s"):
            value = str(value)
        elif node.conversion == ord("r"):
            value = repr(value)
        elif node.conversion == ord("a"):
            value = ascii(value)
        spec = self._eval(node.format_spec, env) if node.format_spec else ""
        if not isinstance(spec, str) or _WIDE_SPEC.search(spec):
            raise _Unfoldable
        return format(value, spec)

    def _index(self, node: ast.expr, env: dict[str, object]) -> object:
        if not isinstance(node, ast.Slice):
            return self._eval(node, env)
        parts = (node.lower, node.upper, node.step)
        return slice(*(None if p is None else self._number(p, env) for p in parts))

    def _call(self, node: ast.Call, env: dict[str, object]) -> object:
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in _STR_METHODS:
            try:
                receiver = self._eval(func.value, env)
            except _Unfoldable:
                receiver = None  # `base64.b64decode`: a module, not a value; resolved below
            if isinstance(receiver, str | bytes):
                return self._method(receiver, func.attr, [self._eval(a, env) for a in node.args])
        name = self._resolve(func) or ""
        if name == "map" and len(node.args) == 2:
            convert = self._resolve(node.args[0]) or ""
            return _bounded(_convert(convert, item) for item in self._sequence(node.args[1], env))
        if name == "reversed" and len(node.args) == 1:
            return tuple(reversed(self._sequence(node.args[0], env)))
        return self._function(name, [self._eval(a, env) for a in node.args])

    def _method(self, receiver: str | bytes, name: str, args: list[object]) -> object:
        if name == "format" and _WIDE_BRACE.search(str(receiver)):
            raise _Unfoldable
        if name in ("decode", "encode") and args and str(args[0]).lower() not in _SAFE_CODECS:
            raise _Unfoldable
        _guard_product(receiver, tuple(args))
        return getattr(receiver, name)(*args)

    def _function(self, name: str, args: list[object]) -> object:
        if name in _DECODERS and len(args) == 1:
            return _DECODERS[name](args[0])
        if name in ("codecs.decode", "codecs.encode") and len(args) == 2 and str(args[1]).lower() in _SAFE_CODECS:
            return _codec(name == "codecs.decode", args[0], str(args[1]))
        if len(args) == 1 and name in ("chr", "str"):
            return _convert(name, args[0])
        if name in ("bytes", "bytearray") and len(args) == 1 and isinstance(args[0], tuple):
            if not all(isinstance(b, int) for b in args[0]):
                raise _Unfoldable
            return bytes(b for b in args[0] if isinstance(b, int))
        encoding = args[1] if len(args) == 2 else None
        if name in ("bytes", "bytearray", "str") and isinstance(encoding, str):
            text = args[0]
            if isinstance(text, str) and name != "str":
                return text.encode(encoding)
            if isinstance(text, bytes) and name == "str":
                return text.decode(encoding)
        raise _Unfoldable

    def _sequence(self, node: ast.expr, env: dict[str, object]) -> tuple[object, ...]:
        value = self._eval(node, env)
        if isinstance(value, str | bytes | tuple):
            return tuple(value)
        raise _Unfoldable

    def _comprehension(self, node: ast.GeneratorExp | ast.ListComp, env: dict[str, object]) -> object:
        if len(node.generators) != 1 or node.generators[0].ifs or not isinstance(node.generators[0].target, ast.Name):
            raise _Unfoldable
        target = node.generators[0].target.id
        items = self._sequence(node.generators[0].iter, env)
        return _bounded(self._eval(node.elt, {**env, target: item}) for item in items)
