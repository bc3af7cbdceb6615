//! The topology checks `system!` runs while compiling.
//!
//! They compare the constants `#[policy]` generates
//! ([`Process::RECORDS`](crate::Process::RECORDS),
//! [`Process::HANDLERS`](crate::Process::HANDLERS)) in `const` evaluation, and return the message for
//! the first mistake; the macro panics with it at the user's tokens, which
//! makes it a compile error there.

use crate::{Handler, Records};

/// A compile-time message: text built by `const fn`s, up to a fixed length.
#[derive(Clone, Copy)]
pub struct Message {
    bytes: [u8; Message::CAPACITY],
    len: usize,
}

impl Message {
    const CAPACITY: usize = 2048;

    const fn new() -> Self {
        Self {
            bytes: [0; Self::CAPACITY],
            len: 0,
        }
    }

    const fn push(mut self, text: &str) -> Self {
        let text = text.as_bytes();
        let mut i = 0;
        // Cut at a character boundary if the message is too long.
        while i < text.len() && self.len < Self::CAPACITY - 4 {
            self.bytes[self.len] = text[i];
            self.len += 1;
            i += 1;
        }
        while i < text.len() && (text[i] & 0b1100_0000) == 0b1000_0000 && self.len < Self::CAPACITY {
            self.bytes[self.len] = text[i];
            self.len += 1;
            i += 1;
        }
        self
    }

    /// Pushes the aggregates' names as "`A`, `B` and `C`" (or `none`).
    const fn push_aggregates(mut self, records: &[Records]) -> Self {
        if records.is_empty() {
            return self.push("none");
        }
        let mut i = 0;
        while i < records.len() {
            if i > 0 {
                self = self.push(if i + 1 == records.len() { " and " } else { ", " });
            }
            self = self.push("`").push(records[i].aggregate).push("`");
            i += 1;
        }
        self
    }

    /// The text.
    pub const fn as_str(&self) -> &str {
        let (bytes, _) = self.bytes.split_at(self.len);
        match core::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(_) => "(message cut short)",
        }
    }
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

const fn records_topic(records: &[Records], topic: &str) -> bool {
    let mut i = 0;
    while i < records.len() {
        let mut j = 0;
        while j < records[i].topics.len() {
            if str_eq(records[i].topics[j], topic) {
                return true;
            }
            j += 1;
        }
        i += 1;
    }
    false
}

/// One application as the checks see it: its `Process` constants.
pub type Facts = (&'static str, &'static [Records], &'static [Handler]);

/// The mistake in `up => down`, if `down` handles no event `up` records.
pub const fn follow_error(up: Facts, down: Facts) -> Option<Message> {
    let ((up_name, up_records, _), (down_name, _, down_handlers)) = (up, down);
    let mut i = 0;
    while i < down_handlers.len() {
        if records_topic(up_records, down_handlers[i].topic) {
            return None;
        }
        i += 1;
    }
    let message = Message::new()
        .push("`")
        .push(up_name)
        .push(" => ")
        .push(down_name)
        .push("` can never do anything: `")
        .push(down_name)
        .push("` has no handler for an event that `")
        .push(up_name)
        .push("` records (its aggregates: ")
        .push_aggregates(up_records)
        .push("); add a handler for one of their events to `")
        .push(down_name)
        .push("`'s policy, or remove this `=>`");
    Some(message)
}

/// The first handler of `app` that no application it follows can feed:
/// `upstreams` are the applications `app` follows, `all` every application
/// in the system.
pub const fn dead_handler_error(app: Facts, upstreams: &[Facts], all: &[Facts]) -> Option<Message> {
    let (app_name, _, handlers) = app;
    let mut h = 0;
    'handlers: while h < handlers.len() {
        let handler = handlers[h];
        h += 1;
        let mut u = 0;
        while u < upstreams.len() {
            if records_topic(upstreams[u].1, handler.topic) {
                continue 'handlers;
            }
            u += 1;
        }
        let mut message = Message::new()
            .push("`")
            .push(app_name)
            .push("::")
            .push(handler.method)
            .push("` handles `")
            .push(handler.event_type)
            .push("` (topic `")
            .push(handler.topic)
            .push("`), but no application that `")
            .push(app_name)
            .push("` follows in this system records `")
            .push(handler.aggregate)
            .push("`, so it can never run; ");
        let mut a = 0;
        let mut hinted = false;
        while a < all.len() {
            if records_topic(all[a].1, handler.topic) {
                message = message
                    .push(if hinted { ", or add `" } else { "add `" })
                    .push(all[a].0)
                    .push(" => ")
                    .push(app_name)
                    .push("`");
                hinted = true;
            }
            a += 1;
        }
        message = message.push(if hinted {
            " to the system, or remove the handler"
        } else {
            "remove the handler, or add an application that records it to the system"
        });
        return Some(message);
    }
    None
}
