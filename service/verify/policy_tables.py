"""The data of the `azr` policy: what a program may import, name and touch (docs/design.md §6).

Everything here is written out rather than computed from the running interpreter, so that a
review sees exactly what is allowed and an interpreter upgrade cannot widen it silently.
`tests/test_policy_tables.py` compares these tables with CPython 3.11 (the interpreter of the
service and of the sandbox) and fails when they drift apart.

How the module tables were made: for each module, its `__all__` (or, without one, its public
names), minus every value that is a module (re-exports such as `re.enum`, `typing.sys`,
`json.codecs`, `statistics.random`), minus the public names that evaluate strings as code, walk
attributes by computed names, reach the interpreter or the process, or create classes from
computed names. Those exclusions are listed next to each table.
"""

from __future__ import annotations

# --- modules -----------------------------------------------------------------------------------

_MATH = frozenset({
    "acos", "acosh", "asin", "asinh", "atan", "atan2", "atanh", "cbrt", "ceil", "comb",
    "copysign", "cos", "cosh", "degrees", "dist", "e", "erf", "erfc", "exp", "exp2", "expm1",
    "fabs", "factorial", "floor", "fmod", "frexp", "fsum", "gamma", "gcd", "hypot", "inf",
    "isclose", "isfinite", "isinf", "isnan", "isqrt", "lcm", "ldexp", "lgamma", "log", "log10",
    "log1p", "log2", "modf", "nan", "nextafter", "perm", "pi", "pow", "prod", "radians",
    "remainder", "sin", "sinh", "sqrt", "tan", "tanh", "tau", "trunc", "ulp",
})

_CMATH = frozenset({
    "acos", "acosh", "asin", "asinh", "atan", "atanh", "cos", "cosh", "e", "exp", "inf", "infj",
    "isclose", "isfinite", "isinf", "isnan", "log", "log10", "nan", "nanj", "phase", "pi",
    "polar", "rect", "sin", "sinh", "sqrt", "tan", "tanh", "tau",
})

_COLLECTIONS_ABC = frozenset({
    "AsyncGenerator", "AsyncIterable", "AsyncIterator", "Awaitable", "ByteString", "Callable",
    "Collection", "Container", "Coroutine", "Generator", "Hashable", "ItemsView", "Iterable",
    "Iterator", "KeysView", "Mapping", "MappingView", "MutableMapping", "MutableSequence",
    "MutableSet", "Reversible", "Sequence", "Set", "Sized", "ValuesView",
})

_TYPING = frozenset({
    "AbstractSet", "Annotated", "Any", "AnyStr", "AsyncContextManager", "AsyncGenerator",
    "AsyncIterable", "AsyncIterator", "Awaitable", "BinaryIO", "ByteString", "Callable",
    "ChainMap", "ClassVar", "Collection", "Concatenate", "Container", "ContextManager",
    "Coroutine", "Counter", "DefaultDict", "Deque", "Dict", "Final", "FrozenSet", "Generator",
    "Generic", "Hashable", "IO", "ItemsView", "Iterable", "Iterator", "KeysView", "List",
    "Literal", "LiteralString", "Mapping", "MappingView", "Match", "MutableMapping",
    "MutableSequence", "MutableSet", "NamedTuple", "Never", "NewType", "NoReturn",
    "NotRequired", "Optional", "OrderedDict", "ParamSpec", "ParamSpecArgs", "ParamSpecKwargs",
    "Pattern", "Protocol", "Required", "Reversible", "Self", "Sequence", "Set", "Sized",
    "SupportsAbs", "SupportsBytes", "SupportsComplex", "SupportsFloat", "SupportsIndex",
    "SupportsInt", "SupportsRound", "TYPE_CHECKING", "Text", "TextIO", "Tuple", "TypeAlias",
    "TypeGuard", "TypeVar", "TypeVarTuple", "TypedDict", "Union", "Unpack", "ValuesView",
    "assert_never", "assert_type", "cast", "clear_overloads", "dataclass_transform", "final",
    "get_args", "get_origin", "get_overloads", "is_typeddict", "overload", "reveal_type",
    "runtime_checkable",
})
# Left out of typing: get_type_hints and ForwardRef evaluate strings as code; Type is the way to
# `type` itself (get_origin(Type[int]) is type); no_type_check and no_type_check_decorator set
# attributes on every function of whatever they are given.

