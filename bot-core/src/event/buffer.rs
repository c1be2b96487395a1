//! A vector for an adapter to parse a body's events into, reused by the thread's next body.

use std::cell::Cell;
use std::ops::{Deref, DerefMut};

use super::{Event, EventData};

/// The largest buffer a thread keeps for its next body, in events (about 29 KiB): a larger
/// batch's buffer is freed with it.
const KEPT_EVENTS: usize = 64;

/// A new buffer's room, in events: a webhook body's usual count fits it.
const FIRST_ROOM: usize = 16;

thread_local! {
    static KEPT: Cell<Vec<EventData>> = const { Cell::new(Vec::new()) };
}

/// A vector of [`EventData`] to parse one body's events into before they become [`Event`]s
/// ([`EventBuffer::into_events`]), taken from the current thread and given back to it when
/// dropped.
///
/// An event's data is 456 bytes, so a body's vector is a few kilobytes: an allocation of that
/// size and its free per request, which a general-purpose allocator serves under a lock of its
/// own (glibc's arenas), contended whenever another thread frees into the same arena. A thread
/// that parses body after body reuses one vector instead; it keeps at most 64 events' room
/// (a larger one is freed), and a buffer dropped on another thread than its own stays there.
///
/// # Examples
///
/// ```
/// use bot_core::{EventBuffer, EventData, EventKind, Platform};
///
/// let mut parsed = EventBuffer::take();
/// parsed.push(EventData::new(Platform::TEST, "a", EventKind::Followed));
/// parsed.push(EventData::new(Platform::TEST, "b", EventKind::Followed));
/// let events = parsed.into_events();
/// assert!(events[0].shares_block_with(&events[1]));
/// ```
#[derive(Debug)]
pub struct EventBuffer(Vec<EventData>);

impl EventBuffer {
    /// The current thread's buffer, empty (a new one with room for 16 events if the thread has
    /// none, or another buffer of it is in use).
    #[must_use]
    pub fn take() -> Self {
        let mut kept = KEPT.try_with(Cell::take).unwrap_or_default();
        if kept.capacity() == 0 {
            kept.reserve_exact(FIRST_ROOM);
        }
        Self(kept)
    }

    /// The events, their data moved into shared blocks ([`Event::batch_from`]); the buffer goes
    /// back to the thread.
    #[must_use]
    pub fn into_events(mut self) -> Vec<Event> {
        Event::batch_from(&mut self.0)
    }
}

impl Deref for EventBuffer {
    type Target = Vec<EventData>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for EventBuffer {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for EventBuffer {
    fn drop(&mut self) {
        let mut buffer = std::mem::take(&mut self.0);
        if buffer.capacity() > KEPT_EVENTS {
            return;
        }
        buffer.clear();
        // Kept unless the thread holds another already (or is ending).
        let _ = KEPT.try_with(|kept| {
            let other = kept.replace(buffer);
            if other.capacity() > 0 {
                kept.set(other);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventKind, Platform};

    fn data(conversation: &str) -> EventData {
        EventData::new(Platform::TEST, conversation, EventKind::Followed)
    }

    #[test]
    fn a_thread_reuses_its_buffer_and_frees_a_large_one() {
        let mut first = EventBuffer::take();
        first.extend((0..3).map(|i| data(&format!("c{i}"))));
        let room = first.as_ptr();
        let events = first.into_events();
        assert_eq!(events.len(), 3);
        assert_eq!(events[2].conversation.as_str(), "c2");
        // The next body on this thread parses into the same allocation, empty.
        let second = EventBuffer::take();
        assert!(second.is_empty());
        assert_eq!(second.as_ptr(), room, "the thread's buffer is reused");
        // Taken twice at once: the second is a new buffer, and the first given back stays kept.
        let third = EventBuffer::take();
        assert_ne!(third.as_ptr(), room);
        drop(second);
        drop(third);
        assert_eq!(EventBuffer::take().as_ptr(), room);
        // A buffer dropped with events still in it (a parse given up halfway) comes back empty.
        let mut abandoned = EventBuffer::take();
        abandoned.push(data("left"));
        let held = abandoned.as_ptr();
        drop(abandoned);
        let again = EventBuffer::take();
        assert!(again.is_empty(), "no event of one body reaches the next");
        assert_eq!(again.as_ptr(), held);
        drop(again);
        // A buffer grown past the bound is freed, not kept.
        let mut large = EventBuffer::take();
        large.extend((0..KEPT_EVENTS + 1).map(|i| data(&format!("c{i}"))));
        assert_eq!(large.into_events().len(), KEPT_EVENTS + 1);
        let next = EventBuffer::take();
        assert_eq!(next.capacity(), FIRST_ROOM, "a large buffer is not kept");
    }
}
