"""Wakeups between processes' halves, in one process: what one side sends, the other
receives (PostgreSQL NOTIFY/LISTEN, the SQLite socket), and what the scheduler
publishes, the API reads back (``scheduler_link``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from mosu.service.db.session import make_engine, session_factory, upgrade
from mosu.service.scheduler_link import RemoteScheduler, StatePublisher
from mosu.service.wakeups import (
    PostgresListener,
    PostgresWaker,
    SocketListener,
    SocketWaker,
    listener_for_url,
    socket_address,
    waker_for_url,
)
from tests.pg import fresh_postgres_database, postgres_url


class Woken:
    def __init__(self) -> None:
        self.count = 0
        self.event = threading.Event()

    def __call__(self) -> None:
        self.count += 1
        self.event.set()

    def wait(self) -> bool:
        got = self.event.wait(10)
        self.event.clear()
        return got


def test_a_socket_wake_reaches_the_listener_and_a_burst_is_coalesced(tmp_path: Path) -> None:
    address = socket_address(str(tmp_path / "mosu.db"))
    assert address == str(tmp_path / "mosu.db") + ".wake"
    woken = Woken()
    listener = SocketListener(address, woken)
    listener.start()
    try:
        assert listener.listening.wait(10)
        assert woken.wait()  # once when it starts listening: whatever came before
        before = woken.count
        waker = SocketWaker(address)
        waker.wake()
        assert woken.wait()
        assert woken.count == before + 1
        for _ in range(200):
            waker.wake()
        assert woken.wait()
        assert woken.count <= before + 1 + 200
        waker.close()
    finally:
        listener.stop()
    assert not Path(address).exists()  # the socket file goes with its listener


def test_a_second_listener_leaves_a_live_socket_alone_and_replaces_a_stale_one(
    tmp_path: Path,
) -> None:
    address = str(tmp_path / "db.wake")
    first, second = Woken(), Woken()
    a = SocketListener(address, first)
    a.start()
    assert a.listening.wait(10)
    b = SocketListener(address, second)
    b.start()
    try:
        assert not b.listening.wait(1.5)  # a live listener holds it
        a.stop()
        assert b.listening.wait(10)  # gone: the standby takes the address
        second.event.clear()
        waker = SocketWaker(address)
        waker.wake()
        waker.close()
        assert second.wait()
    finally:
        a.stop()
        b.stop()


def test_a_long_path_is_reached_through_its_directory_not_an_abstract_socket(
    tmp_path: Path,
) -> None:
    deep = tmp_path / ("d" * 120) / ("mosu-" + "n" * 80 + ".db")
    deep.parent.mkdir()
    address = socket_address(str(deep))
    assert not address.startswith("\0")
    assert Path(address).parent == deep.parent  # in the data directory, whatever its length
    assert len(Path(address).name) <= 64
    woken = Woken()
    listener = SocketListener(address, woken)
    listener.start()
    try:
        assert listener.listening.wait(10)
        woken.wait()
        assert Path(address).is_socket()
        waker = SocketWaker(address)
        waker.wake()
        waker.close()
        assert woken.wait()
    finally:
        listener.stop()
    assert not Path(address).exists()


_SEND_AS_ANOTHER_USER = """
import socket, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
try:
    for _ in range(20):
        sock.sendto(b"w", sys.argv[1])
    print("sent")
except PermissionError:
    print("refused")
