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

/// Whether two application names name the same tables: table names
/// ignore ASCII case.
const fn same_tables(a: &str, b: &str) -> bool {
    a.as_bytes().eq_ignore_ascii_case(b.as_bytes())
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

/// One application as the checks see it: its `Process` constants (name,
/// records, handlers, and the type's identity, which is the same for one
/// type named by two paths).
pub type Facts = (&'static str, &'static [Records], &'static [Handler], &'static str);

/// The mistake in `up => down`, if `down` handles no event `up` records.
pub const fn follow_error(up: Facts, down: Facts) -> Option<Message> {
    let ((up_name, up_records, _, _), (down_name, _, down_handlers, _)) = (up, down);
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

/// The first handler of `app` (the application at `index` in `all`, every
/// application of the system) that no application it follows can feed.
/// `edges` are the system's `up => down` edges. One type named by two
/// paths is one application: it follows what either path follows, and is
/// checked at its first mention only.
pub const fn dead_handler_error(index: usize, all: &[Facts], edges: &[(Facts, Facts)]) -> Option<Message> {
    let (app_name, _, handlers, identity) = all[index];
    if named_before(all, index) {
        return None;
    }
    let mut h = 0;
    'handlers: while h < handlers.len() {
        let handler = handlers[h];
        h += 1;
        let mut e = 0;
        while e < edges.len() {
            let (up, down) = edges[e];
            if str_eq(down.3, identity) && records_topic(up.1, handler.topic) {
                continue 'handlers;
            }
            e += 1;
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
            if !named_before(all, a) && records_topic(all[a].1, handler.topic) {
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

/// Whether the type at `index` in `all` is named earlier too (by another
/// path).
const fn named_before(all: &[Facts], index: usize) -> bool {
    let mut b = 0;
    while b < index {
        if str_eq(all[b].3, all[index].3) {
            return true;
        }
        b += 1;
    }
    false
}

/// One application as written in `system!`, for the name check: the path
/// as the user wrote it, its [`Process::NAME`](crate::Process::NAME) and its
/// type's identity.
pub type Named = (&'static str, &'static str, &'static str);

/// The mistake if `app` has the name of an earlier, different application
/// (ignoring case, as table names do): the two would share tables and
/// tracking, and one would process nothing.
pub const fn name_clash_error(app: Named, earlier: &[Named]) -> Option<Message> {
    let (written, name, identity) = app;
    let mut i = 0;
    while i < earlier.len() {
        let (other_written, other_name, other_identity) = earlier[i];
        i += 1;
        if !same_tables(name, other_name) || str_eq(identity, other_identity) {
            continue;
        }
        let mut message = Message::new()
            .push("`")
            .push(other_written)
            .push("` and `")
            .push(written)
            .push("` are two applications with one name, `")
            .push(other_name)
            .push("`");
        if !str_eq(name, other_name) {
            message = message.push(" (and `").push(name).push("`: table names ignore case)");
        }
        message = message.push(": they would share its tables and tracking, and one of them would process nothing; give one of them another name with `#[policy(name = \"…\", aggregates(...))]` on its `impl` block");
        return Some(message);
    }
    None
}

/// The first topic that two different aggregate types recorded in this
/// system share, `app`'s against the applications named before it (and
/// against its own): a follower could not tell their events apart.
pub const fn topic_clash_error(app: Facts, earlier: &[Facts]) -> Option<Message> {
    let (app_name, records, _, _) = app;
    let mut r = 0;
    while r < records.len() {
        let record = records[r];
        // Its own aggregates before this one, then each earlier application's.
        if let Some((other, topic)) = shared_topic(record, records.split_at(r).0) {
            return Some(topic_clash_message(record, app_name, other, app_name, topic));
        }
        let mut a = 0;
        while a < earlier.len() {
            if let Some((other, topic)) = shared_topic(record, earlier[a].1) {
                return Some(topic_clash_message(record, app_name, other, earlier[a].0, topic));
            }
            a += 1;
        }
        r += 1;
    }
    None
}

/// A record among `others` of another aggregate type with a topic of
/// `record`'s, and the topic.
const fn shared_topic(record: Records, others: &[Records]) -> Option<(Records, &'static str)> {
    let mut o = 0;
    while o < others.len() {
        let other = others[o];
        o += 1;
        if str_eq(record.path, other.path) {
            continue;
        }
        let mut t = 0;
        while t < record.topics.len() {
            if records_topic(core::slice::from_ref(&other), record.topics[t]) {
                return Some((other, record.topics[t]));
            }
            t += 1;
        }
    }
    None
}

const fn topic_clash_message(record: Records, app: &str, other: Records, other_app: &str, topic: &str) -> Message {
    Message::new()
        .push("`")
        .push(other.path)
        .push("` (recorded by `")
        .push(other_app)
        .push("`) and `")
        .push(record.path)
        .push("` (recorded by `")
        .push(app)
        .push("`) are two aggregate types with events of one topic, `")
        .push(topic)
        .push("`, so a follower could not tell their events apart; give one of the events another topic with `#[event(…, topic = \"…\")]`")
}
