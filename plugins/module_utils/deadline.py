# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How long a call may take, and what ends it early.

A ``Deadline`` is the one time limit of a module call (a site, the network tables, a cleanup); every
wait below it takes its bound from it:

* a connection opened with ``Database.connect(deadline=...)`` gets socket read/write timeouts of the
  remaining time plus ``GRACE``, and it and its database are remembered;
* when the time is up, or ``interrupt()`` is called (``stop_when_gone``: the ansible-playbook that
  started the module died), the deadline *fires*.  The thread that armed it gets the call's error
  raised wherever it waits, a blocking socket read included (SIGALRM); a helper thread connects to
  each remembered database afresh (bounded by ``PROBE_TIMEOUT``), sends ``KILL QUERY`` for its
  connections and notes the databases whose server does not answer (``unreachable()``): a call
  that ran out of time on a hung server failed because of the server, not the site;
* code outside the arming thread (the dump supervisor, a copy in a worker thread) asks ``expired()``.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time

from ansible_collections.wfu.multisite.plugins.module_utils.errors import (
    INTERRUPTED, TIMEOUT, ConfigError, MigrationError)

# Seconds a statement's socket may stay silent beyond the deadline: the KILL QUERY ends the statement first.
GRACE = 5
# Seconds for each connection that kills a statement or checks a server after the deadline, and for each
# statement of a failure's cleanup.
PROBE_TIMEOUT = 3


