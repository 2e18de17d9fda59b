//! What an SMTP server advertises after EHLO, for the report's ESMTP section.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The extensions of interest, in the order a report lists them.
pub const OF_INTEREST: [&str; 6] = [
    "PIPELINING",
    "8BITMIME",
    "SMTPUTF8",
    "SIZE",
    "CHUNKING",
    "STARTTLS",
];

/// The keywords a server at `addr` lists in its EHLO reply (SIZE without its
/// number), or an error in words.
pub async fn advertised(addr: SocketAddr) -> Result<Vec<String>, String> {
    let talk = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::new(r);
        read_reply(&mut r).await?;
        w.write_all(b"EHLO probe.dlab.invalid\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let lines = read_reply(&mut r).await?;
        let _ = w.write_all(b"QUIT\r\n").await;
        Ok(keywords(&lines))
    };
    tokio::time::timeout(Duration::from_secs(10), talk)
        .await
        .map_err(|_| format!("no EHLO reply from {addr} within 10s"))?
}

async fn read_reply<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await.map_err(|e| e.to_string())? == 0 {
            return Err("the server closed the connection".into());
        }
        let last = line.as_bytes().get(3) != Some(&b'-');
        if !line.starts_with('2') {
            return Err(format!("the server said {}", line.trim_end()));
        }
        lines.push(line.trim_end().to_string());
        if last {
            return Ok(lines);
        }
    }
}

/// The keywords of an EHLO reply's lines after the first (the greeting).
fn keywords(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .skip(1)
        .filter_map(|l| l.get(4..))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_ascii_uppercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_drop_the_greeting_and_parameters() {
        let lines: Vec<String> = [
            "250-relay",
            "250-PIPELINING",
            "250-SIZE 10240000",
            "250 smtputf8",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(keywords(&lines), ["PIPELINING", "SIZE", "SMTPUTF8"]);
    }
}
