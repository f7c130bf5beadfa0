//! Events parsed ahead of the pipeline. A source parses its batch on its own thread and stores
//! each event's fields as spans of one text buffer, so the pipeline thread, the runtime's
//! bottleneck when consuming Kafka, only routes and aggregates (docs/benchmarks.md). The spans
//! own their text: the batch can cross threads, and [`ParsedEvents::get`] rebuilds the same
//! [`Event`] that [`parse_event`](super::parse_event) gives, borrowing from that buffer.

use std::borrow::Cow;
use std::ops::Range;

use super::{Event, Prop, PropValue, RejectReason};

/// A field's bytes in [`ParsedEvents::text`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Fields {
    tenant_id: Span,
    scenario_id: Span,
    user_id: Span,
    item_id: Span,
    action: Span,
    category: Option<Span>,
    event_id: Option<Span>,
    /// Range of this event's tags in [`ParsedEvents::tags`].
    tags: Span,
    /// Range of this event's props in [`ParsedEvents::props`].
    props: Span,
    ts: i64,
    watch_time_ms: Option<f64>,
}

/// The parse result of every record of a batch, in record order.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ParsedEvents {
    text: String,
    tags: Vec<Span>,
    /// Every event's props, back to back: spans of `text`, no allocation per event.
    props: Vec<(Span, StoredValue)>,
    events: Vec<Result<Fields, RejectReason>>,
}

/// A prop value in [`ParsedEvents::props`].
#[derive(Debug, Clone, Copy, PartialEq)]
enum StoredValue {
    Number(f64),
    Text(Span),
}

impl ParsedEvents {
    pub fn with_capacity(events: usize) -> Self {
        Self { text: String::with_capacity(events * 64), tags: Vec::new(), props: Vec::new(), events: Vec::with_capacity(events) }
    }

    /// Appends the next record's result.
    pub fn push(&mut self, parsed: Result<Event<'_>, RejectReason>) {
        let fields = parsed.map(|ev| {
            let tags_start = self.tags.len() as u32;
            for t in &ev.tags {
                let span = self.store(t);
                self.tags.push(span);
            }
            let props_start = self.props.len() as u32;
            for p in &ev.props {
                let key = self.store(&p.key);
                let value = match &p.value {
                    PropValue::Number(x) => StoredValue::Number(*x),
                    PropValue::Text(t) => StoredValue::Text(self.store(t)),
                };
                self.props.push((key, value));
            }
            Fields {
                props: Span { start: props_start, end: self.props.len() as u32 },
                tenant_id: self.store(&ev.tenant_id),
                scenario_id: self.store(&ev.scenario_id),
                user_id: self.store(&ev.user_id),
                item_id: self.store(&ev.item_id),
                action: self.store(&ev.action),
                category: ev.category.as_deref().map(|c| self.store(c)),
                event_id: ev.event_id.as_deref().map(|e| self.store(e)),
                tags: Span { start: tags_start, end: self.tags.len() as u32 },
                ts: ev.ts,
                watch_time_ms: ev.watch_time_ms,
            }
        });
        self.events.push(fields);
    }

    fn store(&mut self, s: &str) -> Span {
        let start = self.text.len() as u32;
        self.text.push_str(s);
        Span { start, end: self.text.len() as u32 }
    }

    fn str(&self, span: Span) -> Cow<'_, str> {
        Cow::Borrowed(&self.text[span.range()])
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Record `i`'s event or the reason it was rejected.
    pub fn get(&self, i: usize) -> Option<Result<Event<'_>, &RejectReason>> {
        let fields = match self.events.get(i)? {
            Ok(f) => f,
            Err(reason) => return Some(Err(reason)),
        };
        Some(Ok(Event {
            tenant_id: self.str(fields.tenant_id),
            scenario_id: self.str(fields.scenario_id),
            user_id: self.str(fields.user_id),
            item_id: self.str(fields.item_id),
            action: self.str(fields.action),
            ts: fields.ts,
            category: fields.category.map(|s| self.str(s)),
            tags: self.tags[fields.tags.range()].iter().map(|&s| self.str(s)).collect(),
            watch_time_ms: fields.watch_time_ms,
            event_id: fields.event_id.map(|s| self.str(s)),
            props: self.props[fields.props.range()]
                .iter()
                .map(|&(key, value)| Prop {
                    key: self.str(key),
                    value: match value {
                        StoredValue::Number(x) => PropValue::Number(x),
                        StoredValue::Text(t) => PropValue::Text(self.str(t)),
                    },
                })
                .collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse_event;

    #[test]
    fn gives_back_what_parse_event_gives() {
        let records: [&[u8]; 7] = [
            br#"{"tenant_id":"shop","scenario_id":"home","user_id":"u1","item_id":"i1","action":"click","ts":1767225596681,"category":"a","tags":["x","y"]}"#,
            br#"{"tenant_id":"shop","scenario_id":"home","user_id":"u\u00e9","item_id":"i\"2","action":"view","ts":"2026-01-01T00:00:00Z","watch_time_ms":1500.5,"event_id":"e-1"}"#,
            b"{not json",
            br#"{"tenant_id":"t","scenario_id":"s","user_id":"u","item_id":"","action":"view","ts":1767225600000}"#,
            br#"{"tenant_id":"t","scenario_id":"s","user_id":"u","item_id":"i","action":"view","ts":1767225600000,"tags":[]}"#,
            br#"{"tenant_id":"t","scenario_id":"s","user_id":"u","item_id":"i","action":"view","ts":1767225600000,"props":{"dur":12.5,"src":"fe\u00e9d","n":3}}"#,
            br#"{"tenant_id":"t","scenario_id":"s","user_id":"u","item_id":"i","action":"view","ts":1767225600000,"props":{"bad":[1]}}"#,
        ];
        let mut parsed = ParsedEvents::with_capacity(records.len());
        for r in records {
            parsed.push(parse_event(r));
        }
        assert_eq!(parsed.len(), records.len());
        for (i, r) in records.iter().enumerate() {
            assert_eq!(parsed.get(i).unwrap().map_err(Clone::clone), parse_event(r), "record {i}");
        }
        assert!(parsed.get(records.len()).is_none());
    }
}
