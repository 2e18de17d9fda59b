//! The private relay's Postfix configuration: `main.cf` and `master.cf` in
//! its own `etc/`, and its entry in the system `main.cf`.

use super::RelayError;
use std::net::SocketAddr;
use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};

/// What a private relay is asked to do beyond forwarding to its next hop.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Where mail for the sender's own address (returns) goes.
    pub returns: Option<SocketAddr>,
    /// STARTTLS on both hops.
    pub tls: Option<Tls>,
}

/// The relay's TLS: the lab CA's files, and what each side requires.
#[derive(Debug, Clone)]
pub struct Tls {
    /// The lab's standard set (`ca.pem`, `server.pem`, `relay.pem`, ...).
    pub dir: PathBuf,
    /// The server side (`smtpd`) requires a client certificate signed by
    /// the lab CA, and the delivery agent presents the relay's.
    pub mutual: bool,
    /// The delivery agent's `smtp_tls_security_level` towards the next hop:
    /// `may`, `encrypt` or `verify`.
    pub level: &'static str,
}

/// The `main.cf` lines of `tls` towards `next_hop`. The server side offers
/// STARTTLS (`may`; with mutual TLS it requires it and a client
/// certificate: `encrypt` and `smtpd_tls_req_ccert`); the `Received:` line
/// it writes says "using TLS". The delivery agent uses the level asked for
/// towards the inbox, through a policy table so that `verify` matches the
/// certificate's `localhost` (the next hop is an address literal); returns
/// go out at `may`. Both log at level 1: the server side a line per TLS
/// connection, the delivery agent a line per delivery attempt
/// ("established" or "reused") and `tlsproxy` a line per handshake. The
/// delivery agent caches its TLS connections as it does plain ones
/// (`smtp_tls_connection_reuse`: `tlsproxy` holds the TLS session), so a
/// backlog to the inbox need not pay a handshake per message.
fn tls_lines(tls: &Tls, next_hop: SocketAddr) -> String {
    let d = tls.dir.display();
    let mut lines = format!(
        "smtpd_tls_cert_file = {d}/server.pem\n\
         smtpd_tls_key_file = {d}/server.key\n\
         smtpd_tls_CAfile = {d}/ca.pem\n\
         smtpd_tls_loglevel = 1\n\
         smtpd_tls_received_header = yes\n\
         smtp_tls_CAfile = {d}/ca.pem\n\
         smtp_tls_loglevel = 1\n\
         smtp_tls_security_level = may\n\
         smtp_tls_connection_reuse = yes\n\
         smtp_tls_policy_maps = inline:{{ {{[{ip}]:{port} = {level}{name}}} }}\n",
        ip = next_hop.ip(),
        port = next_hop.port(),
        level = tls.level,
        // Only `verify` matches a name (Postfix refuses `match` below it).
        name = if tls.level == "verify" {
            " match=localhost"
        } else {
            ""
        },
    );
    if tls.mutual {
        lines.push_str(&format!(
            "smtpd_tls_security_level = encrypt\n\
             smtpd_tls_ask_ccert = yes\n\
             smtpd_tls_req_ccert = yes\n\
             smtp_tls_cert_file = {d}/relay.pem\n\
             smtp_tls_key_file = {d}/relay.key\n"
        ));
    } else {
        lines.push_str("smtpd_tls_security_level = may\n");
    }
    lines
}

fn write_file(path: &Path, text: &str) -> Result<(), RelayError> {
    std::fs::write(path, text).map_err(|source| RelayError::Io {
        what: "cannot write",
        path: path.to_path_buf(),
        source,
    })
}

fn mkdir(path: &Path) -> Result<(), RelayError> {
    std::fs::create_dir_all(path).map_err(|source| RelayError::Io {
        what: "cannot create",
        path: path.to_path_buf(),
        source,
    })
}

fn postfix_ids() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("postfix:"))?;
    let f: Vec<&str> = line.split(':').collect();
    Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
}

/// The private relay's retry timing, as `main.cf` parameters (why each value:
/// see [`write`]). The `relay` service of `compose.yaml` sets the same values
/// (a test holds it to them).
pub const RETRY_TIMING: [(&str, &str); 5] = [
    ("queue_run_delay", "1s"),
    ("minimal_backoff_time", "2s"),
    ("maximal_backoff_time", "4s"),
    ("smtp_connect_timeout", "5s"),
    ("smtp_data_done_timeout", "3s"),
];

