"""C identifiers for generated code: validated against a regex and the reserved words."""

from __future__ import annotations

import re

from edgecompile.errors import CodegenError

#: A library name: starts with a letter, then letters, digits and underscores. Length is
#: limited so that every generated identifier (``<name>_step_float``, ...) stays within the
#: 31 significant characters C99 guarantees for external names.
IDENT_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,19}$")

#: C99/C11/C23 keywords plus C++ keywords (the header is included from C++ by Arduino sketches).
RESERVED = frozenset("""
auto break case char const continue default do double else enum extern float for goto if
inline int long register restrict return short signed sizeof static struct switch typedef union
unsigned void volatile while _Alignas _Alignof _Atomic _Bool _Complex _Generic _Imaginary
_Noreturn _Static_assert _Thread_local alignas alignof bool constexpr false nullptr
static_assert thread_local true typeof typeof_unqual
and and_eq asm bitand bitor catch char8_t char16_t char32_t class compl concept const_cast
consteval constinit co_await co_return co_yield decltype delete dynamic_cast explicit export
friend module mutable namespace new noexcept not not_eq operator or or_eq private protected
public reinterpret_cast requires static_cast template this throw try typeid typename using
virtual wchar_t xor xor_eq
main
""".split())

#: Names whose generated files would clash with fixed file names of the library or harness.
CLASHING = frozenset({"edgecompile_model", "ech_hal", "ech_proto", "ech_main", "ech_status"})


def c_ident(name: str) -> str:
    """Return ``name`` if it can name a generated library, else raise :class:`CodegenError`."""
    if not isinstance(name, str) or not IDENT_RE.match(name):
        raise CodegenError(
            f"model name {name!r} is not usable: it must be a C identifier of 1-20 characters "
            "(a letter, then letters, digits or _), e.g. --name kws_model")
    if name in RESERVED or name.lower() in RESERVED:
        raise CodegenError(f"model name {name!r} is a C/C++ reserved word: choose another with --name")
    if name.lower() in CLASHING:
        raise CodegenError(f"model name {name!r} clashes with a generated file name: choose another with --name")
    return name


def default_name(stem: str) -> str:
    """A library name derived from a checkpoint's file stem (``kws-v2.npz`` -> ``kws_v2``)."""
    s = re.sub(r"[^A-Za-z0-9_]", "_", stem).strip("_") or "model"
    if not s[0].isalpha():
        s = "m_" + s
    s = s[:20].rstrip("_")
    if s in RESERVED or s.lower() in RESERVED or s.lower() in CLASHING:
        s = s[:14] + "_model"
    return c_ident(s)