"""


def _send_as_nobody(address: str) -> str:
    result = subprocess.run(
        ["/usr/bin/python3", "-c", _SEND_AS_ANOTHER_USER, address],
        user=65534,
        group=65534,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout.strip()


needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/usr/bin/python3").exists(),
    reason="sending as another user needs root and the system python",
)


@needs_root
def test_another_local_user_cannot_reach_the_socket_in_a_private_data_directory(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    address = socket_address(str(data / "mosu.db"))
    woken = Woken()
    listener = SocketListener(address, woken)
    listener.start()
    try:
        assert listener.listening.wait(10)
        woken.wait()
        before = listener.received
        assert _send_as_nobody(address) == "refused"
        assert listener.received == before
    finally:
        listener.stop()


@needs_root
def test_datagrams_of_another_user_are_ignored_even_when_the_socket_is_open_to_all() -> None:
    open_dir = Path(tempfile.mkdtemp(prefix="mosu-wake-"))
    try:
        open_dir.chmod(0o777)
        address = socket_address(str(open_dir / "mosu.db"))
        woken = Woken()
        listener = SocketListener(address, woken, timeout_s=0.1)
        listener.start()
        try:
            assert listener.listening.wait(10)
            assert woken.wait()
            Path(address).chmod(0o777)
            wakes = woken.count
            assert _send_as_nobody(address) == "sent"
            deadline = threading.Event()
            for _ in range(100):  # the listener reads them at its own pace
                if listener.refused >= 20:
                    break
                deadline.wait(0.05)
            assert listener.refused == 20
            assert woken.count == wakes  # none of them woke the scheduler
            waker = SocketWaker(address)
            waker.wake()  # its own user still does
            waker.close()
            assert woken.wait()
        finally:
            listener.stop()
    finally:
        shutil.rmtree(open_dir, ignore_errors=True)


def test_waker_and_listener_match_the_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mosu.db'}"
    waker = waker_for_url(url)
    assert isinstance(waker, SocketWaker)
    assert waker.address == str(tmp_path / "mosu.db") + ".wake"
    waker.close()
    assert isinstance(listener_for_url(url, lambda: None), SocketListener)
    assert waker_for_url("sqlite://") is None
    assert listener_for_url("sqlite:///:memory:", lambda: None) is None
    pg = "postgresql+psycopg://u@127.0.0.1/x"
    assert isinstance(waker_for_url(pg), PostgresWaker)
    assert isinstance(listener_for_url(pg, lambda: None), PostgresListener)


def test_notify_reaches_a_listener_on_another_connection() -> None:
    with fresh_postgres_database(postgres_url(), "mosu_wake") as url:
        woken = Woken()
        listener = PostgresListener(url, woken, timeout_s=0.2)
        listener.start()
        waker = PostgresWaker(url)
        try:
            assert listener.listening.wait(10)
            assert woken.wait()  # the wake it gives itself on connecting
            waker.wake()
            assert woken.wait()
            assert listener.received >= 1
            for _ in range(100):
                waker.wake()
            assert woken.wait()
            assert 1 <= waker.sent <= 101  # coalesced while a notify was in flight
        finally:
            waker.close()
            listener.stop()


def test_a_stream_of_wakes_costs_one_notification_a_gap() -> None:
    with fresh_postgres_database(postgres_url(), "mosu_wake") as url:
        woken = Woken()
        listener = PostgresListener(url, woken, timeout_s=0.2)
        listener.start()
        waker = PostgresWaker(url, gap_s=0.05)
        try:
            assert listener.listening.wait(10)
            assert woken.wait()
            began = time.monotonic()
            while time.monotonic() - began < 0.5:
                waker.wake()
                time.sleep(0.001)
            took = time.monotonic() - began
            assert 1 <= waker.sent <= took / 0.05 + 2
            time.sleep(0.2)
            woken.event.clear()
            waker.wake()
            assert woken.wait(), "a wake after the stream is delivered"
        finally:
            waker.close()
            listener.stop()


def test_what_the_scheduler_publishes_the_api_reads(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'mosu.db'}")
    upgrade(engine)
    sessions = session_factory(engine)
    now = [1000.0]
    publisher = StatePublisher(sessions, clock=lambda: now[0])
    reader_clock = [0.0]
    remote = RemoteScheduler(
        sessions, None, ttl_s=0.5, clock=lambda: reader_clock[0], wall=lambda: now[0]
    )
    assert remote.queue_positions == {}
    assert not remote.leading
    assert remote.role == "standby"
    publisher.queue_order([7, 3, 9])
    publisher.reserved({"b": 5, "a": 2})
    publisher.heartbeat()
    reader_clock[0] = 1.0  # past the reader's cache
    assert remote.queue_positions == {7: 1, 3: 2, 9: 3}
    assert remote.credit_reserved == {"a": 2, "b": 5}
    assert remote.leading and remote.role == "leader"
    assert not publisher.publish("queue", [7, 3, 9])  # unchanged: not written again
    publisher.queue_order([3])
    assert remote.queue_positions == {7: 1, 3: 2, 9: 3}  # cached for ttl_s
    reader_clock[0] = 2.0
    assert remote.queue_positions == {3: 1}
    now[0] += 60  # no heartbeat for a minute: nobody leads
    reader_clock[0] = 3.0
    assert not remote.leading
    engine.dispose()


@pytest.mark.parametrize("field", ["queue", "leader"])
def test_a_publisher_of_another_server_is_not_this_servers_leader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, field: str
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'mosu.db'}")
    upgrade(engine)
    sessions = session_factory(engine)
    monkeypatch.setenv("MOSU_SERVER_ID", "server-a")
    publisher = StatePublisher(sessions)
    publisher.heartbeat()
    publisher.queue_order([1])
    monkeypatch.setenv("MOSU_SERVER_ID", "server-b")
    remote = RemoteScheduler(sessions, None)
    assert remote.queue_positions == {1: 1}  # the queue is the store's, whoever leads
    assert remote.leading is False
    assert remote.role == "standby"
    engine.dispose()
