"""Nothing leaves the machine: the app as in production (`python app.py`, the real model and index)
under strace during start-up, a question and a while idle; any connect() or sendto() to an address
outside the loopback range, or to a DNS server at all, fails the test. (ONNX Runtime 1.32 looked up
mobile.events.data.microsoft.com at start-up and while idle until its telemetry was switched off.)
Needs Debian's strace (scripts/setup.sh --test installs it).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.web.conftest import QUESTION, ROOT, _free_port, _require

pytestmark = pytest.mark.slow

IDLE_S = 10  # how long the app is watched doing nothing after the question
# connect(5, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.0.0.2")}, 16)
# connect(5, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=..., inet_pton(AF_INET6, "2001:db8::1", ...
_INET = re.compile(r'sin6?_port=htons\((\d+)\).*?(?:inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6?, "([^"]+)")')


def outside_contacts(trace: str) -> list[str]:
    """The traced socket calls that reach past the loopback range, or ask a DNS server anything."""
    found = []
    for line in trace.splitlines():
        if not re.search(r"\b(connect|sendto|sendmsg|sendmmsg)\(", line) or "sa_family=AF_INET" not in line:
            continue
        match = _INET.search(line)
        if not match:
            found.append(line.strip())
            continue
        port, address = int(match.group(1)), match.group(2) or match.group(3)
        ip = ipaddress.ip_address(address)
        loopback = ip.is_loopback or (getattr(ip, "ipv4_mapped", None) or ip).is_loopback
        if port == 53 or not (loopback or ip.is_unspecified):
            found.append(line.strip())
    return found


def test_the_parser_sees_what_it_must():
    trace = """\
12 connect(5, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("127.0.0.53")}, 16) = 0
12 connect(7, {sa_family=AF_INET, sin_port=htons(443), sin_addr=inet_addr("13.69.239.72")}, 16) = -1
12 connect(8, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "2603:1020::1", &sin6_addr), sin6_scope_id=0}, 28) = -1
12 connect(9, {sa_family=AF_INET, sin_port=htons(7860), sin_addr=inet_addr("127.0.0.1")}, 16) = 0
12 connect(9, {sa_family=AF_INET6, sin6_port=htons(7860), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}, 28) = 0
12 connect(3, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1
"""
    assert [line.split("(", 1)[1][:2] for line in outside_contacts(trace)] == ["5,", "7,", "8,"]


def test_no_connection_or_dns_lookup_leaves_the_machine(real_index, tmp_path):
    strace = _require("strace", "strace")
    port, out = _free_port(), tmp_path / "trace.txt"
    env = {**os.environ, "RAG_INDEX_DIR": str(real_index), "RAG_PORT": str(port), "RAG_HOST": "127.0.0.1",
           "RAG_FEEDBACK_LOG": str(tmp_path / "feedback.jsonl")}  # fmt: skip
    command = [strace, "-f", "-qq", "-e", "trace=bind,connect,sendto,sendmsg,sendmmsg", "-e", "signal=none",
               "-o", str(out), sys.executable, str(ROOT / "app.py")]  # fmt: skip
    app = subprocess.Popen(command, cwd=ROOT, env=env, stdout=(tmp_path / "app.log").open("w"),
                           stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        _wait_healthy(app, port, tmp_path / "app.log")
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/ask",
            data=json.dumps({"question": QUESTION}).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            assert json.load(response)["answered"] is True
        time.sleep(IDLE_S)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(app.pid, signal.SIGTERM)
        try:
            app.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(app.pid, signal.SIGKILL)
            app.wait()
    trace = out.read_text()
    assert re.search(rf"bind\(.*htons\({port}\)", trace), "the trace missed the server's own socket"
    assert outside_contacts(trace) == []


def _wait_healthy(app: subprocess.Popen, port: int, log, timeout: float = 400) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.poll() is not None:
            pytest.fail(f"the app exited ({app.returncode}):\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=5) as r:
            if json.load(r)["status"] == "ok":
                return
        time.sleep(1)
    pytest.fail(f"the app did not start within {timeout} s:\n{log.read_text()[-3000:]}")
