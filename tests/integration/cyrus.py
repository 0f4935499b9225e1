"""A throwaway Cyrus IMAP 3.6 with CardDAV on 127.0.0.1 (Debian's cyrus-imapd,
cyrus-caldav, sasl2-bin), for roster's integration tests.

Its own imapd.conf, cyrus.conf, sasldb and spool under a work folder; the
system's /etc/imapd.conf is never read, since every service gets its own
`-C` (master does not pass its own on). Users live in the sasldb; a user's
DAV homes exist only after that user's own first authenticated request,
which add_user makes. One account cannot write into another user's
address book on a standalone server, so every request is made as the user
whose book it is. Cyrus logs only to syslog; where no syslogd listens there
are no logs, and a failure is seen in the HTTP answers instead."""
import base64
import imaplib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

from harness import free_port, parse_card

CYRUS_BIN = "/usr/lib/cyrus/bin"
SASLPASSWD2 = shutil.which("saslpasswd2") or "/usr/sbin/saslpasswd2"
ADMIN = "admin"
NS = {"D": "DAV:", "C": "urn:ietf:params:xml:ns:carddav"}


def available():
    """Whether this machine has what Cyrus needs (and root, to drop to the cyrus user)."""
    return (os.path.exists(os.path.join(CYRUS_BIN, "master")) and
            os.path.exists(os.path.join(CYRUS_BIN, "httpd")) and os.path.exists(SASLPASSWD2) and
            os.geteuid() == 0)


IMAPD_CONF = """configdirectory: {d}/conf
defaultpartition: default
partition-default: {d}/spool
proc_path: {d}/proc
mboxname_lockpath: {d}/lock
sievedir: {d}/sieve
lmtpsocket: {d}/socket/lmtp
idlesocket: {d}/socket/idle
notifysocket: {d}/socket/notify
servername: localhost
admins: {admin}
unixhierarchysep: yes
altnamespace: no
allowplaintext: yes
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: {d}/sasldb2
sasl_mech_list: PLAIN LOGIN
httpmodules: caldav carddav
syslog_prefix: roster-test-cyrus
"""

CYRUS_CONF = """START {{
  recover cmd="{bin}/ctl_cyrusdb -C {conf} -r"
}}
SERVICES {{
  imap cmd="{bin}/imapd -C {conf}" listen="127.0.0.1:{imap}" prefork=0
  http cmd="{bin}/httpd -C {conf}" listen="127.0.0.1:{http}" prefork=0
}}
EVENTS {{
  checkpoint cmd="{bin}/ctl_cyrusdb -C {conf} -c" period=30
}}
DAEMON {{
}}
"""