/// The header checks of the relay's `cleanup` (as a message comes in) and
/// of its `smtp` client (as it goes out, after any conversion): each logs
/// the message's Content-Transfer-Encoding, so the log says which messages
/// the relay downgraded from 8bit to quoted-printable for a next hop
/// without 8BITMIME (Postfix logs no line of its own for that).
pub const HEADER_CHECKS: &str = "/^Content-Transfer-Encoding:/ INFO dlab: transfer encoding\n";

/// Writes `etc/main.cf` and `etc/master.cf` under `dir`, and the queue, data
/// and log directories. Mail for the sender's own address (what the relay
/// returns: bounces) goes to `returns` when given, by a transport map, so a
/// return does not depend on what the next hop speaks. The data directory and the log file belong to
/// `postfix`: Postfix requires the first, and the second must be writable by
/// `postsuper`, which runs as `postfix` and logs straight to the file while
/// no `postlogd` runs. After a SIGKILL, `postfix start` runs `postsuper` over
/// the queue; it warns about the half-written file a killed `cleanup` left in
/// `incoming/`, and if it cannot log that warning the start fails.
///
/// Retry timing is short, so that a run sees the relay deliver its backlog
/// within seconds of the next hop's return, but not shorter than Postfix
/// allows: the queue manager takes a deferred file whose retry time is at
/// most one second ahead, so with `minimal_backoff_time = 1s` it could take
/// a message back while the delivery agent that deferred it still held its
/// lock; a locked file is set aside in `incoming/` for 60 seconds, and only
/// the queue manager's next wakeup looks there again (300 s in Postfix's
/// stock `master.cf`, 10 s here).
pub fn write(
    dir: &Path,
    port: u16,
    next_hop: SocketAddr,
    options: &Options,
) -> Result<(), RelayError> {
    for sub in ["etc", "spool", "data", "log"] {
        mkdir(&dir.join(sub))?;
    }
    let log = dir.join("log").join("postfix.log");
    if !log.exists() {
        write_file(&log, "")?;
    }
    if let Some((uid, gid)) = postfix_ids() {
        for path in [dir.join("data"), log] {
            chown(&path, Some(uid), Some(gid)).map_err(|source| RelayError::Io {
                what: "cannot chown",
                path,
                source,
            })?;
        }
    }
    let d = dir.display();
    write_file(&dir.join("etc").join("header_checks"), HEADER_CHECKS)?;
    let transport = match options.returns {
        Some(r) => format!(
            "transport_maps = inline:{{ {{{}=smtp:[{}]:{}}} }}\n",
            crate::smtp::esmtp::SENDER,
            r.ip(),
            r.port()
        ),
        None => String::new(),
    };
    write_file(
        &dir.join("etc").join("main.cf"),
        &format!(
            "# dlab: a private store-and-forward relay to {next_hop}\n\
             compatibility_level = 3.6\n\
             queue_directory = {d}/spool\n\
             data_directory = {d}/data\n\
             command_directory = /usr/sbin\n\
             daemon_directory = /usr/lib/postfix/sbin\n\
             meta_directory = /etc/postfix\n\
             shlib_directory = /usr/lib/postfix\n\
             mail_owner = postfix\n\
             setgid_group = postdrop\n\
             myhostname = relay.dlab.invalid\n\
             mydomain = dlab.invalid\n\
             mydestination =\n\
             local_recipient_maps =\n\
             alias_maps =\n\
             alias_database =\n\
             inet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\n\
             mynetworks = 127.0.0.0/8\n\
             relay_domains =\n\
             relayhost = [{ip}]:{port}\n\
             smtpd_relay_restrictions = permit_mynetworks, reject\n\
             smtputf8_enable = yes\n\
             header_checks = regexp:{d}/etc/header_checks\n\
             smtp_header_checks = regexp:{d}/etc/header_checks\n\
             {transport}\
             {tls}\
             {timing}\
             maillog_file = {d}/log/postfix.log\n\
             maillog_file_prefixes = {d}/log\n\
             biff = no\n",
            ip = next_hop.ip(),
            port = next_hop.port(),
            tls = options
                .tls
                .as_ref()
                .map_or(String::new(), |t| tls_lines(t, next_hop)),
            timing = RETRY_TIMING
                .iter()
                .map(|(k, v)| format!("{k} = {v}\n"))
                .collect::<String>(),
        ),
    )?;
    write_file(
        &dir.join("etc").join("master.cf"),
        &format!(
            "127.0.0.1:{port} inet n - n - - smtpd\n\
             pickup unix n - n 60 1 pickup\n\
             cleanup unix n - n - 0 cleanup\n\
             qmgr unix n - n 10 1 qmgr\n\
             rewrite unix - - n - - trivial-rewrite\n\
             bounce unix - - n - 0 bounce\n\
             defer unix - - n - 0 bounce\n\
             trace unix - - n - 0 bounce\n\
             verify unix - - n - 1 verify\n\
             flush unix n - n 1000? 0 flush\n\
             proxymap unix - - n - - proxymap\n\
             smtp unix - - n - - smtp\n\
             relay unix - - n - - smtp\n\
             showq unix n - n - - showq\n\
             error unix - - n - - error\n\
             retry unix - - n - - error\n\
             discard unix - - n - - discard\n\
             anvil unix - - n - 1 anvil\n\
             scache unix - - n - 1 scache\n\
             tlsmgr unix - - n 1000? 1 tlsmgr\n\
             tlsproxy unix - - n - 0 tlsproxy\n\
             postlog unix-dgram n - n - 1 postlogd\n"
        ),
    )
}