class Deadline:
    """A time limit of ``seconds`` (0: none) starting now; ``error(table)`` builds the exception it raises."""

    def __init__(self, seconds=0, error=None):
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise ConfigError("a time limit must be a number of seconds >= 0 (0 means none), got %r" % (seconds,))
        self.seconds = seconds
        self.at = time.monotonic() + seconds if seconds else None
        self._make_error = error or self._time_is_up
        self._cause = None
        self._watched = []
        self._databases = []
        self._lock = threading.Lock()
        self._fired = threading.Event()
        self._stopped = threading.Event()
        self._unreachable = {}
        self._signals = False

    # -- what the code under the deadline asks ------------------------------------------------------------------------
    def remaining(self):
        """Seconds left (None: no limit)."""
        return None if self.at is None else max(0.0, self.at - time.monotonic())

    def expired(self):
        return self._fired.is_set() or (self.at is not None and time.monotonic() >= self.at)

    def statement_timeout(self):
        """The socket timeout for a statement started now (None: no limit)."""
        remaining = self.remaining()
        return None if remaining is None else remaining + GRACE

    def failure(self, table=None):
        """The error that ends the call: what interrupted it, or the time limit's."""
        return self._cause if self._cause is not None else self._make_error(table)

    def using(self, database):
        """Remember a database about to be connected to, so that a server that never answers is named."""
        with self._lock:
            if database not in self._databases:
                self._databases.append(database)

    def watch(self, database, conn):
        """Remember a connection, so that its statement is killed on the server when the deadline fires."""
        with self._lock:
            self._watched = [entry for entry in self._watched if entry[1].open]
            self._watched.append((database, conn, conn.thread_id()))

    def unreachable(self, wait=PROBE_TIMEOUT * 3):
        """``{Database: MigrationError}`` of the servers that did not take the KILL QUERY after firing."""
        if self._fired.is_set():
            self._stopped.wait(wait)
        with self._lock:
            return dict(self._unreachable)

    def blame(self, error):
        """``error``, or when the deadline fired while a server did not answer, that server's failure (which is
        systemic) with ``error``'s message in front."""
        if not self._fired.is_set():
            return error
        unreachable = self.unreachable()
        if not unreachable:
            return error
        order = ("target", "migration", "source")
        database = min(unreachable, key=lambda db: order.index(db.role) if db.role in order else len(order))
        cause = unreachable[database]
        blamed = MigrationError("%s: %s" % (error.message, cause.message), site_id=error.site_id, table=error.table,
                                phase=error.phase, reason=cause.reason, error_code=cause.error_code,
                                database=database)
        blamed.__cause__ = error
        return blamed

    # -- firing -------------------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def armed(self):
        """Run the block under this deadline; when it fires, its error is raised in this thread (the main one).

        Outside the main thread nothing can be raised in a waiting thread: the deadline still fires (kills
        the statements, ``expired()`` turns true) and the code checks for it.  Deadlines do not nest: a call
        arms one.
        """
        timer = None
        self._signals = threading.current_thread() is threading.main_thread()
        if self._signals:
            previous = signal.signal(signal.SIGALRM, self._on_alarm)
            if self.at is not None:
                signal.setitimer(signal.ITIMER_REAL, max(0.001, self.remaining()))
        elif self.at is not None:
            timer = threading.Timer(self.remaining(), self._fire)
            timer.daemon = True
            timer.start()
        try:
            yield self
        finally:
            if self._signals:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
                self._signals = False
            if timer is not None:
                timer.cancel()

    def interrupt(self, error):
        """End the call now with ``error``; callable from any thread."""
        if self._fired.is_set():
            return
        self._cause = error
        if self._signals:
            signal.pthread_kill(threading.main_thread().ident, signal.SIGALRM)
        else:
            self._fire()

    @contextlib.contextmanager
    def stop_when_gone(self, pid, what="the ansible-playbook process"):
        """Interrupt the call when process ``pid`` ends (None: nothing to watch).

        Ansible's workers start a new session, so a kill of the playbook's process group misses the module:
        without this it would go on writing after the run it belonged to is gone.
        """
        if not pid:
            yield
            return
        gone = MigrationError("%s (pid %d) that started this call ended, so the call stopped and undid its work"
                              % (what, pid), reason=INTERRUPTED)
        try:
            process = os.pidfd_open(pid)
        except ProcessLookupError:
            self.interrupt(gone)
            yield
            return
        except OSError:
            yield  # a kernel without pidfds (before Linux 5.3): nothing to watch with
            return
        stop_read, stop_write = os.pipe()

        def wait_for_exit():
            poller = select.poll()
            poller.register(process, select.POLLIN)
            poller.register(stop_read, select.POLLIN)
            ready = {fd for fd, _event in poller.poll()}
            if stop_read not in ready:
                self.interrupt(gone)

        watcher = threading.Thread(target=wait_for_exit, name="wfu-playbook-watchdog", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            os.write(stop_write, b"x")
            watcher.join()
            for fd in (process, stop_read, stop_write):
                os.close(fd)

    def _on_alarm(self, _signum, _frame):
        if self._fired.is_set():
            return
        self._fire()
        raise self.failure()

    def _fire(self):
        self._fired.set()
        threading.Thread(target=self._stop_statements, name="wfu-deadline", daemon=True).start()

    def _stop_statements(self):
        with self._lock:
            by_database = {database: [] for database in self._databases}
            for database, conn, thread_id in self._watched:
                if conn.open:
                    by_database.setdefault(database, []).append(thread_id)
        workers = [threading.Thread(target=self._kill_on, args=item, daemon=True) for item in by_database.items()]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        self._stopped.set()

    def _kill_on(self, database, thread_ids):
        try:
            conn = database.connect(timeout=PROBE_TIMEOUT, connect_timeout=PROBE_TIMEOUT)
        except Exception as exc:  # pylint: disable=broad-except
            with self._lock:
                self._unreachable[database] = MigrationError.wrap(exc)
            return
        with contextlib.closing(conn), conn.cursor() as cur:
            for thread_id in thread_ids:
                with contextlib.suppress(Exception):
                    cur.execute("KILL QUERY %d" % int(thread_id))

    def _time_is_up(self, table=None):
        return MigrationError("the call did not finish within %s s" % self.seconds, table=table, reason=TIMEOUT)
