"""A throwaway OpenLDAP slapd for roster's tests, on 127.0.0.1 with its own
cn=config and mdb database in a temporary folder (never the system service).

    with Slapd(ldif="people.ldif", size_limit=20, tls=True) as ldap:
        ldap.ldapmodify("dn: uid=ann,ou=people,dc=example,dc=org\\n...")
        run_something(ldap.url, ldap.bind_dn, ldap.password)

The database has the suffix dc=example,dc=org (empty: the suffix entry
itself comes from `ldif` or ldapadd), rootdn cn=admin,dc=example,dc=org
(`bind_dn`, `password`) and the core, cosine, inetorgperson, nis and
roster-test schemas. The rootdn
is exempt from every size limit: to see a limit, bind as an ordinary entry
(one with a userPassword) or anonymously. Stdlib only, like harness.py."""
import atexit
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA_DIR = "/etc/ldap/schema"
ROSTER_SCHEMA = os.path.join(HERE, "ldap", "roster-test.schema")
SUFFIX = "dc=example,dc=org"
ROOT_DN = "cn=admin," + SUFFIX
ROOT_PASSWORD = "roster-admin-secret"

# Every Slapd not stopped yet (strong references: one dropped without stop()
# must still be found); stopped at interpreter exit, so that a test that
# forgot stop() leaves nothing running.
_LIVE = set()
atexit.register(lambda: [s.stop() for s in list(_LIVE)])

try:
    _LIBC = ctypes.CDLL(None, use_errno=True)
except OSError:
    _LIBC = None


def _die_with_parent():
    """In the child before exec: SIGTERM when the parent dies (even by
    SIGKILL). Linux ties this to the thread that started slapd, so a Slapd
    must not outlive the thread that made it."""
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd, input_text=None, timeout=600):
    """Runs a command; returns its CompletedProcess, raising with its output on failure."""
    p = subprocess.run(cmd, input=input_text, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:1])} failed ({p.returncode}): {p.stderr.strip()}"
                           f" {p.stdout.strip()}".strip())
    return p


def _make_ca(directory, name, common_name):
    """A self-signed CA (EC P-256: fast to generate); returns (cert path, key path)."""
    key = os.path.join(directory, name + ".key")
    cert = os.path.join(directory, name + ".pem")
    _run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
          "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=" + common_name,
          "-addext", "basicConstraints=critical,CA:TRUE",
          "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    return cert, key