/// Adds `etc` to `alternate_config_directories` in the system `main.cf`
/// (creating it if the package left none), keeping every other line.
pub fn list_in_system_main_cf(main_cf: &Path, etc: &Path) -> Result<(), RelayError> {
    edit_alternate_dirs(main_cf, etc, true).map(|_| ())
}

/// Takes `etc` out of `alternate_config_directories` again; returns whether
/// it was listed.
pub fn unlist_from_system_main_cf(main_cf: &Path, etc: &Path) -> Result<bool, RelayError> {
    edit_alternate_dirs(main_cf, etc, false)
}

/// Edits under an exclusive `flock` (several relays may start at once, in
/// threads or processes) and replaces the file whole by a rename, so neither
/// another edit nor a starting Postfix sees half of it. Returns whether `etc`
/// was listed before.
fn edit_alternate_dirs(main_cf: &Path, etc: &Path, add: bool) -> Result<bool, RelayError> {
    use std::os::fd::AsRawFd;
    let lock_path = main_cf.with_extension("cf.dlab-lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| RelayError::Io {
            what: "cannot open",
            path: lock_path.clone(),
            source,
        })?;
    // SAFETY: flock on a descriptor this function owns; released when `lock` closes.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(RelayError::Io {
            what: "cannot lock",
            path: lock_path,
            source: std::io::Error::last_os_error(),
        });
    }
    let text = std::fs::read_to_string(main_cf).unwrap_or_default();
    let entry = etc.display().to_string();
    let mut found = false;
    let mut was_listed = false;
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("alternate_config_directories") {
            found = true;
            let list = rest.trim_start().strip_prefix('=').unwrap_or("").trim();
            let mut dirs: Vec<&str> = list.split([',', ' ']).filter(|s| !s.is_empty()).collect();
            was_listed |= dirs.contains(&entry.as_str());
            dirs.retain(|d| *d != entry.as_str());
            if add {
                dirs.push(&entry);
            }
            if !dirs.is_empty() {
                lines.push(format!(
                    "alternate_config_directories = {}",
                    dirs.join(", ")
                ));
            }
        } else {
            lines.push(line.to_string());
        }
    }
    if !found && add {
        lines.push(format!("alternate_config_directories = {entry}"));
    }
    let new = lines.join("\n") + "\n";
    if new != text {
        let tmp = main_cf.with_extension(format!("cf.dlab-{}", std::process::id()));
        write_file(&tmp, &new)?;
        std::fs::rename(&tmp, main_cf).map_err(|source| RelayError::Io {
            what: "cannot replace",
            path: main_cf.to_path_buf(),
            source,
        })?;
    }
    drop(lock);
    Ok(was_listed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_main_cf_gains_the_directory_once_and_keeps_the_rest() {
        let dir =
            std::env::temp_dir().join(format!("dlab-maincf-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let main_cf = dir.join("main.cf");
        std::fs::write(
            &main_cf,
            "myhostname = x\nalternate_config_directories = /a\n",
        )
        .unwrap();
        list_in_system_main_cf(&main_cf, Path::new("/b/etc")).unwrap();
        list_in_system_main_cf(&main_cf, Path::new("/b/etc")).unwrap();
        let text = std::fs::read_to_string(&main_cf).unwrap();
        assert_eq!(
            text,
            "myhostname = x\nalternate_config_directories = /a, /b/etc\n"
        );
        std::fs::remove_file(&main_cf).unwrap();
        list_in_system_main_cf(&main_cf, Path::new("/c")).unwrap();
        assert_eq!(
            std::fs::read_to_string(&main_cf).unwrap(),
            "alternate_config_directories = /c\n"
        );
        assert!(unlist_from_system_main_cf(&main_cf, Path::new("/c")).unwrap());
        assert_eq!(std::fs::read_to_string(&main_cf).unwrap(), "\n");
        assert!(!unlist_from_system_main_cf(&main_cf, Path::new("/c")).unwrap());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