_OPERATOR = frozenset({
    "abs", "add", "and_", "call", "concat", "contains", "countOf", "delitem", "eq", "floordiv",
    "ge", "getitem", "gt", "iadd", "iand", "iconcat", "ifloordiv", "ilshift", "imatmul", "imod",
    "imul", "index", "indexOf", "inv", "invert", "ior", "ipow", "irshift", "is_", "is_not",
    "isub", "itemgetter", "itruediv", "ixor", "le", "length_hint", "lshift", "lt", "matmul",
    "mod", "mul", "ne", "neg", "not_", "or_", "pos", "pow", "rshift", "setitem", "sub",
    "truediv", "truth", "xor",
})
# Left out of operator: attrgetter and methodcaller fetch attributes by (dotted) names.

_DECIMAL = frozenset({
    "BasicContext", "Clamped", "Context", "ConversionSyntax", "Decimal", "DecimalException",
    "DecimalTuple", "DefaultContext", "DivisionByZero", "DivisionImpossible",
    "DivisionUndefined", "ExtendedContext", "FloatOperation", "HAVE_CONTEXTVAR", "HAVE_THREADS",
    "Inexact", "InvalidContext", "InvalidOperation", "MAX_EMAX", "MAX_PREC", "MIN_EMIN",
    "MIN_ETINY", "Overflow", "ROUND_05UP", "ROUND_CEILING", "ROUND_DOWN", "ROUND_FLOOR",
    "ROUND_HALF_DOWN", "ROUND_HALF_EVEN", "ROUND_HALF_UP", "ROUND_UP", "Rounded", "Subnormal",
    "Underflow", "getcontext", "localcontext", "setcontext",
})

_STATISTICS = frozenset({
    "StatisticsError", "correlation", "covariance", "fmean", "geometric_mean", "harmonic_mean",
    "linear_regression", "mean", "median", "median_grouped", "median_high", "median_low", "mode",
    "multimode", "pstdev", "pvariance", "quantiles", "stdev", "variance",
})
# Left out of statistics: NormalDist (its samples() draws from the random module).

_ENUM = frozenset({
    "CONFORM", "CONTINUOUS", "EJECT", "Enum", "EnumCheck", "Flag", "FlagBoundary", "IntEnum",
    "IntFlag", "KEEP", "NAMED_FLAGS", "ReprEnum", "STRICT", "StrEnum", "UNIQUE", "auto",
    "member", "nonmember", "unique", "verify",
})
# Left out of enum: EnumType/EnumMeta (the metaclass: class creation from computed names),
# global_enum (writes into the globals of the module named by the class, sys.modules[...]),
# global_enum_repr, global_flag_repr, global_str, pickle_by_enum_name, pickle_by_global_name,
# and enum.property (a descriptor that looks members up by a name it is given).

_BASE64 = frozenset({
    "a85decode", "a85encode", "b16decode", "b16encode", "b32decode", "b32encode",
    "b32hexdecode", "b32hexencode", "b64decode", "b64encode", "b85decode", "b85encode", "decode",
    "decodebytes", "encode", "encodebytes", "standard_b64decode", "standard_b64encode",
    "urlsafe_b64decode", "urlsafe_b64encode",
})

_UNICODEDATA = frozenset({
    "UCD", "bidirectional", "category", "combining", "decimal", "decomposition", "digit",
    "east_asian_width", "is_normalized", "lookup", "mirrored", "name", "normalize", "numeric",
    "ucd_3_2_0", "unidata_version",
})

