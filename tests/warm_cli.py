"""`python -m transferlab.cli ...` for tests that start it many times, without paying for the imports
each time: torch and transformers take most of a run's ~10 s on the micro organism.

One server process imports the heavy modules once and forks a child per command. The child becomes
what `python <argv>` would be: its own environment, working directory, `sys.argv` and `sys.path[0]`,
stdin from /dev/null, stdout and stderr to files; then it runs the module (`-m`, through runpy, as
Python does) or the code (`-c`) as `__main__`. A SystemExit, an uncaught exception (traceback, exit
1), atexit handlers and a SIGKILL end it exactly as they end a fresh interpreter: the serving loop
wraps nothing around the child's code. The results come back as a `subprocess.CompletedProcess`.

What a fork cannot make fresh, and how the tests allow for it:
- the hash seed (every child shares the server's): test_resume's uninterrupted reference run is in
  the test process, not a fork, so byte equality with it still spans two hash seeds;
- variables Python reads only at start-up (PYTHONHASHSEED, PYTHONPATH, PYTHONWARNINGS): no test sets them;
- module state set at import from the environment: the one case in transferlab, the crash point
  (`TRANSFERLAB_CRASH_AT`, read at import), is re-read in the child from the child's environment.
Commands still started in a fresh interpreter: test_run_end_to_end's complete run, the ranks that
`--processes 2` launches, and test_serve_clients' `inspect` executable.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

# Everything `transferlab run` imports that takes time, including what transformers loads lazily
# when it opens a Llama checkpoint (about as long again as `import transformers`).
PRELOAD = ["torch", "transformers", "transformers.models.llama.modeling_llama", "transformers.generation",
           "accelerate", "peft", "pandas", "matplotlib.pyplot", "rich.console",
           "transferlab.train.loop", "transferlab.experiments.cli", "transferlab.backends.distributed",
           "transferlab.backends.memory", "transferlab.report", "transferlab.llm.client"]

SERVER = r"""
import gc, importlib, json, os, runpy, select, signal, sys, types
PROTOCOL_IN, PROTOCOL_OUT = os.dup(0), os.dup(1)
for name in sys.argv[1:]:
    importlib.import_module(name)
gc.freeze()  # what the imports made lives to the end: a child's exit need not walk (and copy) it all
reader = os.fdopen(PROTOCOL_IN, "rb", buffering=0)


def reply(message):
    os.write(PROTOCOL_OUT, (json.dumps(message) + "\n").encode())


def become(request):
    # In the forked child: the process `python <argv>` would start, up to running its code.
    reader.close()
    os.close(PROTOCOL_OUT)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for fd, path, mode in ((0, os.devnull, os.O_RDONLY), (1, request["stdout"], os.O_WRONLY),
                           (2, request["stderr"], os.O_WRONLY)):
        opened = os.open(path, mode)
        os.dup2(opened, fd)
        os.close(opened)
    crash_points = sys.modules.get("transferlab.results.crash_points")
    if crash_points is not None:  # read at import in a fresh process: read it as this one's would
        crash_points._ARMED = os.environ.get("TRANSFERLAB_CRASH_AT", "")


def reap(children):
    # Report every child that has ended: {"exited": pid, "returncode": like Popen's}.
    while children:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if not pid:
            return
        children.discard(pid)
        reply({"exited": pid, "returncode": os.waitstatus_to_exitcode(status)})


reply({"ready": True})
children = set()
while True:
    reap(children)
    if not select.select([reader], [], [], 0.02)[0]:
        continue
    line = reader.readline()
    if not line:
        break
    request = json.loads(line)
    if "signal" in request:  # only to a child not yet reaped: its pid cannot name another process
        if request["signal"] in children:
            os.kill(request["signal"], request["number"])
        continue
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        children.add(pid)
        reply({"pid": pid})
        continue
    become(request)
    option, target, *rest = request["argv"]
    if option == "-m":
        sys.argv[:] = [target, *rest]  # runpy puts the module's path in argv[0], as `python -m` does
        sys.path[0] = os.getcwd()
        sys.modules.pop(target, None)  # `python -m` runs it as __main__ only; a preload may have imported it
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        sys.argv[:] = ["-c", *rest]
        sys.path[0] = ""
        sys.modules["__main__"] = main = types.ModuleType("__main__")  # a fresh namespace, as `python -c` runs in
        exec(compile(target, "<string>", "exec"), main.__dict__)
    sys.exit(0)
