//! What each SMTP hop speaks, from the scenario's `[esmtp]` table: the
//! extensions the inbox announces (any subset, or none at all when it
//! answers only HELO, as a server older than ESMTP does), and what the
//! sender sends (8-bit text declared with `BODY=8BITMIME` or not, as MIME or
//! not, to an ASCII or an internationalised address with `SMTPUTF8`).
//!
//! The consequences are Postfix's: facing a next hop without 8BITMIME it
//! converts an 8-bit MIME message to quoted-printable (RFC 6152) and sends a
//! non-MIME one as it is; facing one without SMTPUTF8 it bounces a message
//! that needs it (RFC 6531) and returns it to the sender.

use serde::{Deserialize, Serialize};

/// An extension dlab's inbox can announce after EHLO.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum Extension {
    /// RFC 2920: commands sent without waiting for each reply.
    #[serde(rename = "PIPELINING")]
    Pipelining,
    /// RFC 6152: 8-bit text in the body.
    #[serde(rename = "8BITMIME")]
    EightBitMime,
    /// RFC 6531: UTF-8 in addresses and headers.
    #[serde(rename = "SMTPUTF8")]
    SmtpUtf8,
    /// RFC 1870: the largest message, declared up front.
    #[serde(rename = "SIZE")]
    Size,
}

impl Extension {
    /// Every extension the inbox knows, in the order it announces them.
    pub const ALL: [Extension; 4] = [
        Extension::Pipelining,
        Extension::EightBitMime,
        Extension::SmtpUtf8,
        Extension::Size,
    ];

    /// Its keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Extension::Pipelining => "PIPELINING",
            Extension::EightBitMime => "8BITMIME",
            Extension::SmtpUtf8 => "SMTPUTF8",
            Extension::Size => "SIZE",
        }
    }
}

/// How the inbox greets a client that says EHLO.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announce {
    /// `false`: EHLO is answered 502 and only HELO works (no extensions).
    pub ehlo: bool,
    /// The extensions listed after EHLO.
    pub extensions: Vec<Extension>,
}

impl Default for Announce {
    /// Every extension.
    fn default() -> Self {
        Announce {
            ehlo: true,
            extensions: Extension::ALL.to_vec(),
        }
    }
}

impl Announce {
    /// Whether `e` is announced.
    pub fn has(&self, e: Extension) -> bool {
        self.ehlo && self.extensions.contains(&e)
    }

    /// The reply to EHLO;
    /// with `starttls`, STARTTLS is offered too (RFC 3207).
    pub fn ehlo_reply(&self, size: usize, starttls: bool) -> String {
        if !self.ehlo {
            return "502 5.5.2 Error: command not recognized\r\n".to_string();
        }
        let mut lines = vec!["inbox.dlab.invalid".to_string()];
        for e in Extension::ALL.into_iter().filter(|e| self.has(*e)) {
            lines.push(match e {
                Extension::Size => format!("SIZE {size}"),
                e => e.keyword().to_string(),
            });
        }
        if starttls {
            lines.push("STARTTLS".to_string());
        }
        let last = lines.len() - 1;
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| format!("250{}{l}\r\n", if i == last { ' ' } else { '-' }))
            .collect()
    }

    /// In words, for the report.
    pub fn describe(&self) -> String {
        if !self.ehlo {
            return "HELO only (no extensions)".to_string();
        }
        let list: Vec<&str> = self.extensions.iter().map(|e| e.keyword()).collect();
        if list.is_empty() {
            "EHLO with no extensions".to_string()
        } else {
            list.join(" ")
        }
    }
}

/// What the sender's messages are.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Body {
    /// A MIME message as the mail library builds it (it picks a 7-bit
    /// encoding for the non-ASCII text).
    #[default]
    Mime,
    /// 8-bit UTF-8 text (`Content-Transfer-Encoding: 8bit`), declared with
    /// `BODY=8BITMIME` on MAIL FROM.
    #[serde(rename = "8bitmime")]
    EightBitMime,
    /// The same 8-bit MIME text without `BODY=8BITMIME` (RFC 6152 says a
    /// client must declare it).
    #[serde(rename = "8bit-undeclared")]
    EightBitUndeclared,
    /// 8-bit text with no MIME headers at all: nothing tells a relay how to
    /// convert it.
    #[serde(rename = "8bit-no-mime")]
    EightBitNoMime,
}

impl Body {
    /// Whether the body is 8-bit as sent.
    pub fn eight_bit(self) -> bool {
        self != Body::Mime
    }

    /// The name used in scenario files and reports.
    pub fn name(self) -> &'static str {
        match self {
            Body::Mime => "mime",
            Body::EightBitMime => "8bitmime",
            Body::EightBitUndeclared => "8bit-undeclared",
            Body::EightBitNoMime => "8bit-no-mime",
        }
    }
}

/// Whose address the phone has.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Recipient {
    /// `phone@dlab.invalid`.
    #[default]
    Ascii,
    /// `téléphone@dlab.invalid`, sent with `SMTPUTF8` on MAIL FROM.
    Utf8,
}

impl Recipient {
    /// The envelope address.
    pub fn address(self) -> &'static str {
        match self {
            Recipient::Ascii => "phone@dlab.invalid",
            Recipient::Utf8 => "téléphone@dlab.invalid",
        }
    }

    /// The name used in scenario files and reports.
    pub fn name(self) -> &'static str {
        match self {
            Recipient::Ascii => "ascii",
            Recipient::Utf8 => "utf8",
        }
    }
}

/// The sender's address, where the relay returns what it cannot deliver.
pub const SENDER: &str = "notify@dlab.invalid";

/// What the sender does, for [`crate::smtp::sender`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Send {
    /// The body.
    pub body: Body,
    /// The recipient.
    pub recipient: Recipient,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ehlo_reply_lists_what_is_announced_and_helo_only_refuses_ehlo() {
        let all = Announce::default().ehlo_reply(100, false);
        assert_eq!(
            all,
            "250-inbox.dlab.invalid\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 100\r\n"
        );
        let some = Announce {
            ehlo: true,
            extensions: vec![Extension::SmtpUtf8, Extension::Pipelining],
        };
        assert_eq!(
            some.ehlo_reply(1, false),
            "250-inbox.dlab.invalid\r\n250-PIPELINING\r\n250 SMTPUTF8\r\n"
        );
        assert!(!some.has(Extension::EightBitMime));
        let none = Announce {
            ehlo: true,
            extensions: vec![],
        };
        assert_eq!(none.ehlo_reply(1, false), "250 inbox.dlab.invalid\r\n");
        let helo = Announce {
            ehlo: false,
            extensions: Extension::ALL.to_vec(),
        };
        assert!(helo.ehlo_reply(1, false).starts_with("502"));
        assert!(!helo.has(Extension::Pipelining));
        assert_eq!(helo.describe(), "HELO only (no extensions)");
    }
}
