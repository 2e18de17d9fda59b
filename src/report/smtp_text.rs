//! The SMTP lines of a run's terminal report: ESMTP (what each hop spoke,
//! downgrades, cleared bits, bounces and returns, each beside the relay
//! log's count), the text check, the sender, the relay's queue over time
//! and the relay log's own count.

use super::SmtpReport;
use crate::smtp::ehlo::OF_INTEREST;
use std::io::{self, Write};

/// Writes the SMTP section; `duplicates` is the ledger's count, set beside
/// the relay log's.
pub fn write(out: &mut dyn Write, s: &SmtpReport, duplicates: u64) -> io::Result<()> {
    writeln!(
        out,
        "  esmtp     relay: {}",
        extensions(&s.relay_advertised)
    )?;
    writeln!(
        out,
        "            inbox: {}",
        extensions(&s.inbox_advertised)
    )?;
    consequences(out, s)?;
    if let Some(t) = &s.tls {
        super::smtp_tls::write(out, t)?;
    }
    let t = &s.text;
    writeln!(
        out,
        "  text      \"{}\": intact in {} message(s), mangled in {}{}",
        t.expected,
        t.intact,
        t.mangled,
        if t.eight_bit > 0 {
            format!(", {} sent as 8-bit", t.eight_bit)
        } else {
            String::new()
        }
    )?;
    let c = &s.sender;
    writeln!(
        out,
        "  sender    {} attempts: {} accepted (250), {} refused, {} in doubt (reply lost), {} given up",
        c.attempts, c.accepted, c.refused, c.in_doubt, c.given_up
    )?;
    if s.relay_queue.is_empty() {
        writeln!(
            out,
            "  queue     relay queue depth {}",
            s.relay_queue_source
        )?;
    } else {
        let end = s.relay_queue.last().map_or(0, |q| q.at_ms);
        writeln!(
            out,
            "  queue     relay queue depth ({}), peak {}, 0 to {end}ms: {}",
            s.relay_queue_source,
            s.relay_queue_peak,
            sparkline(
                &s.relay_queue.iter().map(|q| q.depth).collect::<Vec<_>>(),
                60
            )
        )?;
    }
    if let Some(l) = &s.relay_log {
        writeln!(
            out,
            "  relay log {} message(s), {} deliveries ({} 'may be sent more than once'): {} duplicate(s); the ledger counts {}: {}",
            l.messages,
            l.deliveries,
            l.maybe_twice,
            l.duplicates,
            duplicates,
            if l.duplicates == duplicates { "agree" } else { "differ" }
        )?;
    }
    Ok(())
}

/// What the sender sent and what the hops made of it; the relay log's
/// account beside the inbox's and the sender's mailbox's.
fn consequences(out: &mut dyn Write, s: &SmtpReport) -> io::Result<()> {
    let e = &s.esmtp;
    if e.body.is_empty() {
        return Ok(()); // a result written before ESMTP was reported
    }
    writeln!(
        out,
        "            sent: {} body to the {} address; the inbox ({}) saw BODY=8BITMIME {} time(s), SMTPUTF8 {}",
        e.body, e.recipient, e.inbox, e.declared_8bitmime, e.smtputf8
    )?;
    let log = s.relay_log.as_ref();
    let beside = |ours: u64, theirs: Option<u64>| match theirs {
        Some(n) if n == ours => "agree".to_string(),
        Some(n) => format!("DIFFER (relay log {n})"),
        None => "no relay log".to_string(),
    };
    if e.downgraded > 0 || log.is_some_and(|l| l.downgraded > 0) {
        writeln!(
            out,
            "  downgrade {} 8-bit message(s) arrived quoted-printable; relay log: {} came in 8bit and went out quoted-printable: {}",
            e.downgraded,
            log.map_or(0, |l| l.downgraded),
            beside(e.downgraded, log.map(|l| l.downgraded))
        )?;
    }
    if e.eight_bit_on_7bit_hop > 0 {
        writeln!(
            out,
            "  7-bit hop {} message(s) arrived with 8-bit octets at an inbox without 8BITMIME: their eighth bit cleared",
            e.eight_bit_on_7bit_hop
        )?;
    }
    let bounced = log.map_or(0, |l| l.bounced);
    if bounced > 0 || e.returns_received > 0 {
        let reasons = |r: &[super::ReasonCount]| {
            r.iter()
                .map(|r| format!("{} x \"{}\"", r.count, r.reason))
                .collect::<Vec<_>>()
                .join("; ")
        };
        if let Some(l) = log {
            writeln!(
                out,
                "  bounced   relay log: {} message(s) bounced, {} returned to the sender: {}",
                l.bounced,
                l.returns_sent,
                reasons(&l.bounce_reasons)
            )?;
        }
        writeln!(
            out,
            "  returns   the sender's mailbox received {} return(s) of this run's messages: {}; {}",
            e.returns_received,
            reasons(&e.return_reasons),
            beside(e.returns_received, log.map(|l| l.returns_sent))
        )?;
    }
    Ok(())
}

/// The extensions of interest, each marked present or absent.
fn extensions(advertised: &[String]) -> String {
    OF_INTEREST
        .iter()
        .map(|x| {
            if advertised.iter().any(|a| a == x) {
                x.to_string()
            } else {
                format!("no-{x}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Values as block characters, at most `width` of them (each the maximum of
/// its bucket).
fn sparkline(values: &[u64], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = values.iter().copied().max().unwrap_or(0);
    if values.is_empty() || max == 0 {
        return "▁".repeat(values.len().clamp(1, width));
    }
    let per = values.len().div_ceil(width);
    values
        .chunks(per)
        .map(|c| {
            let v = c.iter().copied().max().unwrap_or(0);
            BARS[((v * 7).div_ceil(max)) as usize]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sparkline_rises_and_falls_with_the_queue() {
        assert_eq!(sparkline(&[0, 4, 8, 4, 0], 60), "▁▅█▅▁");
        assert_eq!(sparkline(&[0, 0], 60), "▁▁");
        assert_eq!(
            sparkline(&(0..120).collect::<Vec<_>>(), 60).chars().count(),
            60
        );
    }

    #[test]
    fn absent_extensions_are_marked() {
        let got = extensions(&["PIPELINING".into(), "SIZE".into()]);
        assert!(got.starts_with("PIPELINING no-8BITMIME"));
        assert!(got.contains(" SIZE no-CHUNKING"));
    }
}