for pid in children:  # the tests are done: what still runs is no one's
    os.kill(pid, signal.SIGKILL)
"""


class WarmProcess:
    """A started child: kill it like a Popen, `wait` for its CompletedProcess."""

    def __init__(self, server: WarmCLI, pid: int, argv: list[str], stdout: Path, stderr: Path):
        self.server, self.pid, self.argv, self.stdout, self.stderr = server, pid, argv, stdout, stderr

    def send_signal(self, sig: int) -> None:
        self.server.signal(self.pid, sig)

    def wait(self, timeout: float = 300) -> subprocess.CompletedProcess:
        returncode = self.server.returncode(self.pid, timeout)
        out, err = (p.read_text(errors="replace") for p in (self.stdout, self.stderr))
        self.stdout.unlink()
        self.stderr.unlink()
        if returncode is None:
            raise subprocess.TimeoutExpired(self.argv, timeout, out, err)
        return subprocess.CompletedProcess(self.argv, returncode, out, err)


class WarmCLI:
    """The server; `run(argv)` stands for `subprocess.run([sys.executable, *argv], capture_output=True,
    text=True)`, `start(argv)` for a Popen. Threads may start and wait for children at once."""

    def __init__(self, preload: list[str] = PRELOAD):
        self.files = Path(tempfile.mkdtemp(prefix="warm_cli-"))
        self.log = (self.files / "server.log").open("wb")
        self.process = subprocess.Popen([sys.executable, "-c", SERVER, *preload], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self.log, cwd=os.getcwd())
        self.count, self.exited, self.started, self.alive = 0, {}, queue.Queue(), True
        self.requesting, self.changed = threading.Lock(), threading.Condition()
        self.ready = threading.Event()
        threading.Thread(target=self.listen, name="warm CLI replies", daemon=True).start()

    def listen(self) -> None:
        """The one reader of the server's replies: a started child's pid, or a child's end."""
        for line in self.process.stdout:
            message = json.loads(line)
            if "ready" in message:
                self.ready.set()
            elif "pid" in message:
                self.started.put(message["pid"])
            else:
                with self.changed:
                    self.exited[message["exited"]] = message["returncode"]
                    self.changed.notify_all()
        with self.changed:
            self.alive = False
            self.changed.notify_all()
        self.ready.set()
        self.started.put(None)

    def died(self) -> RuntimeError:
        return RuntimeError(f"the warm CLI server died: {(self.files / 'server.log').read_text()[-3000:]}")

    def start(self, argv: list[str], env: dict | None = None, cwd: Path | str | None = None) -> WarmProcess:
        with self.requesting:
            self.count += 1
            stdout, stderr = self.files / f"{self.count}.out", self.files / f"{self.count}.err"
            stdout.touch()
            stderr.touch()
            self.ready.wait()
            request = {"argv": argv, "env": dict(os.environ if env is None else env), "cwd": str(cwd or os.getcwd()),
                       "stdout": str(stdout), "stderr": str(stderr)}
            try:
                self.process.stdin.write((json.dumps(request) + "\n").encode())
                self.process.stdin.flush()
            except BrokenPipeError:
                raise self.died() from None
            pid = self.started.get()
        if pid is None:
            raise self.died()
        return WarmProcess(self, pid, [sys.executable, *argv], stdout, stderr)

    def signal(self, pid: int, number: int) -> None:
        with self.requesting:
            self.process.stdin.write((json.dumps({"signal": pid, "number": number}) + "\n").encode())
            self.process.stdin.flush()

    def returncode(self, pid: int, timeout: float) -> int | None:
        """The child's exit code (minus the signal that ended it); None if it ran past `timeout`, which
        kills it, as subprocess.run's timeout does."""
        ended = lambda: pid in self.exited or not self.alive
        with self.changed:
            in_time = self.changed.wait_for(ended, timeout)
        if not in_time:  # signalled outside the lock: the reply reader may need it meanwhile
            self.signal(pid, signal.SIGKILL)
            with self.changed:
                self.changed.wait_for(ended)
        with self.changed:
            if pid not in self.exited:
                raise self.died()
            code = self.exited.pop(pid)
        return code if in_time else None

    def run(self, argv: list[str], env: dict | None = None, timeout: float = 300,
            cwd: Path | str | None = None) -> subprocess.CompletedProcess:
        return self.start(argv, env, cwd).wait(timeout)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)
        self.log.close()
        shutil.rmtree(self.files, ignore_errors=True)