def _make_server_cert(directory, ca_cert, ca_key):
    """A certificate for 127.0.0.1 (and localhost) signed by the test CA."""
    key = os.path.join(directory, "server.key")
    csr = os.path.join(directory, "server.csr")
    cert = os.path.join(directory, "server.pem")
    ext = os.path.join(directory, "server.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                "basicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n")
    _run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
          "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"])
    _run(["openssl", "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key,
          "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext])
    return cert, key


class Slapd:
    """A slapd on free ports of 127.0.0.1; stopped (and its folder removed) by stop().

    size_limit: unpaged searches stop after this many entries (soft and hard
      limit) while paged ones (RFC 2696) still get everything.
    tls: serve ldaps:// on a second port and allow StartTLS on ldap://, with a
      throwaway CA (ca_file); other_ca_file is an unrelated CA that does not
      verify the server's certificate.
    max_incoming: sockbuf_max_incoming_auth, large enough for a 10 MB photo.
    ldif: a file loaded with slapadd before the start (fast for 50,000
      entries; entryUUID values in it are kept).
    """

    def __init__(self, workdir=None, size_limit=None, tls=False, ldif=None, page_limit=None,
                 max_incoming=64 << 20, start_timeout=30, log_stats=False):
        self.dir = tempfile.mkdtemp(prefix="roster-slapd-", dir=workdir)
        self.bind_dn = ROOT_DN
        self.password = ROOT_PASSWORD
        self.suffix = SUFFIX
        self.ca_file = None
        self.other_ca_file = None
        self.ldaps_url = None
        self.proc = None
        self._log = None
        self.log_path = os.path.join(self.dir, "slapd.log")
        self.pidfile = os.path.join(self.dir, "slapd.pid")
        self.log_stats = log_stats
        _LIVE.add(self)
        try:
            self._configure(size_limit, page_limit, tls, max_incoming)
            if ldif:
                _run(["slapadd", "-q", "-F", self.confdir, "-b", SUFFIX, "-l", ldif])
            self._start(start_timeout)
        except BaseException:
            self.stop()
            raise

    # --- set-up -------------------------------------------------------------

    def _configure(self, size_limit, page_limit, tls, max_incoming):
        tls_lines = ""
        if tls:
            ca_cert, ca_key = _make_ca(self.dir, "ca", "roster test CA")
            self.other_ca_file, _ = _make_ca(self.dir, "other-ca", "unrelated test CA")
            cert, key = _make_server_cert(self.dir, ca_cert, ca_key)
            self.ca_file = ca_cert
            tls_lines = (f"TLSCACertificateFile {ca_cert}\n"
                         f"TLSCertificateFile {cert}\n"
                         f"TLSCertificateKeyFile {key}\n")
        limits = ""
        if size_limit is not None or page_limit is not None:
            # size.pr is the largest page a client may ask for: a larger one is
            # refused ("illegal pagedResults page size"), not cut down.
            # size.prtotal=unlimited lets a paged search go on past the hard
            # limit, which is what RFC 2696 clients rely on.
            size = "unlimited" if size_limit is None else size_limit
            pr = "unlimited" if page_limit is None else page_limit
            limits = (f"sizelimit size.soft={size} size.hard={size} "
                      f"size.pr={pr} size.prtotal=unlimited\n")
        db = os.path.join(self.dir, "db")
        os.makedirs(db)
        self.confdir = os.path.join(self.dir, "slapd.d")
        os.makedirs(self.confdir)
        includes = "".join(f"include {SCHEMA_DIR}/{s}.schema\n"
                           for s in ("core", "cosine", "inetorgperson", "nis"))
        conf = os.path.join(self.dir, "slapd.conf")
        with open(conf, "w") as f:
            f.write(f"""{includes}include {ROSTER_SCHEMA}
pidfile {self.pidfile}
argsfile {os.path.join(self.dir, "slapd.args")}
modulepath /usr/lib/ldap
moduleload back_mdb
sockbuf_max_incoming_auth {max_incoming}
{tls_lines}
database mdb
maxsize 4294967296
suffix "{SUFFIX}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PASSWORD}
directory {db}
index objectClass,entryUUID eq
{limits}access to attrs=userPassword
  by anonymous auth
  by self write
  by * none
access to *
  by * read
""")
        # slaptest writes the cn=config folder, then fails to open the still
        # empty mdb database read-only and exits with 1 (its advice, -u, would
        # skip writing the folder): success is the folder, not the exit code.
        p = subprocess.run(["slaptest", "-f", conf, "-F", self.confdir], capture_output=True,
                           text=True, timeout=60)
        if not os.path.exists(os.path.join(self.confdir, "cn=config.ldif")):
            raise RuntimeError(f"slaptest failed ({p.returncode}): {p.stdout}{p.stderr}")

    def _start(self, timeout):
        # A port picked by free_port() may be taken by another test before
        # slapd binds it; then slapd exits at once and we try other ports.
        last_log = ""
        for _ in range(5):
            self.port = free_port()
            self.url = f"ldap://127.0.0.1:{self.port}/"
            urls = [self.url]
            if self.ca_file:
                self.ldaps_port = free_port()
                self.ldaps_url = f"ldaps://127.0.0.1:{self.ldaps_port}/"
                urls.append(self.ldaps_url)
            self._log = open(self.log_path, "w")
            # -d 0 keeps slapd in the foreground (it is ours to wait for) and
            # sends its start-up errors to the log.
            self.proc = subprocess.Popen(["slapd", "-d", "stats" if self.log_stats else "0",
                                          "-F", self.confdir, "-h",
                                          " ".join(urls)],
                                         stdout=self._log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL,
                                         preexec_fn=_die_with_parent)
            deadline = time.time() + timeout
            while time.time() < deadline:
                if self.proc.poll() is not None:
                    break
                p = subprocess.run(["ldapsearch", "-x", "-LLL", "-H", self.url, "-b", "", "-s",
                                    "base", "-o", "nettimeout=2", "1.1"],
                                   capture_output=True, text=True, timeout=30)
                if p.returncode == 0:
                    return
                time.sleep(0.05)
            else:
                self._kill()
                raise RuntimeError(f"slapd did not answer on {self.url} within {timeout} s; "
                                   f"log:\n{self._read_log()}")
            last_log = self._read_log()
            self._log.close()
            self._log = None
            if "Address already in use" not in last_log:
                break
        raise RuntimeError(f"slapd exited at start ({self.proc.returncode}); log:\n{last_log}")

    def _read_log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def searches(self):
        """With log_stats: [(base, scope, filter, nentries)] of every search so far
        whose result slapd logged, in order."""
        text = self._read_log()
        asked, out = {}, []
        for line in text.splitlines():
            m = re.search(r"conn=(\d+) op=(\d+) SRCH base=\"(.*)\" scope=(\d) deref=\d "
                          r"filter=\"(.*)\"$", line)
            if m:
                asked[(m.group(1), m.group(2))] = (m.group(3), int(m.group(4)), m.group(5))
                continue
            m = re.search(r"conn=(\d+) op=(\d+) SEARCH RESULT .*nentries=(\d+)", line)
            if m and (m.group(1), m.group(2)) in asked:
                out.append(asked.pop((m.group(1), m.group(2))) + (int(m.group(3)),))
        return out

    # --- changes, as the rootdn -------------------------------------------

    def _client(self, tool, args, input_text=None):
        return _run([tool, "-x", "-H", self.url, "-D", self.bind_dn, "-w", self.password] + args,
                    input_text=input_text).stdout

    def ldapmodify(self, ldif_text):
        """Applies LDIF change records (changetype: add/modify/delete/modrdn)."""
        return self._client("ldapmodify", [], ldif_text)

    def ldapadd(self, ldif_text):
        """Adds the entries of an LDIF text."""
        return self._client("ldapmodify", ["-a"], ldif_text)

    def delete(self, dn):
        return self._client("ldapdelete", [dn])

    def modrdn(self, dn, newrdn, newsuperior=None):
        """Renames (and with newsuperior moves) an entry; the old RDN value goes."""
        args = ["-r"]
        if newsuperior:
            args += ["-s", newsuperior]
        return self._client("ldapmodrdn", args + [dn, newrdn])

    def search(self, filter="(objectClass=*)", attrs=(), base=SUFFIX, bind="root", extra=()):
        """Runs ldapsearch, unpaged unless `extra` says otherwise (["-E",
        "pr=100/noprompt"]), bound as the rootdn ("root", which no size limit
        applies to), anonymously (None) or as a (dn, password) pair. Returns
        (exit code, stdout, stderr) without raising."""
        cmd = ["ldapsearch", "-x", "-LLL", "-o", "ldif-wrap=no", "-H", self.url, "-b", base]
        if bind == "root":
            bind = (self.bind_dn, self.password)
        if bind:
            cmd += ["-D", bind[0], "-w", bind[1]]
        p = subprocess.run(cmd + list(extra) + [filter] + list(attrs), capture_output=True,
                           text=True, timeout=300)
        return p.returncode, p.stdout, p.stderr

    # --- shutdown -----------------------------------------------------------

    def _kill(self):
        # Only a slapd still running as our child is signalled: after it has
        # exited, the pid in its pidfile may belong to someone else.
        if self.proc is not None and self.proc.poll() is None:
            pid = self.proc.pid
            try:
                with open(self.pidfile) as f:
                    pid = int(f.read().strip())
            except (OSError, ValueError):
                pass
            if pid != self.proc.pid:  # never a stranger's process
                pid = self.proc.pid
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        if self.proc is not None:
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self):
        """Stops slapd (via its pidfile) and removes its folder; safe to call twice."""
        self._kill()
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)
        _LIVE.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False