ALLOWED_MODULES: dict[str, frozenset[str]] = {
    "__future__": frozenset({
        "absolute_import", "all_feature_names", "annotations", "barry_as_FLUFL", "division",
        "generator_stop", "generators", "nested_scopes", "print_function", "unicode_literals",
        "with_statement",
    }),
    "abc": frozenset({
        "ABC", "ABCMeta", "abstractclassmethod", "abstractmethod", "abstractproperty",
        "abstractstaticmethod", "get_cache_token", "update_abstractmethods",
    }),
    "array": frozenset({"ArrayType", "array", "typecodes"}),
    "base64": _BASE64,
    "bisect": frozenset({
        "bisect", "bisect_left", "bisect_right", "insort", "insort_left", "insort_right",
    }),
    "cmath": _CMATH,
    "collections": frozenset({
        "ChainMap", "Counter", "OrderedDict", "UserDict", "UserList", "UserString",
        "defaultdict", "deque", "namedtuple",
    }),
    "collections.abc": _COLLECTIONS_ABC,
    # Left out of contextlib: chdir (the process's working directory), redirect_stdout and
    # redirect_stderr (they assign attributes of sys).
    "contextlib": frozenset({
        "AbstractAsyncContextManager", "AbstractContextManager", "AsyncExitStack",
        "ContextDecorator", "ExitStack", "aclosing", "asynccontextmanager", "closing",
        "contextmanager", "nullcontext", "suppress",
    }),
    "copy": frozenset({"Error", "copy", "deepcopy"}),
    # Left out of dataclasses: make_dataclass (a class from computed field names and namespace).
    "dataclasses": frozenset({
        "Field", "FrozenInstanceError", "InitVar", "KW_ONLY", "MISSING", "asdict", "astuple",
        "dataclass", "field", "fields", "is_dataclass", "replace",
    }),
    "decimal": _DECIMAL,
    "difflib": frozenset({
        "Differ", "HtmlDiff", "IS_CHARACTER_JUNK", "IS_LINE_JUNK", "Match", "SequenceMatcher",
        "context_diff", "diff_bytes", "get_close_matches", "ndiff", "restore", "unified_diff",
    }),
    "enum": _ENUM,
    "fnmatch": frozenset({"filter", "fnmatch", "fnmatchcase", "translate"}),
    "fractions": frozenset({"Fraction"}),
    # Left out of functools: singledispatch and singledispatchmethod (register(func) calls
    # typing.get_type_hints, which evals strings found in func.__annotations__, and those can
    # come from anywhere: TypedDict('T', {'x': '...'}) copied over by update_wrapper, or a
    # __getattr__), cached_property (stores into an instance's __dict__ under a name that can
    # be reassigned). wraps and update_wrapper are allowed only in the shapes of
    # RESTRICTED_CALLS: their assigned/updated arguments are attribute names.
    "functools": frozenset({
        "WRAPPER_ASSIGNMENTS", "WRAPPER_UPDATES", "cache", "cmp_to_key", "lru_cache",
        "partial", "partialmethod", "reduce", "total_ordering", "update_wrapper", "wraps",
    }),
    "graphlib": frozenset({"CycleError", "TopologicalSorter"}),
    "heapq": frozenset({
        "heapify", "heappop", "heappush", "heappushpop", "heapreplace", "merge", "nlargest",
        "nsmallest",
    }),
    "itertools": frozenset({
        "accumulate", "chain", "combinations", "combinations_with_replacement", "compress",
        "count", "cycle", "dropwhile", "filterfalse", "groupby", "islice", "pairwise",
        "permutations", "product", "repeat", "starmap", "takewhile", "tee", "zip_longest",
    }),
    # Left out of json: JSONEncoder and JSONDecoder. The sandbox's runner serialises its result
    # with json.dumps after the program returns; its default encoder is a JSONEncoder.
    "json": frozenset({"JSONDecodeError", "dump", "dumps", "load", "loads"}),
    "keyword": frozenset({"iskeyword", "issoftkeyword", "kwlist", "softkwlist"}),
    "math": _MATH,
    "numbers": frozenset({"Complex", "Integral", "Number", "Rational", "Real"}),
    "operator": _OPERATOR,
    "queue": frozenset({"Empty", "Full", "LifoQueue", "PriorityQueue", "Queue", "SimpleQueue"}),
    "re": frozenset({
        "A", "ASCII", "DOTALL", "I", "IGNORECASE", "L", "LOCALE", "M", "MULTILINE", "Match",
        "NOFLAG", "Pattern", "RegexFlag", "S", "U", "UNICODE", "VERBOSE", "X", "compile",
        "error", "escape", "findall", "finditer", "fullmatch", "match", "purge", "search",
        "split", "sub", "subn", "template",
    }),
    "statistics": _STATISTICS,
    # Left out of string: Formatter (its format() walks attributes named in the format string).
    "string": frozenset({
        "Template", "ascii_letters", "ascii_lowercase", "ascii_uppercase", "capwords",
        "digits", "hexdigits", "octdigits", "printable", "punctuation", "whitespace",
    }),
    "struct": frozenset({
        "Struct", "calcsize", "error", "iter_unpack", "pack", "pack_into", "unpack",
        "unpack_from",
    }),
    "textwrap": frozenset({"TextWrapper", "dedent", "fill", "indent", "shorten", "wrap"}),
    "typing": _TYPING,
    "unicodedata": _UNICODEDATA,
}

