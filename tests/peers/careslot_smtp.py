"""aiosmtpd handlers for Careslot's tests (a real SMTP server on loopback).

Store DIR   accepts every message; writes it as DIR/<n>.eml and each
            text/calendar part, decoded, as DIR/<n>-<k>.ics.
Refuse CODE answers every RCPT TO with CODE (e.g. 451: try again later),
            quoting the address as real servers do.
"""

import email
import email.policy
import itertools
import os
import threading


class Store:
    _counter = itertools.count(1)
    _lock = threading.Lock()

    def __init__(self, directory):
        self.directory = directory
        os.makedirs(directory, exist_ok=True)

    @classmethod
    def from_cli(cls, parser, *args):
        if len(args) != 1:
            parser.error("Store takes one argument: the directory")
        return cls(args[0])

    async def handle_DATA(self, server, session, envelope):
        with self._lock:
            n = next(self._counter)
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        k = 0
        for part in message.walk():
            if part.get_content_type() == "text/calendar":
                k += 1
                with open(os.path.join(self.directory, f"{n}-{k}.ics"), "wb") as f:
                    f.write(part.get_payload(decode=True))
        # Written last and renamed into place: a reader never sees half a message.
        tmp = os.path.join(self.directory, f".{n}.tmp")
        with open(tmp, "wb") as f:
            f.write(raw)
        os.rename(tmp, os.path.join(self.directory, f"{n}.eml"))
        return "250 Message accepted for delivery"


class Refuse:
    def __init__(self, code):
        self.code = int(code)

    @classmethod
    def from_cli(cls, parser, *args):
        if len(args) != 1:
            parser.error("Refuse takes one argument: the reply code")
        return cls(args[0])

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        return f"{self.code} 4.3.0 <{address}> mailbox busy, try again later"
