"""Incremental JSON prefix checker for constrained decoding (`format: "json"`).

`JsonPrefix` consumes text one character at a time and rejects the first character that
cannot continue a valid JSON document. `closing()` is the shortest text that completes the
current prefix (used to finish the value before the token budget runs out).
"""

from __future__ import annotations

WS = " \t\n\r"
HEX = "0123456789abcdefABCDEF"
DIGITS = "0123456789"
ESCAPES = '"\\/bfnrtu'

# States.
START = 0  # before the top-level value
VALUE = 1  # a value is required (after ':' or after ',' in an array)
ARR_FIRST = 2  # after '[': a value or ']'
OBJ_FIRST = 3  # after '{': a key or '}'
KEY = 4  # after ',' in an object: a key is required
COLON = 5  # after a key
AFTER = 6  # after a value inside a container: ',' or the closing bracket
STRING = 7
ESCAPE = 8  # after a backslash in a string
UHEX = 9  # inside \uXXXX (`hex_left` digits to go)
NUMBER = 10
LITERAL = 11  # inside true/false/null (`literal` holds the remaining characters)
DONE = 12

# Number sub-states: whether the number may end here, and what it needs next.
N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP = range(8)
N_NEED_DIGIT = (N_MINUS, N_DOT, N_E, N_ESIGN)