# `from M import *` binds names the policy cannot see, so it is allowed only from modules whose
# every star-exported name is in their table and unrestricted.
STAR_IMPORT_MODULES: frozenset[str] = frozenset({
    "bisect", "cmath", "collections", "collections.abc", "fractions", "graphlib", "heapq",
    "itertools", "keyword", "math", "numbers", "queue", "struct", "textwrap",
})

# Refused with rule `import_denied` (everything else outside ALLOWED_MODULES is
# `import_unknown`): AZR's banned list (logging random multiprocessing pebble subprocess
# threading datetime time hashlib hmac bcrypt os.sys os.path sys.exit os.environ calendar) and
# the modules that reach the process, the interpreter, the clock, randomness or the network.
DENIED_MODULES: frozenset[str] = frozenset({
    # AZR's banned list (os.* and sys.exit are covered by os and sys)
    "logging", "random", "multiprocessing", "pebble", "subprocess", "threading", "datetime",
    "time", "hashlib", "hmac", "bcrypt", "calendar", "os", "sys",
    # nondeterminism: randomness, clocks, scheduling, the collector
    "secrets", "uuid", "_thread", "concurrent", "asyncio", "gc", "sched", "timeit", "zoneinfo",
    # the process, the machine and the interpreter's internals
    "posix", "shutil", "socket", "select", "selectors", "signal", "resource", "mmap", "ctypes",
    "importlib", "pathlib", "io", "tempfile", "inspect", "builtins", "pickle", "marshal", "code",
    "codeop", "pty", "fcntl", "platform", "runpy", "pkgutil", "zipimport", "site", "sysconfig",
    "types", "copyreg", "weakref", "traceback", "atexit", "faulthandler", "tracemalloc",
    "warnings", "dis", "ast", "symtable", "pdb", "bdb", "trace", "linecache", "glob",
    "posixpath", "codecs", "pydoc", "ssl", "shelve", "dbm", "sqlite3",
    # the network
    "urllib", "http", "ftplib", "smtplib", "email", "xmlrpc", "socketserver",
})

# Calls whose arguments name attributes: allowed with exactly this many positional arguments and
# no keyword or starred ones (wraps only as a decorator or called at once on the wrapper).
RESTRICTED_CALLS: dict[tuple[str, str], int] = {
    ("functools", "wraps"): 1,
    ("functools", "update_wrapper"): 2,
}

# The enum classes whose call with more than one argument (the functional API) creates a class
# from the names it is given: allowed only with literal, checked names.
ENUM_FACTORIES: frozenset[str] = frozenset({
    "Enum", "IntEnum", "StrEnum", "Flag", "IntFlag", "ReprEnum",
})

# --- builtins ----------------------------------------------------------------------------------

