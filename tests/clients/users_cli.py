#!/usr/bin/env python3
"""`palisade users` driven as an operator would: on a terminal and through a pipe.

The terminal is a real pseudo-terminal (Python's `pty`/`termios`, the child's
controlling terminal), so what is checked is what a person at a terminal sees:

  1. `users add carol` asks "New password for carol: " and "Repeat the
     password: ", shows neither typed password (echo off, the newline still
     shows), says "added user carol to FILE" and the SIGHUP reminder; the
     stored hash is checked here with hashlib's PBKDF2 (not palisade's code);
  2. two different passwords: exit 1, "the two passwords differ", file unchanged;
  3. Ctrl-C at the prompt: exit 130, and the terminal echoes again afterwards;
  4. `users passwd carol` on the terminal changes the hash;
  5. through a pipe: `add` reads one line and prompts nothing, `list` prints
     names only (never a hash), `remove` removes, errors exit 1 with a message.

Prints one PASS/FAIL line per check; exits non-zero if any failed.
    python3 tests/clients/users_cli.py      (PALISADE_BIN, default target/debug/palisade)
"""

import base64
import fcntl
import hashlib
import json
import os
import select
import subprocess
import sys
import tempfile
import termios
import time

NAME = "users_cli"
BIN = os.environ.get("PALISADE_BIN", "target/debug/palisade")
# Every password used here is listed in tests/test-passwords.txt.
CAROL_PW = "cli-carol-Rk5Wq9Ts2m"
CAROL_PW2 = "cli-carol-Vb3Nf7Jd4x"
DAVE_PW = "cli-dave-Hs6Lp2Qe8z"
TIMEOUT_S = 60
results = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    line = f"PASS {NAME}: {name}" if ok else f"FAIL {NAME}: {name}" + (f" -- {detail}" if detail else "")
    print(line, flush=True)
    return ok


def b64(s):
    return base64.b64decode(s + "=" * (-len(s) % 4))


def verifies(users_file, name, password):
    """Whether NAME's stored PHC hash matches PASSWORD, by hashlib."""
    with open(users_file) as f:
        users = json.load(f)["users"]
    entry = next((u for u in users if u["username"] == name), None)
    if entry is None:
        return False
    _, alg, params, salt, digest = entry["password_hash"].split("$")
    iterations = int(params.removeprefix("i="))
    want = b64(digest)
    got = hashlib.pbkdf2_hmac("sha256", password.encode(), b64(salt), iterations, len(want))
    return alg == "pbkdf2-sha256" and got == want


class Terminal:
    """BIN with ARGS on a fresh pseudo-terminal (its controlling terminal)."""

    def __init__(self, args):
        self.master, self.slave = os.openpty()

        def controlling():
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen([BIN, *args], stdin=self.slave, stdout=self.slave,
                                     stderr=self.slave, preexec_fn=controlling, close_fds=True)
        self.seen = b""

    def expect(self, text, timeout=TIMEOUT_S):
        """Reads until TEXT has appeared; returns everything read so far."""
        deadline = time.monotonic() + timeout
        want = text.encode()
        while want not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {text!r} within {timeout} s; the terminal shows {self.seen!r}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise EOFError(f"the terminal closed before {text!r}; it shows {self.seen!r}")
                self.seen += chunk
        return self.seen.decode(errors="replace")

    def type(self, text):
        os.write(self.master, text.encode())

    def finish(self):
        """The exit status; drains what is left on the terminal."""
        code = self.proc.wait(timeout=TIMEOUT_S)
        while select.select([self.master], [], [], 0.2)[0]:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                break
            if not chunk:
                break
            self.seen += chunk
        return code

    def echoes(self):
        return bool(termios.tcgetattr(self.slave)[3] & termios.ECHO)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
        os.close(self.slave)


def step(name, fn):
    try:
        fn()
        return check(name, True)
    except Exception as e:  # noqa: BLE001 (any failure is a FAIL line)
        return check(name, False, f"{type(e).__name__}: {e}")