class JsonPrefix:
    """A pushdown checker of JSON prefixes. `object_only` requires the top-level value to be
    an object, as Ollama's `format: "json"` does. As in Ollama's JSON grammar, the text starts
    with the value (no leading whitespace) and whitespace runs are at most `max_ws` long."""

    __slots__ = (
        "stack",
        "state",
        "num",
        "literal",
        "hex_left",
        "is_key",
        "object_only",
        "max_ws",
        "ws_run",
    )

    def __init__(self, object_only: bool = True, max_ws: int = 20):
        self.stack: list[str] = []  # "{" / "[" of the open containers
        self.state = START
        self.num = 0
        self.literal = ""
        self.hex_left = 0
        self.is_key = False
        self.object_only = object_only
        self.max_ws = max_ws  # longest whitespace run between tokens (like Ollama's grammar)
        self.ws_run = 0

    def clone(self) -> JsonPrefix:
        c = JsonPrefix.__new__(JsonPrefix)
        c.stack = list(self.stack)
        c.state, c.num, c.literal = self.state, self.num, self.literal
        c.hex_left, c.is_key, c.object_only = self.hex_left, self.is_key, self.object_only
        c.max_ws, c.ws_run = self.max_ws, self.ws_run
        return c

    @property
    def complete(self) -> bool:
        """A whole top-level value has been parsed."""
        return self.state == DONE

    @property
    def in_string(self) -> bool:
        return self.state in (STRING, ESCAPE, UHEX)

    def feed(self, text: str) -> bool:
        """Consume `text`; False (the state is then undefined) if it breaks the prefix.
        Nothing may follow a complete value."""
        for ch in text:
            if ch in WS and self.state not in (STRING, ESCAPE, UHEX):
                self.ws_run += 1
                if self.ws_run > self.max_ws:
                    return False
            else:
                self.ws_run = 0
            if not self._char(ch):
                return False
        return True

    def _value_end(self) -> None:
        self.state = AFTER if self.stack else DONE

    def _start_value(self, ch: str, top: bool = False) -> bool:
        if ch in WS:
            return not top  # the reply starts with the value itself
        if top and self.object_only and ch != "{":
            return False
        if ch == "{":
            self.stack.append("{")
            self.state = OBJ_FIRST
        elif ch == "[":
            self.stack.append("[")
            self.state = ARR_FIRST
        elif ch == '"':
            self.state, self.is_key = STRING, False
        elif ch == "-":
            self.state, self.num = NUMBER, N_MINUS
        elif ch == "0":
            self.state, self.num = NUMBER, N_ZERO
        elif ch in DIGITS:
            self.state, self.num = NUMBER, N_INT
        elif ch in "tfn":
            self.state, self.literal = LITERAL, {"t": "rue", "f": "alse", "n": "ull"}[ch]
        else:
            return False
        return True

    def _close(self, ch: str) -> bool:
        if not self.stack or self.stack[-1] != ("{" if ch == "}" else "["):
            return False
        self.stack.pop()
        self._value_end()
        return True

    def _char(self, ch: str) -> bool:
        s = self.state
        if s == STRING:
            if ch == '"':
                if self.is_key:
                    self.state = COLON
                else:
                    self._value_end()
            elif ch == "\\":
                self.state = ESCAPE
            elif ord(ch) < 0x20:
                return False
            return True
        if s == ESCAPE:
            if ch not in ESCAPES:
                return False
            if ch == "u":
                self.state, self.hex_left = UHEX, 4
            else:
                self.state = STRING
            return True
        if s == UHEX:
            if ch not in HEX:
                return False
            self.hex_left -= 1
            if self.hex_left == 0:
                self.state = STRING
            return True
        if s == NUMBER:
            n = self.num
            if ch in DIGITS:
                if n in (N_MINUS, N_INT):
                    self.num = N_INT
                elif n in (N_DOT, N_FRAC):
                    self.num = N_FRAC
                elif n in (N_E, N_ESIGN, N_EXP):
                    self.num = N_EXP
                else:  # N_ZERO: no leading zeros
                    return False
                return True
            if ch == "." and n in (N_ZERO, N_INT):
                self.num = N_DOT
                return True
            if ch in "eE" and n in (N_ZERO, N_INT, N_FRAC):
                self.num = N_E
                return True
            if ch in "+-" and n == N_E:
                self.num = N_ESIGN
                return True
            if n in N_NEED_DIGIT:
                return False
            self._value_end()  # the number ended; `ch` belongs to what follows
            if self.state == DONE:
                # A top-level number ends only at whitespace (then nothing may follow).
                return ch in WS
            return self._char(ch)
        if s == LITERAL:
            if ch != self.literal[0]:
                return False
            self.literal = self.literal[1:]
            if not self.literal:
                self._value_end()
            return True
        if s == START:
            return self._start_value(ch, top=True)
        if s == VALUE:
            return self._start_value(ch)
        if s == ARR_FIRST:
            if ch == "]":
                return self._close(ch)
            return self._start_value(ch)
        if s in (OBJ_FIRST, KEY):
            if ch in WS:
                return True
            if ch == '"':
                self.state, self.is_key = STRING, True
                return True
            return s == OBJ_FIRST and ch == "}" and self._close(ch)
        if s == COLON:
            if ch in WS:
                return True
            if ch == ":":
                self.state = VALUE
                return True
            return False
        if s == AFTER:
            if ch in WS:
                return True
            if ch == ",":
                self.state = VALUE if self.stack[-1] == "[" else KEY
                return True
            if ch in "]}":
                return self._close(ch)
            return False
        return False  # DONE: nothing may follow

    def closing(self) -> str:
        """The shortest text that completes the value ("" once complete)."""
        s, out = self.state, ""
        if s == DONE:
            return ""
        if s == START:
            return "{}" if self.object_only else "0"
        if s == UHEX:
            out = "0" * self.hex_left + '"'
        elif s == ESCAPE:
            out = 'n"'
        elif s == STRING:
            out = '"'
        elif s == NUMBER:
            out = "0" if self.num in N_NEED_DIGIT else ""
        elif s == LITERAL:
            out = self.literal
        elif s == VALUE:
            out = "0"
        elif s == KEY:
            out = '"":0'
        elif s == COLON:
            out = ":0"
        if s in (STRING, ESCAPE, UHEX) and self.is_key:
            out += ":0"
        if s == NUMBER and not self.stack:
            out += " "  # a top-level number ends only at whitespace
        return out + "".join("}" if c == "{" else "]" for c in reversed(self.stack))
