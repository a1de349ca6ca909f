"""SmtpConnection: smtplib.SMTP sending a one-recipient transaction in one round trip.

smtplib waits for the reply to each of MAIL, RCPT and DATA before the message (four round trips
per message) and dot-stuffs with a regex tried at every byte (~0.2 ms for a 19 KB newsletter,
as much as the rest of the transaction). When the server offers PIPELINING (RFC 2920),
`send_one` writes MAIL, RCPT and DATA at once and reads their three replies, then sends the
message followed by the next message's MAIL, RCPT and DATA when the caller names it: one round
trip per message. Without PIPELINING it is smtplib's sendmail. Both paths dot-stuff with
bytes.replace and fail as sendmail does: SMTPSenderRefused, SMTPRecipientsRefused or
SMTPDataError, after which the connection is closed (a 421: the server is closing it) or reset
(any other refusal, unless the next transaction was begun).

Mail parameters: SIZE when offered (as smtplib), BODY=8BITMIME for a message with 8-bit bytes
when offered (RFC 6152), SMTPUTF8 for an address that is not ASCII when offered (RFC 6531).
A server without SMTPUTF8 gets an internationalized domain in its ASCII form (IDNA, punycode)
when the local part is ASCII, in the envelope and in the To and From headers (RFC 6531 needs
no extension for that: it is the same domain); an address whose local part is not ASCII cannot
be written so, and is refused here with 553 5.6.7, as a relay would.
"""

from __future__ import annotations

import smtplib
from contextlib import suppress
from typing import TYPE_CHECKING

import idna

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

OK_RCPT = (250, 251)
Reply = tuple[int, bytes]
Envelope = tuple[str, str, bytes]  # sender, recipient, message