# Refused with rule `builtin`: code from strings, the filesystem and terminal, the interpreter's
# namespaces and the process's exit.
REFUSED_BUILTINS: frozenset[str] = frozenset({
    "eval", "exec", "compile", "__import__", "open", "input", "breakpoint", "help",
    "memoryview", "exit", "quit", "copyright", "credits", "license", "globals", "locals",
    "vars", "dir",
})

# Allowed only as a direct call with a literal attribute name, which is then checked like
# `obj.name` (rule `computed_attribute` otherwise).
ATTRIBUTE_BUILTINS: frozenset[str] = frozenset({"getattr", "setattr", "delattr", "hasattr"})

# Every other builtin of CPython 3.11; a test checks that the four sets cover dir(builtins).
ALLOWED_BUILTINS: frozenset[str] = frozenset({
    "abs", "aiter", "all", "anext", "any", "ascii", "bin", "bool", "bytearray", "bytes",
    "callable", "chr", "classmethod", "complex", "dict", "divmod", "enumerate", "filter",
    "float", "format", "frozenset", "hash", "hex", "id", "int", "isinstance", "issubclass",
    "iter", "len", "list", "map", "max", "min", "next", "object", "oct", "ord", "pow", "print",
    "property", "range", "repr", "reversed", "round", "set", "slice", "sorted", "staticmethod",
    "str", "sum", "super", "tuple", "zip", "Ellipsis", "NotImplemented", "True", "False",
    "None", "type",
    # exceptions and warnings
    "ArithmeticError", "AssertionError", "AttributeError", "BaseException",
    "BaseExceptionGroup", "BlockingIOError", "BrokenPipeError", "BufferError", "BytesWarning",
    "ChildProcessError", "ConnectionAbortedError", "ConnectionError", "ConnectionRefusedError",
    "ConnectionResetError", "DeprecationWarning", "EOFError", "EncodingWarning",
    "EnvironmentError", "Exception", "ExceptionGroup", "FileExistsError", "FileNotFoundError",
    "FloatingPointError", "FutureWarning", "GeneratorExit", "IOError", "ImportError",
    "ImportWarning", "IndentationError", "IndexError", "InterruptedError", "IsADirectoryError",
    "KeyError", "KeyboardInterrupt", "LookupError", "MemoryError", "ModuleNotFoundError",
    "NameError", "NotADirectoryError", "NotImplementedError", "OSError", "OverflowError",
    "PendingDeprecationWarning", "PermissionError", "ProcessLookupError", "RecursionError",
    "ReferenceError", "ResourceWarning", "RuntimeError", "RuntimeWarning",
    "StopAsyncIteration", "StopIteration", "SyntaxError", "SyntaxWarning", "SystemError",
    "SystemExit", "TabError", "TimeoutError", "TypeError", "UnboundLocalError",
    "UnicodeDecodeError", "UnicodeEncodeError", "UnicodeError", "UnicodeTranslateError",
    "UnicodeWarning", "UserWarning", "ValueError", "Warning", "ZeroDivisionError",
})

# --- names and attributes ----------------------------------------------------------------------

# Dunder methods a program may define in a class body (and read as attributes, except those in
# DEFINABLE_ONLY_DUNDERS): the object, comparison, container, numeric and context-manager
# protocols. Hooks the interpreter calls with its own objects or with computed names
# (__init_subclass__, __set_name__, __class_getitem__, __get__, __reduce_ex__, __del__, ...)
# are not here.
PROTOCOL_DUNDERS: frozenset[str] = frozenset({
    "__init__", "__repr__", "__str__", "__format__", "__bytes__", "__hash__", "__bool__",
    "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__",
    "__len__", "__length_hint__", "__iter__", "__next__", "__reversed__", "__contains__",
    "__getitem__", "__setitem__", "__delitem__", "__missing__",
    "__add__", "__sub__", "__mul__", "__matmul__", "__truediv__", "__floordiv__", "__mod__",
    "__divmod__", "__pow__", "__lshift__", "__rshift__", "__and__", "__xor__", "__or__",
    "__radd__", "__rsub__", "__rmul__", "__rmatmul__", "__rtruediv__", "__rfloordiv__",
    "__rmod__", "__rdivmod__", "__rpow__", "__rlshift__", "__rrshift__", "__rand__", "__rxor__",
    "__ror__",
    "__iadd__", "__isub__", "__imul__", "__imatmul__", "__itruediv__", "__ifloordiv__",
    "__imod__", "__ipow__", "__ilshift__", "__irshift__", "__iand__", "__ixor__", "__ior__",
    "__neg__", "__pos__", "__abs__", "__invert__", "__complex__", "__int__", "__float__",
    "__index__", "__round__", "__trunc__", "__floor__", "__ceil__",
    "__enter__", "__exit__", "__post_init__", "__copy__", "__deepcopy__",
})