def on_terminal(users_file):
    args = ["users", "add", "carol", "--users-file", users_file, "--iterations", "10000"]

    def add():
        t = Terminal(args)
        try:
            t.expect("New password for carol: ")
            t.type(CAROL_PW + "\r")
            shown = t.expect("Repeat the password: ")
            assert CAROL_PW not in shown, f"the password was echoed: {shown!r}"
            t.type(CAROL_PW + "\r")
            code = t.finish()
            out = t.seen.decode(errors="replace")
            assert code == 0, f"exit {code}: {out!r}"
            assert CAROL_PW not in out, f"the password was echoed: {out!r}"
            assert f"added user carol to {users_file}" in out, out
            assert "SIGHUP" in out, out
            assert t.echoes(), "echo is still off after the command"
        finally:
            t.close()

    step("add on a terminal: two prompts, no echo, 'added user carol', SIGHUP reminder", add)
    check("the stored hash matches the typed password (hashlib PBKDF2)",
          verifies(users_file, "carol", CAROL_PW))

    def mismatch():
        before = open(users_file).read()
        t = Terminal(["users", "passwd", "carol", "--users-file", users_file, "--iterations", "10000"])
        try:
            t.expect("New password for carol: ")
            t.type("one-password\r")
            t.expect("Repeat the password: ")
            t.type("another-password\r")
            code = t.finish()
            out = t.seen.decode(errors="replace")
            assert code == 1, f"exit {code}: {out!r}"
            assert "the two passwords differ; nothing was changed" in out, out
            assert open(users_file).read() == before, "the file changed"
        finally:
            t.close()

    step("two different passwords: exit 1, 'the two passwords differ', file unchanged", mismatch)

    def interrupted():
        t = Terminal(["users", "passwd", "carol", "--users-file", users_file])
        try:
            t.expect("New password for carol: ")
            assert not t.echoes(), "echo is on while the password is asked"
            t.type("\x03")  # Ctrl-C
            code = t.finish()
            assert code == 130, f"exit {code}: {t.seen!r}"
            assert t.echoes(), "Ctrl-C left the terminal without echo"
        finally:
            t.close()

    step("Ctrl-C at the prompt: exit 130 and the terminal echoes again", interrupted)

    def passwd():
        t = Terminal(["users", "passwd", "carol", "--users-file", users_file, "--iterations", "10000"])
        try:
            t.expect("New password for carol: ")
            t.type(CAROL_PW2 + "\r")
            t.expect("Repeat the password: ")
            t.type(CAROL_PW2 + "\r")
            code = t.finish()
            out = t.seen.decode(errors="replace")
            assert code == 0, f"exit {code}: {out!r}"
            assert "changed the password of carol" in out, out
            assert CAROL_PW2 not in out, f"the password was echoed: {out!r}"
        finally:
            t.close()

    step("passwd on a terminal: 'changed the password of carol'", passwd)
    check("the new hash matches the new password, not the old one",
          verifies(users_file, "carol", CAROL_PW2) and not verifies(users_file, "carol", CAROL_PW))


def through_a_pipe(users_file):
    def users(*args, stdin=""):
        return subprocess.run([BIN, "users", *args, "--users-file", users_file], input=stdin,
                              capture_output=True, text=True, timeout=TIMEOUT_S)

    r = users("add", "dave", "--iterations", "10000", stdin=DAVE_PW + "\nnot the password\n")
    check("add through a pipe: exit 0, no prompt", r.returncode == 0 and r.stderr == ""
          and r.stdout.startswith(f"added user dave to {users_file}\n"), f"{r.returncode} {r.stdout!r} {r.stderr!r}")
    check("through a pipe the first line is the password", verifies(users_file, "dave", DAVE_PW))
    r = users("list")
    check("list prints the names only, one per line", r.returncode == 0 and r.stdout == "carol\ndave\n"
          and "$pbkdf2" not in r.stdout, f"{r.returncode} {r.stdout!r}")
    r = users("add", "dave", stdin="x\n")
    check("add of an existing user: exit 1, points to passwd", r.returncode == 1
          and "palisade users passwd dave" in r.stderr, f"{r.returncode} {r.stderr!r}")
    r = users("remove", "dave")
    check("remove: exit 0, 'removed user dave'", r.returncode == 0
          and r.stdout.startswith(f"removed user dave from {users_file};"), f"{r.returncode} {r.stdout!r}")
    r = users("list")
    check("after remove, list shows carol only", r.stdout == "carol\n", repr(r.stdout))
    r = users("remove", "dave")
    check("remove of a missing user: exit 1 with a message", r.returncode == 1
          and f"no user dave in {users_file}" in r.stderr, f"{r.returncode} {r.stderr!r}")


def main():
    with tempfile.TemporaryDirectory(prefix="palisade-users-cli.") as work:
        users_file = os.path.join(work, "users.json")
        on_terminal(users_file)
        through_a_pipe(users_file)
    failed = results.count(False)
    print(f"{NAME}: {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