class Cyrus:
    """A Cyrus master with imapd and httpd on free 127.0.0.1 ports; stopped by stop()."""

    def __init__(self, workdir):
        self.dir = os.path.join(workdir, "cyrus")
        for sub in ("conf", "spool", "proc", "lock", "sieve", "socket"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        # Cyrus drops to the cyrus user, which must be able to reach its folder.
        os.chmod(workdir, 0o711)
        self.imap_port = free_port()
        self.http_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}/"
        self.conf = os.path.join(self.dir, "imapd.conf")
        with open(self.conf, "w") as f:
            f.write(IMAPD_CONF.format(d=self.dir, admin=ADMIN))
        with open(os.path.join(self.dir, "cyrus.conf"), "w") as f:
            f.write(CYRUS_CONF.format(bin=CYRUS_BIN, conf=self.conf, imap=self.imap_port,
                                      http=self.http_port))
        self.passwords = {}
        self.admin_password = "admin-" + base64.b32encode(os.urandom(10)).decode().lower()
        self._saslpasswd(ADMIN, self.admin_password)
        subprocess.run(["chown", "-R", "cyrus:mail", self.dir], check=True)
        self.log = open(os.path.join(workdir, "cyrus-master.log"), "w")
        self.proc = subprocess.Popen(
            [os.path.join(CYRUS_BIN, "master"), "-C", self.conf, "-M",
             os.path.join(self.dir, "cyrus.conf"), "-p", os.path.join(self.dir, "master.pid")],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_for(self.http_port)
        self._wait_for(self.imap_port)

    def _wait_for(self, port):
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"cyrus master exited ({self.proc.returncode}); see "
                                       + self.log.name)
                time.sleep(0.1)
        raise RuntimeError(f"cyrus did not listen on {port}")

    def _saslpasswd(self, user, password):
        subprocess.run([SASLPASSWD2, "-p", "-c", "-f", os.path.join(self.dir, "sasldb2"), "-u",
                        "localhost", user], input=password.encode(), check=True)

    def stop(self):
        """Stops master and every service it started (they share its session)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()

    # Users.

    def add_user(self, user, password, first_login=True):
        """Creates the account and mailbox, then (unless first_login is False)
        logs in as the user over CardDAV, which makes Cyrus create their
        address-book home and its Default book. Returns the home's path."""
        self._saslpasswd(user, password)
        imap = imaplib.IMAP4("127.0.0.1", self.imap_port)
        try:
            imap.login(ADMIN, self.admin_password)
            typ, data = imap.create(f"user/{user}")
            if typ != "OK":
                raise RuntimeError(f"cyrus: CREATE user/{user}: {data}")
        finally:
            imap.logout()
        self.passwords[user] = password
        if not first_login:
            return self.home(user)
        status, text = self.request("PROPFIND", self.principal(user), user=user,
                                    body=b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:">'
                                    b'<D:prop><D:current-user-principal/></D:prop>'
                                    b'</D:propfind>', headers={"Depth": "0"})
        if status != 207:
            raise RuntimeError(f"cyrus: first login of {user}: {status} {text[:300]}")
        return self.home(user)

    def mailboxes(self, user):
        """The user's mailboxes as the admin sees them over IMAP (DAV
        collections are mailboxes: user/NAME/#addressbooks/Default), without
        logging in as the user, which would create their DAV homes."""
        imap = imaplib.IMAP4("127.0.0.1", self.imap_port)
        try:
            imap.login(ADMIN, self.admin_password)
            typ, data = imap.list('""', f"user/{user}*")
        finally:
            imap.logout()
        if typ != "OK":
            raise RuntimeError(f"cyrus: LIST user/{user}*: {data}")
        return sorted(line.decode().rsplit(" ", 1)[-1] for line in data if line)

    @staticmethod
    def principal(user):
        return f"/dav/principals/user/{urllib.parse.quote(user)}/"

    @staticmethod
    def home(user):
        return f"/dav/addressbooks/user/{urllib.parse.quote(user)}/"

    # Requests, always as a user (the admin has no rights in users' homes over DAV).

    def request(self, method, path, user, body=None, headers=None, password=None):
        url = path if path.startswith("http") else self.url.rstrip("/") + path
        req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
        secret = password if password is not None else self.passwords[user]
        req.add_header("Authorization", "Basic " +
                       base64.b64encode(f"{user}:{secret}".encode()).decode())
        if body is not None and "Content-Type" not in (headers or {}):
            req.add_header("Content-Type", "application/xml; charset=utf-8")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8", "replace")

    def propfind(self, path, user, props, depth="1"):
        """{href: {prop tag: element}} for each response with a 200 propstat."""
        body = ('<?xml version="1.0"?><D:propfind xmlns:D="DAV:" '
                'xmlns:C="urn:ietf:params:xml:ns:carddav"><D:prop>' + "".join(props) +
                '</D:prop></D:propfind>').encode()
        status, text = self.request("PROPFIND", path, user, body, {"Depth": depth})
        if status != 207:
            raise RuntimeError(f"PROPFIND {path} as {user}: {status} {text[:300]}")
        out = {}
        for resp in ET.fromstring(text).findall("D:response", NS):
            href = urllib.parse.unquote(resp.findtext("D:href", "", NS))
            found = {}
            for ps in resp.findall("D:propstat", NS):
                if " 200 " in ps.findtext("D:status", "", NS):
                    for prop in ps.find("D:prop", NS):
                        found[prop.tag] = prop
            out[href] = found
        return out

    def addressbook_home_set(self, user):
        """The home the user's principal names (what discovery asks for)."""
        got = self.propfind(self.principal(user), user, ["<C:addressbook-home-set/>"], "0")
        for props in got.values():
            el = props.get("{urn:ietf:params:xml:ns:carddav}addressbook-home-set")
            if el is not None:
                return urllib.parse.unquote(el.findtext("D:href", "", NS))
        return None

    def books(self, user):
        """{path: display name} of the address books in the user's home."""
        out = {}
        got = self.propfind(self.home(user), user, ["<D:resourcetype/>", "<D:displayname/>"])
        for href, props in got.items():
            rt = props.get("{DAV:}resourcetype")
            if rt is not None and rt.find("C:addressbook", NS) is not None:
                name = props.get("{DAV:}displayname")
                out[href] = name.text if name is not None else None
        return out

    def book_path(self, user, display_name):
        for path, name in self.books(user).items():
            if name == display_name:
                return path
        return None

    def raw_cards(self, user, display_name):
        """{href: (etag, vCard text)} of every card in the book, read in one
        addressbook-query as the user; {} when there is no such book."""
        path = self.book_path(user, display_name)
        if path is None:
            return {}
        body = (b'<?xml version="1.0"?><C:addressbook-query xmlns:D="DAV:" '
                b'xmlns:C="urn:ietf:params:xml:ns:carddav"><D:prop><D:getetag/>'
                b'<C:address-data/></D:prop></C:addressbook-query>')
        status, text = self.request("REPORT", path, user, body, {"Depth": "1"})
        if status != 207:
            raise RuntimeError(f"REPORT {path} as {user}: {status} {text[:300]}")
        out = {}
        for resp in ET.fromstring(text).findall("D:response", NS):
            href = urllib.parse.unquote(resp.findtext("D:href", "", NS))
            data = resp.find(".//C:address-data", NS)
            if data is None:
                continue
            out[href] = (resp.findtext(".//D:getetag", "", NS), data.text or "")
        return out

    def cards(self, user, display_name):
        """{href: {property: [values]}} of every card in the book."""
        return {href: parse_card(text)
                for href, (_, text) in self.raw_cards(user, display_name).items()}

    def put_card(self, user, path, text):
        """Writes a card as the user (a hand-made card, as a phone would)."""
        return self.request("PUT", path, user, text.encode(),
                            {"Content-Type": "text/vcard; charset=utf-8",
                             "If-None-Match": "*"})

    def ctag(self, user, display_name):
        """The book's getctag (changes with every write in it)."""
        path = self.book_path(user, display_name)
        got = self.propfind(path, user, ['<CS:getctag xmlns:CS="http://calendarserver.org/ns/"/>'],
                            "0")
        for props in got.values():
            el = props.get("{http://calendarserver.org/ns/}getctag")
            if el is not None:
                return el.text
        return None