# Definable, but never read as attributes: `type.__call__` is three-argument type,
# `x.__getattr__(name)` a computed attribute. (`__new__` is readable on super() and object;
# `__setattr__`/`__delattr__` in the call shapes of the rules module.)
DEFINABLE_ONLY_DUNDERS: frozenset[str] = frozenset({
    "__new__", "__call__", "__getattr__", "__setattr__", "__delattr__",
})

# Dunder names a class body may assign besides methods.
CLASS_BODY_DUNDERS: frozenset[str] = frozenset({"__slots__", "__match_args__", "__doc__"})

# Dunder attributes that are plain data: readable anywhere, and assignable (renaming wrappers).
DATA_DUNDERS: frozenset[str] = frozenset({"__name__", "__qualname__", "__doc__"})
# An enum's members, and an exception's chain (its traceback, __traceback__, stays refused).
READABLE_ONLY_DUNDERS: frozenset[str] = frozenset({
    "__members__", "__cause__", "__context__", "__suppress_context__", "__notes__",
})

# Dunder names a program may read as plain names (`if __name__ == "__main__":`).
READABLE_DUNDER_NAMES: frozenset[str] = frozenset({"__name__"})

# Attributes of frames, code objects, generators, coroutines and tracebacks: no underscore, but
# each leads into the interpreter (refused with rule `dunder_attribute`, like the dunders).
INTERPRETER_ATTRIBUTES: frozenset[str] = frozenset({
    "f_back", "f_builtins", "f_code", "f_globals", "f_lasti", "f_lineno", "f_locals",
    "f_trace", "f_trace_lines", "f_trace_opcodes",
    "co_argcount", "co_cellvars", "co_code", "co_consts", "co_exceptiontable", "co_filename",
    "co_firstlineno", "co_flags", "co_freevars", "co_kwonlyargcount", "co_lines",
    "co_linetable", "co_lnotab", "co_name", "co_names", "co_nlocals", "co_positions",
    "co_posonlyargcount", "co_qualname", "co_stacksize", "co_varnames",
    "gi_code", "gi_frame", "gi_running", "gi_suspended", "gi_yieldfrom",
    "cr_await", "cr_code", "cr_frame", "cr_origin", "cr_running", "cr_suspended",
    "ag_await", "ag_code", "ag_frame", "ag_running",
    "tb_frame", "tb_lasti", "tb_lineno", "tb_next",
    "cell_contents",
})

# The private names of namedtuple's public API.
NAMEDTUPLE_API: frozenset[str] = frozenset({
    "_asdict", "_field_defaults", "_fields", "_make", "_replace",
})

# Private attributes of allowed standard-library objects that evaluate strings, reach
# sys.modules or build classes from computed names: refused even when the program assigns an
# attribute of the same name (which otherwise makes `obj._name` the program's own).
# ForwardRef._evaluate evals; Enum._convert_ reads and writes sys.modules[name].__dict__;
# Enum._create_ is the functional API; Formatter._vformat and get_field walk attributes.
DANGEROUS_PRIVATE_ATTRIBUTES: frozenset[str] = frozenset({
    "_evaluate", "_convert_", "_create_", "_vformat", "_eval_type", "_getframe",
    "_simple_enum", "_create_fn", "_process_class",
})