def dot_stuffed(message: bytes) -> bytes:
    """The DATA section smtplib sends for `message`: each line starting with '.' gets another,
    the last line ends with CRLF, then the final '.' line (RFC 5321 4.5.2)."""
    stuffed = message.replace(b"\n.", b"\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed + b".\r\n"


class SmtpConnection(smtplib.SMTP):
    _next: Envelope | None = None  # begun: its MAIL, RCPT and DATA sent, their replies unread

    def send_one(
        self, sender: str, recipient: str, message: bytes, then: Envelope | None = None
    ) -> None:
        """Deliver `message` from `sender` (a bare address) to `recipient`; raises as above.

        `then`, the message to send next on this connection: with PIPELINING its MAIL, RCPT and
        DATA go out right after this message's data (RFC 2920 allows the data to start a
        group), so each message costs one round trip; the caller must send it next, or close
        the connection if it will not (see `next_begun`).
        """
        self.ehlo_or_helo_if_needed()
        envelope = self._for_server((sender, recipient, message))
        if not self.has_extn("pipelining"):  # known after an EHLO only
            options = self._mail_options(*envelope)
            self.sendmail(envelope[0], [envelope[1]], envelope[2], mail_options=options)
            return
        begun, self._next = self._next, None
        if begun is None:
            self.send(self._begin(envelope))
        elif begun[:2] != envelope[:2] or (begun[2] is not envelope[2]
                                           and begun[2] != envelope[2]):  # fmt: skip
            self.close()  # its replies would be taken for this message's
            raise smtplib.SMTPServerDisconnected("a different transaction was begun")
        self._transact(envelope, then)

    @property
    def next_begun(self) -> bool:
        return self._next is not None

    def close(self) -> None:
        """Also forgets the EHLO answer (smtplib keeps it): a reconnection asks again."""
        self._next = None
        self.ehlo_resp = self.helo_resp = None
        self.esmtp_features = {}
        self.does_esmtp = False
        super().close()

    def data(self, msg: ReadableBuffer | str) -> Reply:
        """smtplib's DATA with the cheaper dot-stuffing (sendmail calls this)."""
        if not isinstance(msg, bytes):
            return super().data(msg)
        self.putcmd("data")
        code, reply = self.getreply()
        if code != 354:
            raise smtplib.SMTPDataError(code, reply)
        self.send(dot_stuffed(msg))
        return self.getreply()

    def _for_server(self, envelope: Envelope) -> Envelope:
        """The envelope as this server can take it: internationalized domains in their ASCII
        form (and so in the address headers) when it lacks SMTPUTF8 and the local parts are
        ASCII; as it is otherwise (SMTPUTF8 is used, or `_mail_options` refuses it)."""
        sender, recipient, message = envelope
        if (sender.isascii() and recipient.isascii()) or self.has_extn("smtputf8"):
            return envelope
        ascii_sender, ascii_recipient = ascii_address(sender), ascii_address(recipient)
        if ascii_sender is None or ascii_recipient is None:
            return envelope
        return (
            ascii_sender,
            ascii_recipient,
            _ascii_headers(message, {sender: ascii_sender, recipient: ascii_recipient}),
        )

    def _mail_options(self, sender: str, recipient: str, message: bytes) -> list[str]:
        if not self.does_esmtp:
            return []
        options = []
        if not message.isascii() and self.has_extn("8bitmime"):
            options.append("BODY=8BITMIME")
        if not (sender.isascii() and recipient.isascii()):
            if not self.has_extn("smtputf8"):
                refusal = (553, b"5.6.7 the server does not offer SMTPUTF8 for this address")
                raise smtplib.SMTPRecipientsRefused({recipient: refusal})
            options.append("SMTPUTF8")
        return options

    def _begin(self, envelope: Envelope) -> bytes:
        """MAIL, RCPT and DATA for one message, as one pipelined group."""
        sender, recipient, message = envelope
        options = self._mail_options(sender, recipient, message)
        if self.has_extn("size"):
            options.insert(0, f"SIZE={len(message)}")
        params = "".join(f" {option}" for option in options)
        commands = [f"MAIL FROM:{smtplib.quoteaddr(sender)}{params}",
                    f"RCPT TO:{smtplib.quoteaddr(recipient)}", "DATA"]  # fmt: skip
        for command in commands:
            if "\r" in command or "\n" in command:  # as smtplib's putcmd: no injected commands
                raise ValueError(f"SMTP command contains a line break: {command!r}")
        group = "".join(f"{command}\r\n" for command in commands)
        return group.encode("utf-8" if "SMTPUTF8" in options else "ascii")

    def _transact(self, envelope: Envelope, then: Envelope | None) -> None:
        """Read the begun group's replies; send the message (and `then`'s group) on 354."""
        sender, recipient, message = envelope
        mail = self._reply_or_close()
        if mail[0] == 421:
            raise smtplib.SMTPSenderRefused(*mail, sender)
        rcpt = self._reply_or_close()
        if rcpt[0] == 421:
            raise smtplib.SMTPRecipientsRefused({recipient: rcpt})
        data = self._reply_or_close()
        if data[0] == 354 and (mail[0] != 250 or rcpt[0] not in OK_RCPT):
            data = self._end_data(b".\r\n")  # RFC 2920 3.1: DATA taken despite refusals
        if mail[0] != 250:
            self._refused(mail, smtplib.SMTPSenderRefused(*mail, sender))
        if rcpt[0] not in OK_RCPT:
            self._refused(rcpt, smtplib.SMTPRecipientsRefused({recipient: rcpt}))
        if data[0] != 354:
            self._refused(data, smtplib.SMTPDataError(*data))
        try:
            section = dot_stuffed(message) + self._begin_next(then)
        except Exception:
            self.close()  # in DATA mode with nothing sent: the next command would be message text
            raise
        final = self._end_data(section)
        if final[0] != 250:
            self._refused(final, smtplib.SMTPDataError(*final))

    def _begin_next(self, then: Envelope | None) -> bytes:
        if then is None:
            return b""
        then = self._for_server(then)
        try:
            group = self._begin(then)
        except (smtplib.SMTPRecipientsRefused, ValueError):
            return b""  # refused before a word is sent: found again when it is sent
        self._next = then
        return group

    def _reply_or_close(self) -> Reply:
        """The next reply; after a 421 the connection is closed (the server is closing it)."""
        reply = self.getreply()
        if reply[0] == 421:
            self.close()
        return reply

    def _end_data(self, section: bytes) -> Reply:
        self.send(section)
        return self._reply_or_close()

    def _refused(self, reply: Reply, error: smtplib.SMTPException) -> None:
        """Reset the transaction, as smtplib does, unless closed or the next one was begun (a
        refused message ends its transaction: RFC 5321 4.1.1.4)."""
        if reply[0] != 421 and self._next is None:
            with suppress(smtplib.SMTPServerDisconnected):  # the next transaction finds it
                self.rset()
        raise error


def ascii_address(address: str) -> str | None:
    """`address` with its domain in IDNA's ASCII form; None when its local part is not ASCII
    (only SMTPUTF8 can carry it) or its domain is not a valid IDN."""
    local, at, domain = address.rpartition("@")
    if not at or not local.isascii():
        return None
    if domain.isascii():
        return address
    try:
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
    except idna.IDNAError:
        return None


def _ascii_headers(message: bytes, replacements: dict[str, str]) -> bytes:
    """The message with each address of `replacements` rewritten in its header section (the
    To and From lines); the body is left as it is."""
    end = message.find(b"\r\n\r\n")
    head, body = (message, b"") if end < 0 else (message[:end], message[end:])
    for unicode_form, ascii_form in replacements.items():
        if unicode_form != ascii_form:
            head = head.replace(unicode_form.encode(), ascii_form.encode())
    return head + body
